"""The resource types the test API server knows, and how to find them by any name.

Built-in kinds are a fixed table; custom resources come from CustomResourceDefinition
objects, so creating or deleting a CRD changes discovery the way it does on a real server.
Storage is per (group, plural): every served version of a resource reads the same objects.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

ResourceKey = tuple[str, str]  # (group, plural): the storage identity, version-free

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    versions: tuple[str, ...]  # served versions, preferred first
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False  # has a status subresource
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    custom: bool = False  # backed by a CRD: unstructured rules (no strategic merge patch)
    field_labels: tuple[str, ...] = ()  # extra fieldSelector labels beyond metadata.*
    # (group, plural), and apiVersion by version: derived, made once (every request asks)
    key: ResourceKey = field(init=False, repr=False, compare=False)
    _api_versions: dict[str | None, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.group, self.plural))
        object.__setattr__(self, "_api_versions", {})

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def preferred_version(self) -> str:
        return self.versions[0]

    def api_version(self, version: str | None = None) -> str:
        known = self._api_versions.get(version)
        if known is None:
            chosen = version or self.preferred_version
            known = self._api_versions[version] = "%s/%s" % (self.group, chosen) if self.group else chosen
        return known


def _core(plural: str, kind: str, **kw: Any) -> ResourceType:
    return ResourceType("", ("v1",), plural, kind, **kw)


def _g(group: str, plural: str, kind: str, **kw: Any) -> ResourceType:
    return ResourceType(group, ("v1",), plural, kind, **kw)


BUILTIN: tuple[ResourceType, ...] = (
    _core("namespaces", "Namespace", namespaced=False, status=True, short_names=("ns",),
          field_labels=("status.phase",)),
    _core("services", "Service", status=True, short_names=("svc",), categories=("all",),
          field_labels=("spec.clusterIP", "spec.type")),
    _core("endpoints", "Endpoints", short_names=("ep",)),
    _core("pods", "Pod", status=True, short_names=("po",), categories=("all",),
          field_labels=("spec.nodeName", "status.phase")),
    _core("secrets", "Secret", field_labels=("type",)),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _core("events", "Event", short_names=("ev",),
          field_labels=("involvedObject.kind", "involvedObject.name", "involvedObject.namespace",
                        "involvedObject.uid", "reason", "type")),
    _g("apps", "deployments", "Deployment", status=True, short_names=("deploy",),
       categories=("all",)),
    _g("policy", "poddisruptionbudgets", "PodDisruptionBudget", status=True,
       short_names=("pdb",)),
    _g("discovery.k8s.io", "endpointslices", "EndpointSlice"),
    _g("networking.k8s.io", "ingresses", "Ingress", status=True, short_names=("ing",)),
    _g("networking.k8s.io", "ingressclasses", "IngressClass", namespaced=False),
    _g("coordination.k8s.io", "leases", "Lease"),
    _g("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", namespaced=False),
    _g("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding",
       namespaced=False),
    _g("rbac.authorization.k8s.io", "roles", "Role"),
    _g("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
    _g("apiextensions.k8s.io", "customresourcedefinitions", "CustomResourceDefinition",
       namespaced=False, status=True, short_names=("crd", "crds")),
)

CRD_KEY: ResourceKey = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY: ResourceKey = ("", "namespaces")

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key putting GA before beta before alpha, newer first (Kubernetes' order)."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, version)


def from_crd(crd: dict[str, Any]) -> ResourceType:
    """The ResourceType a (validated) CRD object serves."""
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec.get("versions", []) if v.get("served", True)]
    versions = tuple(sorted((v["name"] for v in served), key=version_priority))
    status = any("status" in (v.get("subresources") or {}) for v in served)
    fields = tuple(
        f["jsonPath"].lstrip(".")
        for v in served
        for f in v.get("selectableFields") or ()
        if "jsonPath" in f
    )
    return ResourceType(
        group=spec["group"],
        versions=versions,
        plural=names["plural"],
        kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        status=status,
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        custom=True,
        field_labels=fields,
    )


def crd_problems(crd: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Validation causes (field, reason, message) for a CRD, as 422 details."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    causes = []
    for path, value in (("spec.group", spec.get("group")), ("spec.names.plural", names.get("plural")),
                        ("spec.names.kind", names.get("kind"))):
        if not value:
            causes.append((path, "FieldValueRequired", "Required value"))
    if not any(v.get("served", True) for v in spec.get("versions") or []):
        causes.append(("spec.versions", "FieldValueRequired", "must have at least one served version"))
    name = (crd.get("metadata") or {}).get("name")
    if names.get("plural") and spec.get("group") and name != "%s.%s" % (names["plural"], spec["group"]):
        causes.append(("metadata.name", "FieldValueInvalid", "must be spec.names.plural+\".\"+spec.group"))
    return causes


@dataclass
class Registry:
    """Resource types by storage key, with the lookups discovery and routing need."""

    types: dict[ResourceKey, ResourceType] = field(default_factory=dict)

    @classmethod
    def builtin(cls) -> "Registry":
        return cls({rt.key: rt for rt in BUILTIN})

    def add(self, rt: ResourceType) -> bool:
        existing = self.types.get(rt.key)
        if existing is not None and not existing.custom:
            return False  # a CRD cannot shadow a built-in kind
        self.types[rt.key] = rt
        return True

    def remove(self, key: ResourceKey) -> None:
        rt = self.types.get(key)
        if rt is not None and rt.custom:
            del self.types[key]

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self.types.get((group, plural))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def lookup(self, name: str, api_version: str | None = None) -> ResourceType:
        """Find a type by kind, plural, singular, short name or `plural.group`."""
        group = api_version.rpartition("/")[0] if api_version else None
        low = name.lower()
        for rt in self.types.values():
            if group is not None and rt.group != group:
                continue
            names = {rt.kind.lower(), rt.plural, rt.singular, *rt.short_names}
            if rt.group:
                names.add("%s.%s" % (rt.plural, rt.group))
                names.add("%s.%s" % (rt.kind.lower(), rt.group))
            if low in names:
                return rt
        raise KeyError(name)

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self.types.values():
            if rt.group == group and rt.kind == kind and version in rt.versions:
                return rt
        return None

    def groups(self) -> dict[str, list[str]]:
        """Group name → served versions, preferred first ("" is the core group)."""
        out: dict[str, set[str]] = {}
        for rt in self.types.values():
            out.setdefault(rt.group, set()).update(rt.versions)
        return {g: sorted(vs, key=version_priority) for g, vs in sorted(out.items())}

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return sorted(
            (rt for rt in self.types.values() if rt.group == group and version in rt.versions),
            key=lambda rt: rt.plural,
        )


def _crd(group: str, plural: str, kind: str, versions: Iterable[str], *, namespaced: bool = True,
         status: bool = True, short_names: tuple[str, ...] = ()) -> dict[str, Any]:
    versions = list(versions)
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "%s.%s" % (plural, group)},
        "spec": {
            "group": group,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                      "listKind": kind + "List", **({"shortNames": list(short_names)} if short_names else {})},
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [
                {"name": v, "served": True, "storage": i == 0, "schema": schema,
                 **({"subresources": {"status": {}}} if status else {})}
                for i, v in enumerate(versions)
            ],
        },
    }


def default_crds() -> list[dict[str, Any]]:
    """The MCS and About API CRDs a fleetgate member cluster is expected to have."""
    mcs = ("v1beta1", "v1alpha1")
    return [
        _crd("multicluster.x-k8s.io", "serviceexports", "ServiceExport", mcs, short_names=("svcex",)),
        _crd("multicluster.x-k8s.io", "serviceimports", "ServiceImport", mcs, short_names=("svcim",)),
        _crd("about.k8s.io", "clusterproperties", "ClusterProperty", ("v1alpha1",),
             namespaced=False, status=False),
    ]
