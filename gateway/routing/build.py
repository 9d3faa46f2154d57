"""build(snapshot) -> (RouteTable, diagnostics): Ingress semantics as a pure function.

Everything the data plane must not think about at request time happens here: class
selection, host/path indexing, merging Ingresses, duplicate resolution, and resolving each
backend's Service port to ready endpoints in every member cluster.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

from fleet.objects import Ingress, IngressBackend
from fleet.snapshot import ClusterObjects, Diagnostic, FleetSnapshot

from .annotations import parse_annotations
from .certificates import certificates
from .backends import Backend, ClusterShare, UpstreamEndpoint, make_endpoint
from .policy import CanaryRule, RoutePolicy, ServiceRef
from .table import Route, RouteTable, VirtualHost

DEFAULT_CLASSES = ("fleetgate",)


def _ingress_id(ing: Ingress) -> str:
    return f"{ing.meta.namespace}/{ing.meta.name}"


def _age_key(ing: Ingress) -> tuple[str, str, str]:
    """Oldest first; objects without a timestamp (plain files) order by namespace/name."""
    return (ing.meta.creation_timestamp or "~", ing.meta.namespace, ing.meta.name)


def selected_ingresses(hub: ClusterObjects, classes: Sequence[str]) -> list[Ingress]:
    """Ingresses whose class is ours; class-less ones too when one of our IngressClasses is
    marked default."""
    default_is_ours = any(ic.is_default and ic.meta.name in classes
                          for ic in hub.ingress_classes.values())
    out = []
    for ing in hub.ingresses.values():
        cls = ing.class_name
        if (cls in classes) if cls else default_is_ours:
            out.append(ing)
    out.sort(key=_age_key)
    return out


class BuildMemo:
    """What one build may reuse from the previous: per (cluster, service, port) the
    ClusterShare computed from the same Service and EndpointSlice objects (frozen views keep
    their identity while unchanged, in file and live sources alike). It makes a rebuild
    after one EndpointSlice change cost a pass over identities, not over every endpoint;
    the result is the same as without it."""

    def __init__(self) -> None:
        self.shares: dict[tuple[Any, ...], Any] = {}
        self.next: dict[tuple[Any, ...], Any] = {}

    def rotate(self) -> None:
        """Keep only what the last build used."""
        self.shares, self.next = self.next, {}


class _Resolver:
    """Resolves (namespace, service, port) to a Backend once per build (memoized)."""

    def __init__(self, snapshot: FleetSnapshot, memo: BuildMemo | None = None) -> None:
        self.snapshot = snapshot
        self.memo = memo or BuildMemo()
        self.cache: dict[tuple[str, str, str], tuple[Backend, list[str]]] = {}
        # EndpointSlices grouped once per cluster by (namespace, service) so resolving
        # 10,000 endpoints stays linear.
        self.slices = []
        for member in snapshot.members:
            grouped: dict[tuple[str, str], list] = {}
            for (ns, _), sl in member.objects.endpoint_slices.items():
                svc = sl.service_name
                if svc:
                    grouped.setdefault((ns, svc), []).append(sl)
            self.slices.append(grouped)

    def resolve(self, namespace: str, b: IngressBackend) -> tuple[Backend, list[str]]:
        port_label = str(b.port_number) if b.port_number is not None else str(b.port_name)
        key = (namespace, str(b.service_name), port_label)
        hit = self.cache.get(key)
        if hit is None:
            hit = self._resolve(namespace, str(b.service_name), b.port_number, b.port_name, port_label)
            self.cache[key] = hit
        return hit

    def resolve_ref(self, namespace: str, service: str, port: str) -> tuple[Backend, list[str]]:
        """A backend named by annotation: port is a number, a name, or "" (first port)."""
        if port.isdigit():
            return self.resolve(namespace, IngressBackend(service, port_number=int(port)))
        if port:
            return self.resolve(namespace, IngressBackend(service, port_name=port))
        for member in self.snapshot.members:
            svc = member.objects.services.get((namespace, service))
            if svc is not None and svc.ports:
                p = svc.ports[0]
                return self.resolve(namespace, IngressBackend(service, port_number=p.port))
        return self.resolve(namespace, IngressBackend(service, port_name="(first)"))

    def _resolve(self, ns: str, name: str, number: int | None, pname: str | None,
                 port_label: str) -> tuple[Backend, list[str]]:
        problems: list[str] = []
        shares: list[ClusterShare] = []
        found_service = False
        memo = self.memo
        for member, grouped in zip(self.snapshot.members, self.slices):
            svc = member.objects.services.get((ns, name))
            if svc is None:
                continue
            found_service = True
            sport = next((p for p in svc.ports
                          if (number is not None and p.port == number) or (pname and p.name == pname)), None)
            if sport is None:
                problems.append(f"service {ns}/{name} in cluster {member.name} has no port {port_label}")
                continue
            slices = grouped.get((ns, name), ())
            key = (member.name, member.zone, ns, name, number, pname)
            prev = memo.shares.get(key)
            if (prev is not None and prev[0] is svc and len(prev[1]) == len(slices)
                    and all(a is b for a, b in zip(prev[1], slices))):
                memo.next[key] = prev
                shares.append(prev[2])
                continue
            seen: set[str] = set()
            eps: list[UpstreamEndpoint] = []
            for sl in sorted(slices, key=lambda s: s.meta.name):
                if sl.address_type == "FQDN":
                    continue
                eport = next((p for p in sl.ports if p.name == sport.name), None)
                if eport is None or eport.port is None:
                    continue
                for ep in sl.endpoints:
                    if not ep.is_ready:
                        continue
                    for addr in ep.addresses:
                        e = make_endpoint(addr, eport.port, member.name, ep.zone or member.zone)
                        if e.key not in seen:
                            seen.add(e.key)
                            eps.append(e)
            share = ClusterShare(member.name, member.zone, tuple(eps))
            memo.next[key] = (svc, tuple(slices), share)
            shares.append(share)
        if not found_service:
            problems.append(f"service {ns}/{name} not found in any member cluster")
        bkey = (ns, name, port_label)
        prev_backend = memo.shares.get(bkey)
        if (prev_backend is not None and len(prev_backend.clusters) == len(shares)
                and all(a is b for a, b in zip(prev_backend.clusters, shares))):
            memo.next[bkey] = prev_backend  # nothing changed: the same Backend object
            return prev_backend, problems
        backend = Backend(key=f"{ns}/{name}:{port_label}", namespace=ns, service=name, port=port_label,
                          clusters=tuple(shares),
                          endpoints=tuple(e for s in shares for e in s.endpoints))
        memo.next[bkey] = backend
        return backend, problems


@dataclass
class _HostBuilder:
    exact: dict[str, Route] = field(default_factory=dict)
    prefix: dict[str, Route] = field(default_factory=dict)
    regex: dict[str, Route] = field(default_factory=dict)

    def freeze(self) -> VirtualHost:
        patterns = []
        for path, r in self.regex.items():
            patterns.append((re.compile(path, re.IGNORECASE), len(path), r))
        patterns.sort(key=lambda t: -t[1])
        return VirtualHost(exact=dict(self.exact), prefix=dict(self.prefix), regex=tuple(patterns))


def _prefix_key(path: str) -> str:
    return path.rstrip("/") or "/"


def build(snapshot: FleetSnapshot, *, ingress_classes: Sequence[str] = DEFAULT_CLASSES,
          version: int = 0, zone: str | None = None,
          memo: BuildMemo | None = None) -> tuple[RouteTable, list[Diagnostic]]:
    hub = snapshot.hub
    diags: list[Diagnostic] = []
    resolver = _Resolver(snapshot, memo)
    hosts: dict[str | None, _HostBuilder] = {}
    default: Route | None = None
    default_owner = ""

    def diag(ing: Ingress, message: str, severity: str = "error") -> None:
        diags.append(Diagnostic(hub.origin(ing), f"Ingress/{ing.meta.namespace}/{ing.meta.name}",
                                message, severity))

    def backend_for(ing: Ingress, b: IngressBackend, where: str) -> Backend | None:
        if b.resource is not None:
            diag(ing, f"{where}: resource backends are unsupported")
            return None
        backend, problems = resolver.resolve(ing.meta.namespace, b)
        for p in problems:
            diag(ing, f"{where}: {p}", "warning")
        return backend

    def resolve_policy(ing: Ingress, policy: RoutePolicy) -> RoutePolicy:
        """Fill in the backends the policy's annotations name."""
        changes: dict = {}

        def ref(r: ServiceRef, what: str) -> ServiceRef:
            backend, problems = resolver.resolve_ref(r.namespace, r.service, r.port)
            for p in problems:
                diag(ing, f"annotation {what}: {p}", "warning")
            return replace(r, backend=backend)

        if policy.destinations:
            changes["destinations"] = tuple(
                replace(d, backend=resolver.resolve_ref(d.namespace, d.service, d.port)[0])
                for d in policy.destinations)
        if policy.default_backend is not None:
            changes["default_backend"] = ref(policy.default_backend, "default-backend")
        if policy.mirror is not None and policy.mirror.service is not None:
            changes["mirror"] = replace(policy.mirror, service=ref(policy.mirror.service, "mirror-target-service"))
        # ingress-nginx: plain-HTTP requests to an Ingress with tls are redirected unless
        # `ssl-redirect: "false"`; without tls there is no certificate to redirect to
        ssl_redirect = bool(ing.tls) and policy.ssl_redirect is not False
        if ssl_redirect != policy.ssl_redirect:
            changes["ssl_redirect"] = ssl_redirect
        unknown = [c for c in (policy.cluster_weights or {}) if c not in snapshot.member_names]
        unknown += [c for c in (policy.cluster_priority or ()) if c not in snapshot.member_names]
        if unknown:
            diag(ing, f"annotation cluster-weights/cluster-priority: unknown member cluster(s) "
                      f"{', '.join(sorted(set(unknown)))}", "warning")
        return replace(policy, **changes) if changes else policy

    selected = selected_ingresses(hub, ingress_classes)
    parsed = {}
    for ing in selected:
        pa = parse_annotations(ing.meta.annotations, namespace=ing.meta.namespace,
                               ingress=_ingress_id(ing), zone=zone)
        for prob in pa.problems:
            diag(ing, f"annotation {prob.annotation}: {prob.message}", prob.severity)
        parsed[_ingress_id(ing)] = pa

    def path_key(ing: Ingress, regex: bool, hb: _HostBuilder, path: str, path_type: str,
                 where: str) -> tuple[dict[str, Route], str, str] | None:
        if not regex and not path.startswith("/"):
            diag(ing, f"{where}.path: {path!r} must start with '/'")
            return None
        if regex and path_type != "Exact":
            try:
                re.compile(path)
            except re.error as exc:
                diag(ing, f"{where}.path: invalid regular expression {path!r}: {exc}")
                return None
            return hb.regex, path, "Regex"
        if path_type == "Exact":
            return hb.exact, path, "Exact"
        return hb.prefix, _prefix_key(path), path_type

    # main Ingresses first (oldest first), then canaries attach to the routes they shadow
    for ing in sorted(selected, key=lambda i: parsed[_ingress_id(i)].canary is not None):
        pa = parsed[_ingress_id(ing)]
        if pa.canary_disabled:
            continue  # an invalid canary rule: the main route keeps all of its traffic
        ident = _ingress_id(ing)
        policy = resolve_policy(ing, pa.policy)
        if pa.canary is not None:
            for i, rule in enumerate(ing.rules):
                hb = hosts.get(rule.host)
                for j, p in enumerate(rule.paths):
                    where = f"spec.rules[{i}].http.paths[{j}]"
                    found = path_key(ing, pa.use_regex, hb, p.path or "/", p.path_type, where) if hb else None
                    main = found[0].get(found[1]) if found else None
                    if main is None or found is None:
                        diag(ing, f"{where}: canary for host {rule.host or '*'} path {p.path or '/'} has no "
                                  "main Ingress to shadow; ignored", "warning")
                        continue
                    backend = backend_for(ing, p.backend, f"{where}.backend")
                    canary = replace(pa.canary, service=str(p.backend.service_name),
                                     port=str(p.backend.port_number or p.backend.port_name), backend=backend)
                    found[0][found[1]] = replace(main, policy=replace(main.policy,
                                                                      canaries=main.policy.canaries + (canary,)))
            continue
        if ing.default_backend is not None:
            backend = backend_for(ing, ing.default_backend, "spec.defaultBackend")
            if default is None:
                default = Route(None, "", "Default", ident, backend, policy, ing.meta.creation_timestamp)
                default_owner = ident
            else:
                diag(ing, f"spec.defaultBackend: ignored, Ingress {default_owner} (older) already "
                          "defines the default backend")
        for i, rule in enumerate(ing.rules):
            hb = hosts.setdefault(rule.host, _HostBuilder())
            for j, p in enumerate(rule.paths):
                where = f"spec.rules[{i}].http.paths[{j}]"
                path = p.path if p.path else "/"
                found = path_key(ing, pa.use_regex, hb, path, p.path_type, where)
                if found is None:
                    continue
                slot, key, kind = found
                if key in slot:
                    diag(ing, f"{where}: host {rule.host or '*'} path {path} ({kind}) is already routed "
                              f"by older Ingress {slot[key].ingress}; ignored")
                    continue
                backend = backend_for(ing, p.backend, f"{where}.backend")
                slot[key] = Route(rule.host, path, kind, ident, backend, policy, ing.meta.creation_timestamp)

    frozen = {h: hb.freeze() for h, hb in hosts.items()}
    routes = tuple(r for hb in hosts.values() for t in (hb.exact, hb.prefix, hb.regex) for r in t.values())
    exact_hosts = {h: vh for h, vh in frozen.items() if h and not h.startswith("*.")}
    wildcards = {h[2:]: vh for h, vh in frozen.items() if h and h.startswith("*.")}
    resolver.memo.rotate()
    table = RouteTable(hosts=exact_hosts, wildcards=wildcards, any_host=frozen.get(None),
                       default=default, routes=routes, version=version,
                       tls=certificates(hub, selected, diag),
                       request_headers=frozenset(h.encode() for r in (*routes, *([default] if default else ()))
                                               for h in headers_read(r.policy)))
    return table, diags


