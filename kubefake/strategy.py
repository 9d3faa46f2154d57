"""Per-kind defaulting and validation, after the API server's registry strategies.

Only the rules a controller can trip over are here: name and label syntax, Service
port rules and ClusterIP allocation/immutability, EndpointSlice addressType, Namespace
and CRD status. Everything else is stored as sent. Pure: the IP allocator is passed in.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Protocol

from .errors import ApiError, invalid
from .resources import ResourceType, crd_problems

Cause = tuple[str, str, str]

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(r"^%s$" % _LABEL)
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^%s(\.%s)*$" % (_LABEL, _LABEL))
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


class IPAllocator(Protocol):
    def allocate(self) -> str: ...
    def in_use(self, ip: str) -> bool: ...


def _name_causes(rt: ResourceType, name: str) -> list[Cause]:
    if rt.group == "rbac.authorization.k8s.io":
        if name in (".", "..") or "/" in name or "%" in name:
            return [("metadata.name", "FieldValueInvalid", "may not contain '/' or '%'")]
        return []
    if rt.key == ("", "services"):
        ok, limit, what = _DNS1035_LABEL.match(name), 63, "a DNS-1035 label"
    elif rt.key == ("", "namespaces"):
        ok, limit, what = _DNS1123_LABEL.match(name), 63, "a lowercase RFC 1123 label"
    else:
        ok, limit, what = _DNS1123_SUBDOMAIN.match(name), 253, "a lowercase RFC 1123 subdomain"
    if len(name) > limit:
        return [("metadata.name", "FieldValueInvalid",
                 'Invalid value: "%s": must be no more than %d characters' % (name, limit))]
    if not ok:
        return [("metadata.name", "FieldValueInvalid", 'Invalid value: "%s": must be %s' % (name, what))]
    return []


# label keys and values already found valid: most writes repeat the same few (bounded)
_VALID_KEYS: set[str] = set()
_VALID_VALUES: set[str] = set()
_VALID_LIMIT = 65536


def _valid_key(key: str) -> bool:
    if key in _VALID_KEYS:
        return True
    prefix, _, name = key.rpartition("/")
    ok = not (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix))) and \
        len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))
    if ok:
        if len(_VALID_KEYS) >= _VALID_LIMIT:
            _VALID_KEYS.clear()
        _VALID_KEYS.add(key)
    return ok


def _valid_value(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if value in _VALID_VALUES:
        return True
    ok = len(value) <= 63 and bool(_LABEL_VALUE.match(value))
    if ok:
        if len(_VALID_VALUES) >= _VALID_LIMIT:
            _VALID_VALUES.clear()
        _VALID_VALUES.add(value)
    return ok


def _label_causes(labels: Any) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [("metadata.labels", "FieldValueInvalid", "must be a map of strings")]
    causes = []
    for key, value in labels.items():
        if not _valid_key(key):
            causes.append(("metadata.labels", "FieldValueInvalid", 'Invalid value: "%s": name part must '
                           "consist of alphanumeric characters, '-', '_' or '.'" % key))
        if not _valid_value(value):
            causes.append(("metadata.labels", "FieldValueInvalid",
                           'Invalid value: "%s": a valid label must be 63 characters or less and '
                           "consist of alphanumerics, '-', '_' or '.'" % (value,)))
    return causes


def validate(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Raise 422 Invalid for what a real API server would reject on write."""
    meta = obj["metadata"]
    name = meta.get("name") or ""
    causes = _name_causes(rt, name) + _label_causes(meta.get("labels"))
    annotations = meta.get("annotations")
    if annotations is not None and (not isinstance(annotations, dict) or
                                    not all(isinstance(v, str) for v in annotations.values())):
        causes.append(("metadata.annotations", "FieldValueInvalid", "must be a map of strings"))
    spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    if rt.key == ("", "services"):
        causes += _service_causes(spec)
    elif rt.key == ("discovery.k8s.io", "endpointslices"):
        if obj.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
            causes.append(("addressType", "FieldValueNotSupported",
                           'Unsupported value: %r: supported values: "FQDN", "IPv4", "IPv6"'
                           % (obj.get("addressType"),)))
    elif rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        causes += crd_problems(obj)
    if causes:
        raise invalid(rt.kind, rt.group, name, causes)


