"""The Fleet aggregator: snapshots, coalescing, skip-when-unchanged, hub sharing, and
the loop-free load that `fleetgate validate` uses."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

import fleetgate
from fleet.config import FleetConfigError, SourceSpec, load_fleet_config
from fleet.fleet import Fleet, load_fleet_once
from fleet.objects import Namespace, Meta
from fleet.snapshot import EMPTY_CLUSTER, ClusterObjects, Diagnostic, FleetSnapshot

DEMO = Path(fleetgate.__file__).parent / "examples" / "demo" / "fleet.yaml"


class FakeSource:
    """A Source the test drives by hand: set objects/diagnostics, then `changed()`."""

    def __init__(self, name: str, *, loaded: bool = True) -> None:
        self.name = name
        self.loaded = loaded
        self.reachable = True
        self.objects: ClusterObjects = EMPTY_CLUSTER
        self.diagnostics: tuple[Diagnostic, ...] = ()
        self.on_change: Callable[[], None] | None = None
        self.stopped = False

    async def start(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change

    async def stop(self) -> None:
        self.stopped = True

    def set(self, *namespaces: str) -> None:
        self.objects = ClusterObjects.build(Namespace(Meta(name=n)) for n in namespaces)
        self.changed()

    def changed(self) -> None:
        assert self.on_change is not None
        self.on_change()


class Published:
    def __init__(self) -> None:
        self.snapshots: list[FleetSnapshot] = []

    def __call__(self, snapshot: FleetSnapshot) -> None:
        self.snapshots.append(snapshot)

    @property
    def versions(self) -> list[int]:
        return [s.version for s in self.snapshots]


@pytest.fixture
def live_fleet(tmp_path: Path, write) -> tuple[Fleet, dict[str, FakeSource]]:
    """A fleet whose three sources are FakeSources (kubeconfig sources via live_factory)."""
    (tmp_path / "kube.yaml").write_text("apiVersion: v1\nkind: Config\n")
    config = load_fleet_config(write(tmp_path / "fleet.yaml", """\
hub: {kubeconfig: kube.yaml, context: hub}
clusters:
  - {name: a, kubeconfig: kube.yaml}
  - {name: b, zone: z-b, kubeconfig: kube.yaml, context: b}
