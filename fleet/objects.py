"""Frozen views of the Kubernetes objects fleetgate reads.

Objects are parsed once, at the edge (a YAML file or an API watch event), into these
immutable views; everything downstream (route tables, DNS zones, controller plans) reads
only views, never raw dicts. A malformed object raises ObjectError with a message naming
the field, so sources can turn it into a diagnostic instead of a crash.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

from . import validation
from .validation import address as _address, dns1123_label as _label
from .rawfields import (ObjectError, SharedValues, as_bool, as_int, as_list, as_map, as_optional_str,
                        as_shared_str_map, as_str, checked, intern, shared, shared_str_map)

MCS_GROUP = "multicluster.x-k8s.io"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MCS_SERVICE_NAME = "multicluster.kubernetes.io/service-name"
LABEL_MCS_SOURCE_CLUSTER = "multicluster.kubernetes.io/source-cluster"
ANNOTATION_INGRESS_CLASS = "kubernetes.io/ingress.class"
ANNOTATION_DEFAULT_CLASS = "ingressclass.kubernetes.io/is-default-class"


@dataclass(frozen=True, slots=True)
class OwnerReference:
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool = False


@dataclass(frozen=True, slots=True)
class Meta:
    name: str
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    owner_references: tuple[OwnerReference, ...] = ()


@dataclass(frozen=True, slots=True)
class Namespace:
    meta: Meta
    kind = "Namespace"


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    name: str = ""
    protocol: str = "TCP"
    target_port: int | str | None = None
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Service:
    meta: Meta
    type: str = "ClusterIP"
    cluster_ip: str | None = None
    cluster_ips: tuple[str, ...] = ()
    ip_families: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    selector: Mapping[str, str] | None = None
    session_affinity: str = "None"
    session_affinity_config: Mapping[str, Any] | None = None
    internal_traffic_policy: str | None = None
    traffic_distribution: str | None = None
    external_name: str | None = None
    kind = "Service"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


@dataclass(frozen=True, slots=True)
class EndpointPort:
    port: int | None
    name: str = ""
    protocol: str = "TCP"
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None
    hostname: str | None = None
    zone: str | None = None
    node_name: str | None = None

    @property
    def is_ready(self) -> bool:
        """Absent `ready` counts as ready (EndpointSlice API semantics)."""
        return self.ready is not False


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    meta: Meta
    address_type: str = "IPv4"
    ports: tuple[EndpointPort, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    kind = "EndpointSlice"

    @property
    def service_name(self) -> str | None:
        return self.meta.labels.get(LABEL_SERVICE_NAME)


@dataclass(frozen=True, slots=True)
class IngressBackend:
    service_name: str | None = None
    port_number: int | None = None
    port_name: str | None = None
    resource: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class IngressPath:
    path: str
    path_type: str
    backend: IngressBackend


@dataclass(frozen=True, slots=True)
class IngressRule:
    host: str | None
    paths: tuple[IngressPath, ...] = ()


@dataclass(frozen=True, slots=True)
class IngressTLS:
    hosts: tuple[str, ...] = ()
    secret_name: str | None = None


@dataclass(frozen=True, slots=True)
class Ingress:
    meta: Meta
    ingress_class_name: str | None = None
    default_backend: IngressBackend | None = None
    rules: tuple[IngressRule, ...] = ()
    tls: tuple[IngressTLS, ...] = ()
    load_balancer_ingress: tuple[Mapping[str, Any], ...] = ()
    kind = "Ingress"

    @property
    def class_name(self) -> str | None:
        """spec.ingressClassName, else the legacy annotation."""
        return self.ingress_class_name or self.meta.annotations.get(ANNOTATION_INGRESS_CLASS)


@dataclass(frozen=True, slots=True)
class IngressClass:
    meta: Meta
    controller: str = ""
    is_default: bool = False
    kind = "IngressClass"


@dataclass(frozen=True, slots=True)
class Secret:
    meta: Meta
    type: str = "Opaque"
    data: Mapping[str, bytes] = field(default_factory=dict)
    kind = "Secret"


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    observed_generation: int = 0
    last_transition_time: str = ""


@dataclass(frozen=True, slots=True)
class ServiceExport:
    meta: Meta
    api_version: str = f"{MCS_GROUP}/v1alpha1"
    conditions: tuple[Condition, ...] = ()
    kind = "ServiceExport"


@dataclass(frozen=True, slots=True)
class ServiceImport:
    meta: Meta
    api_version: str = f"{MCS_GROUP}/v1alpha1"
    type: str = "ClusterSetIP"
    ports: tuple[ServicePort, ...] = ()
    ips: tuple[str, ...] = ()
    ip_families: tuple[str, ...] = ()
    session_affinity: str = "None"
    session_affinity_config: Mapping[str, Any] | None = None
    internal_traffic_policy: str | None = None
    traffic_distribution: str | None = None
    clusters: tuple[str, ...] = ()
    kind = "ServiceImport"


@dataclass(frozen=True, slots=True)
class Lease:
    meta: Meta
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int = 0
    kind = "Lease"


KubeObject = Union[Namespace, Service, EndpointSlice, Ingress, IngressClass, Secret,
                   ServiceExport, ServiceImport, Lease]

# --- parsing ------------------------------------------------------------------------


def parse_meta(raw: Mapping[str, Any], *, namespaced: bool = True,
               name_rule: Callable[[str], str | None] = validation.dns1123_subdomain) -> Meta:
    """metadata; `name_rule` is the kind's naming rule (most kinds: an RFC 1123 subdomain)."""
    md = as_map(raw.get("metadata"), "metadata")
    name = as_str(md.get("name"), "metadata.name", required=True)
    assert name is not None
    if not name:
        raise ObjectError("metadata.name: must not be empty")
    checked(name_rule, name, "metadata.name")
    namespace = as_str(md.get("namespace"), "metadata.namespace") or ("default" if namespaced else "")
    if namespaced:
        checked(validation.dns1123_label, namespace, "metadata.namespace")
    owners = tuple(
        OwnerReference(api_version=shared(str(o.get("apiVersion", ""))), kind=shared(str(o.get("kind", ""))),
                       name=shared(str(o.get("name", ""))), uid=str(o.get("uid", "")),
                       controller=bool(o.get("controller", False)))
        for o in as_list(md.get("ownerReferences"), "metadata.ownerReferences") if isinstance(o, dict))
    return Meta(
        name=shared(name),
        namespace=intern(namespace) if namespaced else "",
        uid=str(md.get("uid") or ""),
        resource_version=str(md.get("resourceVersion") or ""),
        generation=int(md.get("generation") or 0),
        creation_timestamp=str(md.get("creationTimestamp") or ""),
        labels=shared_str_map(md.get("labels"), "metadata.labels"),
        annotations=shared_str_map(md.get("annotations"), "metadata.annotations"),
        owner_references=owners,
    )