def headers_read(policy: RoutePolicy) -> set[str]:
    """Request headers a policy needs at request time."""
    names: set[str] = set()
    for c in policy.canaries:
        if c.header:
            names.add(c.header)
        if c.cookie:
            names.add("cookie")
    if policy.cluster_by_header:
        names.add(policy.cluster_by_header)
    if policy.hash_by and policy.hash_by.startswith("$http_"):
        names.add(policy.hash_by[6:].replace("_", "-"))
    if policy.affinity:
        names.add("cookie")
    if policy.cors:
        names.update(("origin", "access-control-request-method"))
    return names


def route_backends(r: Route) -> Iterable[Backend]:
    """Every backend a route may send to: main, canaries, destinations, fallback, mirror."""
    if r.backend is not None:
        yield r.backend
    pol = r.policy
    for c in pol.canaries:
        if c.backend is not None:
            yield c.backend
    for d in pol.destinations:
        if d.backend is not None:
            yield d.backend
    if pol.default_backend is not None and pol.default_backend.backend is not None:
        yield pol.default_backend.backend
    if pol.mirror is not None and pol.mirror.service is not None and pol.mirror.service.backend is not None:
        yield pol.mirror.service.backend


def all_backends(table: RouteTable) -> Iterable[Backend]:
    """Each distinct backend of a table once (pools, health checks, metrics)."""
    seen: set[str] = set()
    for r in (*table.routes, *([table.default] if table.default else [])):
        for b in route_backends(r):
            if b.key not in seen:
                seen.add(b.key)
                yield b


__all__ = ["build", "all_backends", "selected_ingresses", "RoutePolicy", "CanaryRule"]