"""))
    made: dict[str, FakeSource] = {}
    specs: dict[str, SourceSpec] = {}

    def factory(name: str, spec: SourceSpec) -> FakeSource:
        made[name], specs[name] = FakeSource(name), spec
        return made[name]

    fl = Fleet.from_config(config, live_factory=factory)
    assert specs["hub"].context == "hub" and specs["b"].context == "b" and specs["a"].context is None
    return fl, made


async def test_burst_of_changes_makes_one_snapshot(live_fleet, wait_for) -> None:
    fl, src = live_fleet
    published = Published()
    fl.follow(published)  # the empty snapshot of a fleet not started yet, then each new one
    await fl.start()
    assert fl.ready and fl.snapshot.version == 1 and published.versions == [0, 1]
    for i in range(20):
        src["a"].set(f"ns-{i}")
        src["b"].set(f"other-{i}")
    await wait_for(lambda: len(published.snapshots) == 3)
    await wait_for(lambda: fl.rebuild_count >= 2)
    assert published.versions == [0, 1, 2]
    snap = fl.snapshot
    assert snap.member("a").objects.has_namespace("ns-19")
    assert snap.member("b").zone == "z-b" and snap.member("b").objects.has_namespace("other-19")
    await fl.stop()
    assert all(s.stopped for s in src.values())


async def test_a_lone_change_is_published_on_the_next_turn_and_a_burst_after_it_waits(
        live_fleet, wait_for, monkeypatch) -> None:
    """No batching interval on the path of a lone change; a burst right after it is
    coalesced into one later rebuild (at most one rebuild per COALESCE_DELAY)."""
    import asyncio

    import fleet.fleet as fleet_module
    monkeypatch.setattr(fleet_module, "COALESCE_DELAY", 0.2)
    fl, src = live_fleet
    published = Published()
    await fl.start()
    fl.follow(published)
    loop = asyncio.get_running_loop()
    quiet = loop.create_future()
    loop.call_later(0.25, quiet.set_result, None)  # longer than COALESCE_DELAY since start's rebuild
    await quiet
    src["a"].set("lone")
    for _ in range(3):
        await asyncio.sleep(0)  # loop turns, not time
    assert published.versions == [1, 2], "a lone change waits for no interval"
    for i in range(5):
        src["a"].set(f"burst-{i}")
        await asyncio.sleep(0)
    assert published.versions == [1, 2], "a burst right after a rebuild waits for the interval"
    await wait_for(lambda: len(published.snapshots) == 3)
    assert published.versions == [1, 2, 3] and fl.snapshot.member("a").objects.has_namespace("burst-4")
    await fl.stop()


async def test_rebuild_without_changes_is_skipped(live_fleet, wait_for) -> None:
    fl, src = live_fleet
    published = Published()
    await fl.start()
    fl.follow(published)
    src["a"].changed()  # nothing actually changed
    await wait_for(lambda: fl.rebuild_count == 2)
    assert published.versions == [1] and fl.snapshot.version == 1
    src["hub"].diagnostics = (Diagnostic("x.yaml", "Ingress/d/n", "bad"),)
    src["hub"].changed()
    await wait_for(lambda: len(published.snapshots) == 2)
    assert fl.diagnostics() == src["hub"].diagnostics and fl.snapshot.version == 2
    src["hub"].diagnostics = (Diagnostic("x.yaml", "Ingress/d/n", "bad"),)  # equal, not identical
    src["hub"].changed()
    await wait_for(lambda: fl.rebuild_count == 4)
    assert published.versions == [1, 2]
    await fl.stop()


async def test_missing_unreachable_and_unfollow(live_fleet, wait_for) -> None:
    fl, src = live_fleet
    src["b"].loaded = False
    src["a"].reachable = False
    calls: list[int] = []

    def broken(snapshot: FleetSnapshot) -> None:
        if snapshot.version:
            raise RuntimeError("follower bug")

    fl.follow(broken)
    unfollow = fl.follow(lambda s: calls.append(s.version))
    assert not fl.ready and fl.missing() == ["b"]  # not started: never ready
    await fl.start()
    assert not fl.ready and fl.missing() == ["b"] and fl.unreachable() == ["a"]
    assert calls == [0, 1]  # a failing follower does not stop the others
    unfollow()
    unfollow()
    src["b"].loaded = True
    src["b"].set("x")
    await wait_for(lambda: fl.snapshot.version == 2)
    assert fl.ready and calls == [0, 1]
    await fl.stop()


def test_kubeconfig_sources_need_the_live_provider(tmp_path: Path, write) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "kube.yaml").write_text("apiVersion: v1\nkind: Config\n")
    config = load_fleet_config(write(tmp_path / "fleet.yaml", """\
clusters:
  - {name: a, manifests: a}
  - {name: b, kubeconfig: kube.yaml}
"""))
    for call in (lambda: Fleet.from_config(config), lambda: load_fleet_once(config)):
        with pytest.raises(FleetConfigError) as info:
            call()
        assert str(info.value).startswith(f"{config.path}: clusters[1].kubeconfig: live sources need")


async def test_file_fleet_follows_changes_with_increasing_versions(two_clusters: Path, write, service,
                                                                   wait_for) -> None:
    config = load_fleet_config(two_clusters)
    fl = Fleet.from_config(config, poll_interval=0.05)
    published = Published()
    fl.follow(published)
    await fl.start()
    try:
        assert fl.ready and fl.missing() == [] and fl.unreachable() == []
        assert [s.name for s in fl.sources] == ["hub", "zone-a", "zone-b"]
        assert ("demo", "web") in fl.snapshot.hub.ingresses
        root = two_clusters.parent
        for i in range(10):
            write(root / "a" / f"s{i}.yaml", service(f"s{i}"))
            write(root / "b" / f"s{i}.yaml", service(f"s{i}"))
        await wait_for(lambda: len(fl.snapshot.member("zone-a").objects.services) == 11
                       and len(fl.snapshot.member("zone-b").objects.services) == 11)
        # 20 file writes: at most one snapshot per poll that saw some (bounded loosely so a
        # busy machine does not fail it); FakeSource tests pin coalescing exactly
        assert 3 <= len(published.snapshots) <= 12  # and version 0, before start
        assert published.versions == list(range(len(published.versions)))
        # touching a file (no content change) publishes nothing new
        version, scans = fl.snapshot.version, [s.scan_count for s in fl.sources]
        os.utime(root / "a" / "s0.yaml")
        await wait_for(lambda: all(s.scan_count >= n + 3 for s, n in zip(fl.sources, scans)))
        assert fl.snapshot.version == version
        # a broken file: the diagnostic shows, zone-a's objects stay
        objects_a = fl.snapshot.member("zone-a").objects
        write(root / "a" / "web.yaml", service("web", port=0))
        await wait_for(lambda: fl.snapshot.version == version + 1)
        assert fl.snapshot.member("zone-a").objects is objects_a
        assert [str(d) for d in fl.diagnostics()] == [
            f"{root / 'a' / 'web.yaml'}: Service/demo/web: spec.ports[0].port: 0 is out of range 1..65535"]
    finally:
        await fl.stop()


async def test_hub_shared_with_a_member(tmp_path: Path, write, service) -> None:
    write(tmp_path / "a" / "web.yaml", service("web"))
    write(tmp_path / "b" / "web.yaml", service("web"))
    config = load_fleet_config(write(tmp_path / "fleet.yaml", """\