def _service_causes(spec: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(("spec.type", "FieldValueNotSupported", "Unsupported value: %r" % (kind,)))
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(("spec.ports", "FieldValueRequired", "Required value"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            causes.append(("spec.ports[%d].name" % i, "FieldValueRequired", "Required value"))
        if name and name in names:
            causes.append(("spec.ports[%d].name" % i, "FieldValueDuplicate", 'Duplicate value: "%s"' % name))
        names.add(name)
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append(("spec.ports[%d].port" % i, "FieldValueInvalid",
                           "Invalid value: %r: must be between 1 and 65535, inclusive" % (number,)))
    if kind == "ExternalName" and not spec.get("externalName"):
        causes.append(("spec.externalName", "FieldValueRequired", "Required value"))
    return causes


def prepare(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
            ips: IPAllocator) -> None:
    """Fill the fields a real server defaults or allocates (in place: only the kinds in
    PREPARED, whose objects the store therefore copies whole before this)."""
    fill = _FILL.get(rt.key)
    if fill is not None:
        fill(obj, old, ips)


def _namespace(obj: dict[str, Any], old: dict[str, Any] | None, ips: IPAllocator) -> None:
    meta = obj["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _crd(obj: dict[str, Any], old: dict[str, Any] | None, ips: IPAllocator) -> None:
    spec = obj["spec"]
    stored = [v["name"] for v in spec.get("versions", []) if v.get("storage")]
    status = obj.setdefault("status", {})
    status["acceptedNames"] = dict(spec["names"])
    status["storedVersions"] = sorted(set(status.get("storedVersions") or []) | set(stored))
    status["conditions"] = [
        {"type": t, "status": "True", "reason": r, "message": m,
         "lastTransitionTime": obj["metadata"].get("creationTimestamp")}
        for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names have been accepted"))
    ]


def _service(obj: dict[str, Any], old: dict[str, Any] | None, ips: IPAllocator) -> None:
    spec = obj.setdefault("spec", {})
    kind = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    obj.setdefault("status", {}).setdefault("loadBalancer", {})
    if kind == "ExternalName":
        return
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    old_spec = (old or {}).get("spec") or {}
    old_ip = old_spec.get("clusterIP")
    if old_ip and not spec.get("clusterIP"):
        # an update that omits the allocated IP keeps it (patchAllocatedValues)
        for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if field in old_spec:
                spec[field] = old_spec[field]
    ip = spec.get("clusterIP")
    if old_ip and ip != old_ip:
        raise invalid("Service", "", obj["metadata"]["name"],
                      [("spec.clusterIP", "FieldValueInvalid", "field is immutable")])
    if not ip:
        ip = spec["clusterIP"] = ips.allocate()
    elif ip != "None" and not old_ip and ips.in_use(ip):
        raise invalid("Service", "", obj["metadata"]["name"],
                      [("spec.clusterIP", "FieldValueInvalid",
                        "Invalid value: %r: provided IP is already allocated" % ip)])
    spec["clusterIPs"] = [ip]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")


_FILL: dict[tuple[str, str], Callable[[dict[str, Any], dict[str, Any] | None, IPAllocator], None]] = {
    ("", "namespaces"): _namespace,
    ("", "services"): _service,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
}
PREPARED = frozenset(_FILL)  # the kinds prepare() changes below metadata's top level


def check_kind(rt: ResourceType, version: str, obj: dict[str, Any]) -> None:
    """Fill or check apiVersion/kind against the URL, as the API server's decoder does."""
    if not rt.custom:
        obj.setdefault("kind", rt.kind)
        obj.setdefault("apiVersion", rt.api_version(version))
    if not obj.get("kind"):
        raise ApiError(400, "Object 'Kind' is missing in '%s'" % (obj,))
    group = (obj.get("apiVersion") or "").rpartition("/")[0]
    body_version = (obj.get("apiVersion") or "").rpartition("/")[2]
    if group != rt.group or body_version not in rt.versions:
        raise ApiError(400, "the API version in the data (%s) does not match the expected API "
                       "version (%s)" % (obj.get("apiVersion"), rt.api_version(version)))
    if obj["kind"] != rt.kind:
        raise invalid(rt.kind, rt.group, (obj.get("metadata") or {}).get("name") or "",
                      [("kind", "FieldValueInvalid",
                        'Invalid value: "%s": must be %s' % (obj["kind"], rt.kind))])