def _service_port(raw: Any, where: str) -> ServicePort:
    p = as_map(raw, where)
    port = as_int(p.get("port"), f"{where}.port", required=True, lo=1)
    assert port is not None
    target = p.get("targetPort")
    if isinstance(target, bool) or (target is not None and not isinstance(target, (int, str))):
        raise ObjectError(f"{where}.targetPort: expected a number or a name")
    if isinstance(target, int):
        as_int(target, f"{where}.targetPort", lo=1)
    elif isinstance(target, str):
        checked(validation.port_name, target, f"{where}.targetPort")
    name = as_str(p.get("name"), f"{where}.name") or ""
    if name:
        checked(validation.dns1123_label, name, f"{where}.name")
    return ServicePort(port=port, name=shared(name),
                       protocol=shared(as_str(p.get("protocol"), f"{where}.protocol") or "TCP"),
                       target_port=target, app_protocol=as_optional_str(p.get("appProtocol"), f"{where}.appProtocol"))


def parse_namespace(raw: Mapping[str, Any]) -> Namespace:
    return Namespace(meta=parse_meta(raw, namespaced=False, name_rule=validation.dns1123_label))


def parse_service(raw: Mapping[str, Any]) -> Service:
    spec = as_map(raw.get("spec"), "spec")
    ports = tuple(_service_port(p, f"spec.ports[{i}]") for i, p in enumerate(as_list(spec.get("ports"), "spec.ports")))
    selector = spec.get("selector")
    stype = as_str(spec.get("type"), "spec.type") or "ClusterIP"
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise ObjectError(f"spec.type: unknown Service type {stype!r}")
    cluster_ip = as_str(spec.get("clusterIP"), "spec.clusterIP")
    if cluster_ip and cluster_ip != "None":
        checked(validation.ip, cluster_ip, "spec.clusterIP")
    cluster_ips = tuple(str(x) for x in as_list(spec.get("clusterIPs"), "spec.clusterIPs"))
    for i, x in enumerate(cluster_ips):
        if x != "None":
            checked(validation.ip, x, f"spec.clusterIPs[{i}]")
    if cluster_ip and not cluster_ips:
        cluster_ips = (cluster_ip,)
    return Service(
        meta=parse_meta(raw, name_rule=validation.dns1123_label), type=stype, cluster_ip=cluster_ip, cluster_ips=cluster_ips,
        ip_families=tuple(str(x) for x in as_list(spec.get("ipFamilies"), "spec.ipFamilies")),
        ports=ports,
        selector=None if selector is None else as_shared_str_map(selector, "spec.selector"),
        session_affinity=as_str(spec.get("sessionAffinity"), "spec.sessionAffinity") or "None",
        session_affinity_config=as_map(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig") or None,
        internal_traffic_policy=as_optional_str(spec.get("internalTrafficPolicy"), "spec.internalTrafficPolicy"),
        traffic_distribution=as_optional_str(spec.get("trafficDistribution"), "spec.trafficDistribution"),
        external_name=as_optional_str(spec.get("externalName"), "spec.externalName"),
    )


def parse_endpoint_slice(raw: Mapping[str, Any]) -> EndpointSlice:
    address_type = as_str(raw.get("addressType"), "addressType") or "IPv4"
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        raise ObjectError(f"addressType: unknown address type {address_type!r}")
    ports = []
    for i, p in enumerate(as_list(raw.get("ports"), "ports")):
        p = as_map(p, f"ports[{i}]")
        name = as_str(p.get("name"), f"ports[{i}].name") or ""
        if name:
            checked(validation.dns1123_label, name, f"ports[{i}].name")
        ports.append(EndpointPort(port=as_int(p.get("port"), f"ports[{i}].port", lo=1),
                                  name=shared(name),
                                  protocol=shared(as_str(p.get("protocol"), f"ports[{i}].protocol") or "TCP"),
                                  app_protocol=as_optional_str(p.get("appProtocol"), f"ports[{i}].appProtocol")))
    endpoints = [_plain_endpoint(e, address_type) or _endpoint(e, f"endpoints[{i}]", address_type)
                 for i, e in enumerate(as_list(raw.get("endpoints"), "endpoints"))]
    return EndpointSlice(meta=parse_meta(raw), address_type=address_type, ports=tuple(ports),
                         endpoints=tuple(endpoints))


# One Endpoint per distinct plain endpoint, shared by every slice that holds it: a derived
# slice in each consumer (parsed from a write's answer) repeats its source's endpoints, and a
# watch event re-parses every endpoint of a slice when one moves. Keyed by the raw fields and
# the address type, so a hit skips the address and hostname checks the entry passed; the
# common endpoint (no names) by its addresses and one small number for the rest.
_ENDPOINTS: SharedValues[Endpoint] = SharedValues()
_TYPE_CODE = {"IPv4": 0, "IPv6": 27, "FQDN": 54}
_COND_CODE = {None: 0, False: 1, True: 2}


def _plain_endpoint(e: Any, address_type: str) -> Endpoint | None:
    """The common endpoint (string addresses, boolean conditions, string names) in a few
    µs, shared (see _ENDPOINTS). None sends anything else to `_endpoint`, which applies the
    same rules and names the field it rejects."""
    if type(e) is not dict:
        return None
    addrs = e.get("addresses")
    if type(addrs) is not list or not addrs:
        return None
    for a in addrs:
        if type(a) is not str:
            return None
    cond = e.get("conditions")
    if cond is None:
        ready = serving = terminating = None
    elif type(cond) is dict:
        ready, serving, terminating = cond.get("ready"), cond.get("serving"), cond.get("terminating")
        if (ready is not None and type(ready) is not bool) or (serving is not None and type(serving) is not bool) \
                or (terminating is not None and type(terminating) is not bool):
            return None
    else:
        return None
    hostname, zone, node_name = e.get("hostname"), e.get("zone"), e.get("nodeName")
    if (hostname is not None and type(hostname) is not str) or (zone is not None and type(zone) is not str) \
            or (node_name is not None and type(node_name) is not str):
        return None
    zone, node_name = zone or None, node_name or None  # "" is unset (rawfields.as_optional_str)
    addresses = tuple(addrs)
    code = _TYPE_CODE[address_type] + 9 * _COND_CODE[ready] + 3 * _COND_CODE[serving] + _COND_CODE[terminating]
    key = (addresses, code) if hostname is None and zone is None and node_name is None else \
        (addresses, code, hostname, zone, node_name)
    found = _ENDPOINTS.get(key)
    if found is not None:
        return found
    for a in addresses:
        if _address(a, address_type) is not None:
            return None
    if hostname is not None and _label(hostname) is not None:
        return None
    ep = Endpoint(tuple(map(shared, addresses)), ready, serving, terminating,
                  hostname if hostname is None else shared(hostname), zone if zone is None else shared(zone),
                  node_name if node_name is None else shared(node_name))
    return _ENDPOINTS.put((ep.addresses, *key[1:]), ep)


def _endpoint(e: Any, where: str, address_type: str) -> Endpoint:
    """One endpoint, every field checked; ObjectError names the field."""
    e = as_map(e, where)
    addresses = tuple(str(a) for a in as_list(e.get("addresses"), f"{where}.addresses"))
    if not addresses:
        raise ObjectError(f"{where}.addresses: at least one address is required")
    for j, a in enumerate(addresses):
        checked(lambda v: validation.address(v, address_type), a, f"{where}.addresses[{j}]")
    hostname = as_str(e.get("hostname"), f"{where}.hostname")
    if hostname is not None:
        checked(validation.dns1123_label, hostname, f"{where}.hostname")
    cond = as_map(e.get("conditions"), f"{where}.conditions")
    return Endpoint(
        addresses=addresses,
        ready=as_bool(cond.get("ready"), f"{where}.conditions.ready"),
        serving=as_bool(cond.get("serving"), f"{where}.conditions.serving"),
        terminating=as_bool(cond.get("terminating"), f"{where}.conditions.terminating"),
        hostname=hostname,
        zone=as_optional_str(e.get("zone"), f"{where}.zone"),
        node_name=as_optional_str(e.get("nodeName"), f"{where}.nodeName"),
    )


def _ingress_backend(raw: Any, where: str) -> IngressBackend:
    b = as_map(raw, where)
    if "resource" in b:
        return IngressBackend(resource=as_map(b["resource"], f"{where}.resource"))
    svc = as_map(b.get("service"), f"{where}.service")
    if not svc:
        raise ObjectError(f"{where}: needs service or resource")
    name = as_str(svc.get("name"), f"{where}.service.name", required=True)
    assert name is not None
    checked(validation.dns1123_label, name, f"{where}.service.name")
    port = as_map(svc.get("port"), f"{where}.service.port")
    number = as_int(port.get("number"), f"{where}.service.port.number", lo=1)
    pname = as_str(port.get("name"), f"{where}.service.port.name")
    if pname:
        checked(validation.port_name, pname, f"{where}.service.port.name")
    if number is None and not pname:
        raise ObjectError(f"{where}.service.port: needs number or name")
    return IngressBackend(service_name=name, port_number=number, port_name=pname)


_PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")


def _ingress_tls(raw: Any, where: str) -> IngressTLS:
    t = as_map(raw, where)
    hosts = tuple(checked(validation.ingress_host, str(h).lower(), f"{where}.hosts[{j}]")
                  for j, h in enumerate(as_list(t.get("hosts"), f"{where}.hosts")))
    secret = as_str(t.get("secretName"), f"{where}.secretName")
    if secret:
        checked(validation.dns1123_subdomain, secret, f"{where}.secretName")
    return IngressTLS(hosts=hosts, secret_name=secret)


def parse_ingress(raw: Mapping[str, Any]) -> Ingress:
    spec = as_map(raw.get("spec"), "spec")
    rules = []
    for i, r in enumerate(as_list(spec.get("rules"), "spec.rules")):
        r = as_map(r, f"spec.rules[{i}]")
        host = as_str(r.get("host"), f"spec.rules[{i}].host")
        if host:  # matched without regard to case, so only the case is forgiven
            checked(validation.ingress_host, host.lower(), f"spec.rules[{i}].host")
        http = as_map(r.get("http"), f"spec.rules[{i}].http")
        paths = []
        for j, p in enumerate(as_list(http.get("paths"), f"spec.rules[{i}].http.paths")):
            where = f"spec.rules[{i}].http.paths[{j}]"
            p = as_map(p, where)
            path = as_str(p.get("path"), f"{where}.path") or "/"
            path_type = as_str(p.get("pathType"), f"{where}.pathType") or "ImplementationSpecific"
            if path_type not in _PATH_TYPES:
                raise ObjectError(f"{where}.pathType: {path_type!r} is not one of {', '.join(_PATH_TYPES)}")
            paths.append(IngressPath(path=path, path_type=path_type,
                                     backend=_ingress_backend(p.get("backend"), f"{where}.backend")))
        rules.append(IngressRule(host=host.lower() if host else None, paths=tuple(paths)))
    tls = tuple(_ingress_tls(t, f"spec.tls[{i}]") for i, t in enumerate(as_list(spec.get("tls"), "spec.tls")))
    default = spec.get("defaultBackend") or spec.get("backend")
    status = as_map(as_map(raw.get("status"), "status").get("loadBalancer"), "status.loadBalancer")
    return Ingress(
        meta=parse_meta(raw),
        ingress_class_name=as_str(spec.get("ingressClassName"), "spec.ingressClassName"),
        default_backend=_ingress_backend(default, "spec.defaultBackend") if default else None,
        rules=tuple(rules), tls=tls,
        load_balancer_ingress=tuple(x for x in as_list(status.get("ingress"), "status.loadBalancer.ingress")
                                    if isinstance(x, dict)),
    )


def parse_ingress_class(raw: Mapping[str, Any]) -> IngressClass:
    meta = parse_meta(raw, namespaced=False)
    spec = as_map(raw.get("spec"), "spec")
    return IngressClass(meta=meta, controller=as_str(spec.get("controller"), "spec.controller") or "",
                        is_default=meta.annotations.get(ANNOTATION_DEFAULT_CLASS, "").lower() == "true")


def parse_secret(raw: Mapping[str, Any]) -> Secret:
    data: dict[str, bytes] = {}
    for key, value in as_map(raw.get("data"), "data").items():
        try:
            data[str(key)] = base64.b64decode(str(value or ""), validate=True)
        except (binascii.Error, ValueError):
            raise ObjectError(f"data.{key}: not valid base64") from None
    for key, value in as_map(raw.get("stringData"), "stringData").items():
        data[str(key)] = str(value).encode()
    return Secret(meta=parse_meta(raw), type=as_str(raw.get("type"), "type") or "Opaque", data=data)


def _conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    out = []
    for i, c in enumerate(as_list(raw, where)):
        c = as_map(c, f"{where}[{i}]")
        out.append(Condition(type=str(c.get("type", "")), status=str(c.get("status", "")),
                             reason=str(c.get("reason") or ""), message=str(c.get("message") or ""),
                             observed_generation=int(c.get("observedGeneration") or 0),
                             last_transition_time=str(c.get("lastTransitionTime") or "")))
    return tuple(out)


def parse_service_export(raw: Mapping[str, Any]) -> ServiceExport:
    status = as_map(raw.get("status"), "status")
    return ServiceExport(meta=parse_meta(raw, name_rule=validation.dns1123_label), api_version=str(raw.get("apiVersion")),
                         conditions=_conditions(status.get("conditions"), "status.conditions"))


def parse_service_import(raw: Mapping[str, Any]) -> ServiceImport:
    spec = as_map(raw.get("spec"), "spec")
    status = as_map(raw.get("status"), "status")
    itype = as_str(spec.get("type"), "spec.type") or "ClusterSetIP"
    if itype not in ("ClusterSetIP", "Headless"):
        raise ObjectError(f"spec.type: {itype!r} is not ClusterSetIP or Headless")
    ips = tuple(str(x) for x in as_list(spec.get("ips"), "spec.ips"))
    if len(ips) > 2:
        raise ObjectError("spec.ips: at most 2 addresses")
    for i, x in enumerate(ips):
        checked(validation.ip, x, f"spec.ips[{i}]")
    return ServiceImport(
        meta=parse_meta(raw, name_rule=validation.dns1123_label), api_version=str(raw.get("apiVersion")), type=itype,
        ports=tuple(_service_port(p, f"spec.ports[{i}]") for i, p in enumerate(as_list(spec.get("ports"), "spec.ports"))),
        ips=ips,
        ip_families=tuple(str(x) for x in as_list(spec.get("ipFamilies"), "spec.ipFamilies")),
        session_affinity=as_str(spec.get("sessionAffinity"), "spec.sessionAffinity") or "None",
        session_affinity_config=as_map(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig") or None,
        internal_traffic_policy=as_optional_str(spec.get("internalTrafficPolicy"), "spec.internalTrafficPolicy"),
        traffic_distribution=as_optional_str(spec.get("trafficDistribution"), "spec.trafficDistribution"),
        clusters=tuple(str(as_map(c, "status.clusters[]").get("cluster", ""))
                       for c in as_list(status.get("clusters"), "status.clusters")),
    )


def parse_lease(raw: Mapping[str, Any]) -> Lease:
    spec = as_map(raw.get("spec"), "spec")
    return Lease(meta=parse_meta(raw), holder_identity=as_str(spec.get("holderIdentity"), "spec.holderIdentity"),
                 lease_duration_seconds=as_int(spec.get("leaseDurationSeconds"), "spec.leaseDurationSeconds",
                                             hi=2**31),
                 acquire_time=as_str(spec.get("acquireTime"), "spec.acquireTime"),
                 renew_time=as_str(spec.get("renewTime"), "spec.renewTime"),
                 lease_transitions=int(spec.get("leaseTransitions") or 0))


# (group, kind) -> parser; group "" is the core group.
PARSERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], KubeObject]] = {
    ("", "Namespace"): parse_namespace,
    ("", "Service"): parse_service,
    ("", "Secret"): parse_secret,
    ("discovery.k8s.io", "EndpointSlice"): parse_endpoint_slice,
    ("networking.k8s.io", "Ingress"): parse_ingress,
    ("networking.k8s.io", "IngressClass"): parse_ingress_class,
    (MCS_GROUP, "ServiceExport"): parse_service_export,
    (MCS_GROUP, "ServiceImport"): parse_service_import,
    ("coordination.k8s.io", "Lease"): parse_lease,
}