hub: {cluster: b}
clusters:
  - {name: a, manifests: a}
  - {name: b, manifests: b}
"""))
    fl = Fleet.from_config(config)
    assert len(fl.sources) == 2
    await fl.start()
    try:
        assert fl.snapshot.hub is fl.snapshot.member("b").objects
        assert fl.missing() == []
    finally:
        await fl.stop()
    snap = load_fleet_once(config)
    assert snap.hub is snap.member("b").objects and len(snap.hub) == 1


def test_load_fleet_once_reports_files_and_objects(two_clusters: Path, write) -> None:
    root = two_clusters.parent
    write(root / "b" / "slice.yaml", """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: demo, labels: {kubernetes.io/service-name: web}}
endpoints: [{addresses: []}]
""")
    write(root / "hub" / "broken.yaml", "kind: [\n")
    snap = load_fleet_once(load_fleet_config(two_clusters))
    assert snap.version == 1 and snap.zone == "clusterset.local"
    assert [str(d) for d in snap.diagnostics] == [
        f"{root / 'hub' / 'broken.yaml'}: line 2: YAML syntax error: did not find expected node content",
        f"{root / 'b' / 'slice.yaml'}: EndpointSlice/demo/web-1: "
        "endpoints[0].addresses: at least one address is required",
    ]
    assert snap.member_names == ("zone-a", "zone-b")
    assert len(snap.hub.ingresses) == 1


def test_bundled_demo_fleet_loads_cleanly() -> None:
    config = load_fleet_config(DEMO)
    assert [(c.name, c.zone) for c in config.clusters] == [("zone-a", "az-1"), ("zone-b", "az-2")]
    snap = load_fleet_once(config)
    assert snap.diagnostics == ()
    hub = snap.hub
    (cls,) = hub.ingress_classes.values()
    assert cls.meta.name == "fleetgate" and cls.controller == "fleetgate.io/gateway" and cls.is_default
    echo, api = hub.ingresses[("demo", "echo")], hub.ingresses[("demo", "api")]
    assert echo.rules[0].host == "echo.demo.local"
    assert (echo.rules[0].paths[0].path, echo.rules[0].paths[0].backend.port_number) == ("/", 80)
    assert api.rules[0].paths[0].path == "/v1" and api.rules[0].paths[0].backend.port_name == "http"
    addresses = {m.name: {(e.addresses[0], s.ports[0].port)
                          for s in m.objects.slices_for("demo", "echo") for e in s.endpoints if e.is_ready}
                 for m in snap.members}
    assert addresses == {"zone-a": {("127.0.10.1", 18080), ("127.0.10.2", 18080)},
                         "zone-b": {("127.0.20.1", 18080)}}
    a = snap.member("zone-a").objects
    assert a.services[("demo", "db")].headless
    assert {e.hostname for s in a.slices_for("demo", "db") for e in s.endpoints} == {"db-0", "db-1"}
    assert set(a.service_exports) == {("demo", "echo"), ("demo", "db")}
    assert set(snap.member("zone-b").objects.service_exports) == {("demo", "echo")}
    for m in snap.members:
        (api_slice,) = m.objects.slices_for("demo", "api")
        assert api_slice.ports[0].port == 18081 and api_slice.ports[0].name == "http"


async def test_bundled_demo_fleet_starts(wait_for) -> None:
    fl = Fleet.from_config(load_fleet_config(DEMO))
    await fl.start()
    try:
        assert fl.ready and fl.snapshot.version == 1 and fl.diagnostics() == ()
    finally:
        await fl.stop()
