"""fleet.yaml: which clusters make up the fleet and where each one's objects come from.

Loaded once at start; every mistake is a FleetConfigError whose message starts with the
fleet.yaml path and names the field, so `fleetgate` can print it as one line and exit.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

DEFAULT_ZONE = "clusterset.local"
DEFAULT_CLUSTERSET_IP_RANGE = "242.0.0.0/16"
HUB_SOURCE_NAME = "hub"  # the name a hub that is not a member goes by (logs, metrics, readyz)

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?$")
_TOP_KEYS = ("zone", "clustersetIPRange", "mcs", "hub", "clusters")
IMPORT_MODES = ("all", "explicit")  # mcs.importMode: every consumer imports, or only on a user's ServiceImport
_SOURCE_KEYS = ("manifests", "kubeconfig", "context")
_CLUSTER_KEYS = ("name", "zone") + _SOURCE_KEYS


class FleetConfigError(ValueError):
    """fleet.yaml cannot be used; the message is `<path>: <field>: <problem>`."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where one cluster's objects come from: a manifests folder or a kubeconfig (+context)."""
    manifests: Path | None = None
    kubeconfig: Path | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    name: str
    zone: str | None
    source: SourceSpec


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """The parsed fleet.yaml. `hub` is a separate source, `hub_cluster` names a member
    that doubles as the hub; both None means no hub (no Ingresses: DNS/MCS only)."""
    path: Path
    zone: str
    clusterset_ip_range: str
    hub: SourceSpec | None
    hub_cluster: str | None
    clusters: tuple[ClusterSpec, ...]
    import_mode: str = "all"  # mcs.importMode (IMPORT_MODES)

    def cluster(self, name: str) -> ClusterSpec | None:
        for spec in self.clusters:
            if spec.name == name:
                return spec
        return None


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, which PyYAML would silently overwrite."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Reader:
    """Validation helpers that prefix every error with the fleet.yaml path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent.absolute()

    def error(self, where: str, message: str) -> FleetConfigError:
        return FleetConfigError(f"{self.path}: {where}: {message}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.error(where, f"expected a mapping, got {_type(value)}")
        for key in value:
            if key not in allowed:
                raise self.error(_join(where, str(key)),
                                 f"unknown key (expected one of: {', '.join(allowed)})")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(where, f"expected a non-empty string, got {_type(value)}")
        return value.strip()

    def source(self, raw: Mapping[str, Any], where: str) -> SourceSpec:
        has_manifests, has_kubeconfig = "manifests" in raw, "kubeconfig" in raw
        if has_manifests and has_kubeconfig:
            raise self.error(where, "set exactly one of manifests or kubeconfig, not both")
        if not has_manifests and not has_kubeconfig:
            raise self.error(where, "set exactly one of manifests or kubeconfig")
        if has_manifests:
            if "context" in raw:
                raise self.error(_join(where, "context"), "only valid with kubeconfig")
            folder = self.base / self.string(raw["manifests"], _join(where, "manifests"))
            if not folder.is_dir():
                raise self.error(_join(where, "manifests"), f"folder {folder} does not exist")
            return SourceSpec(manifests=folder)
        kubeconfig = self.base / self.string(raw["kubeconfig"], _join(where, "kubeconfig"))
        if not kubeconfig.is_file():
            raise self.error(_join(where, "kubeconfig"), f"file {kubeconfig} does not exist")
        context = raw.get("context")
        return SourceSpec(kubeconfig=kubeconfig,
                          context=None if context is None else self.string(context, _join(where, "context")))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _valid_dns_name(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and all(0 < len(lb) <= 63 and _DNS_LABEL.match(lb) for lb in labels)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FleetConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = exc.problem or exc.context or "syntax error"
        raise FleetConfigError(f"{path}: {line}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise FleetConfigError(f"{path}: YAML syntax error: {exc}") from None


FLEET_FILE = "fleet.yaml"


def fleet_file(path: str | Path) -> Path:
    """`--fleet` names a fleet.yaml or the folder holding one (like kubectl -f a folder)."""
    path = Path(path)
    if path.is_dir():
        inside = path / FLEET_FILE
        if not inside.is_file():
            raise FleetConfigError(f"{path}: a folder without a {FLEET_FILE}; give the fleet.yaml "
                                   "itself or the folder that holds it")
        return inside
    return path


def load_fleet_config(path: str | Path) -> FleetConfig:
    """Read and check fleet.yaml (or the one in the folder given); relative paths in it are
    relative to its folder."""
    path = fleet_file(path)
    r = _Reader(path)
    raw = _read_yaml(path)
    if raw is None:
        raise FleetConfigError(f"{path}: clusters: the file is empty; at least one cluster is required")
    top = r.mapping(raw, "", _TOP_KEYS) if isinstance(raw, dict) else None
    if top is None:
        raise FleetConfigError(f"{path}: expected a mapping at the top, got {_type(raw)}")

    zone = r.string(top.get("zone", DEFAULT_ZONE), "zone").lower().rstrip(".")
    if not _valid_dns_name(zone):
        raise r.error("zone", f"{zone!r} is not a valid DNS name")

    cidr = r.string(top.get("clustersetIPRange", DEFAULT_CLUSTERSET_IP_RANGE), "clustersetIPRange")
    try:
        if "/" not in cidr:
            raise ValueError("missing /prefix length")
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise r.error("clustersetIPRange", f"{cidr!r} is not a CIDR range: {exc}") from None

    import_mode = "all"
    if top.get("mcs") is not None:
        mcs = r.mapping(top["mcs"], "mcs", ("importMode",))
        import_mode = r.string(mcs.get("importMode", "all"), "mcs.importMode")
        if import_mode not in IMPORT_MODES:
            raise r.error("mcs.importMode", f"{import_mode!r} is not one of: {', '.join(IMPORT_MODES)}")

    clusters_raw = top.get("clusters")
    if clusters_raw is None or clusters_raw == []:
        raise r.error("clusters", "at least one cluster is required")
    if not isinstance(clusters_raw, list):
        raise r.error("clusters", f"expected a list, got {_type(clusters_raw)}")
    clusters: list[ClusterSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(clusters_raw):
        where = f"clusters[{i}]"
        c = r.mapping(item, where, _CLUSTER_KEYS)
        if "name" not in c:
            raise r.error(f"{where}.name", "required")
        name = r.string(c["name"], f"{where}.name")
        if len(name) > 63 or not _LABEL.match(name):
            raise r.error(f"{where}.name", f"{name!r} is not an RFC 1123 label "
                          "(lowercase letters, digits and '-', at most 63, starting and ending alphanumeric)")
        if name in seen:
            raise r.error(f"{where}.name", f"duplicate cluster name {name!r}")
        seen.add(name)
        topo = c.get("zone")
        clusters.append(ClusterSpec(name=name,
                                    zone=None if topo is None else r.string(topo, f"{where}.zone"),
                                    source=r.source(c, where)))

    hub: SourceSpec | None = None
    hub_cluster: str | None = None
    hub_raw = top.get("hub")
    if hub_raw is not None:
        if isinstance(hub_raw, dict) and "cluster" in hub_raw:
            h = r.mapping(hub_raw, "hub", ("cluster",))
            hub_cluster = r.string(h["cluster"], "hub.cluster")
            if hub_cluster not in seen:
                raise r.error("hub.cluster", f"{hub_cluster!r} is not one of the clusters "
                              f"({', '.join(sorted(seen))})")
        else:
            hub = r.source(r.mapping(hub_raw, "hub", _SOURCE_KEYS + ("cluster",)), "hub")
            if HUB_SOURCE_NAME in seen:
                raise r.error("hub", f"a separate hub needs the name {HUB_SOURCE_NAME!r}, which a "
                              "member cluster already uses; write hub: {cluster: hub} if it is that member")

    return FleetConfig(path=path, zone=zone, clusterset_ip_range=str(network), hub=hub,
                       hub_cluster=hub_cluster, clusters=tuple(clusters), import_mode=import_mode)