def api_group(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def is_known(raw: Mapping[str, Any]) -> bool:
    return (api_group(str(raw.get("apiVersion", ""))), str(raw.get("kind", ""))) in PARSERS


def parse_object(raw: Mapping[str, Any]) -> KubeObject:
    """Parse one raw object; raises ObjectError for a known kind that is malformed.

    Unknown kinds raise ObjectError too; callers that read whole folders skip them first
    with `is_known` so that Deployments etc. beside our objects are not errors.
    """
    if not isinstance(raw, Mapping):
        raise ObjectError(f"expected a mapping, got {type(raw).__name__}")
    key = (api_group(str(raw.get("apiVersion", ""))), str(raw.get("kind", "")))
    parser = PARSERS.get(key)
    if parser is None:
        raise ObjectError(f"unsupported kind {raw.get('apiVersion')}/{raw.get('kind')}")
    return parser(raw)


def describe(raw: Mapping[str, Any]) -> str:
    """`kind/namespace/name` of a raw object, as diagnostics print it (best effort)."""
    md = raw.get("metadata") if isinstance(raw, Mapping) else None
    md = md if isinstance(md, Mapping) else {}
    kind = raw.get("kind", "?") if isinstance(raw, Mapping) else "?"
    return f"{kind}/{md.get('namespace') or ''}/{md.get('name') or '?'}"
