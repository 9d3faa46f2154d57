"""The keyed live writer over real API servers: writes in parallel per member but in order
per service, a held member never holds up the others, and a restart or a leader change
converges with zero deletes and zero recreates."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from controller.leader import LeaderOptions
from controller.publisher import DerivedPublisher
from controller.reconcile import STATUS, UPDATE, Write
from controller.writer import LiveController, LiveWriter, start_live_controller
from fleet.config import load_fleet_config
from fleet.fleet import Fleet
from fleet.live import LiveSource
from kubefake import KubeAPIServer
from tests.controller.mcs_support import endpoint, endpoint_slice, export, namespace, service
from tests.live_support import LiveFleet, eventually, write_fleet

Start = Callable[..., Awaitable[KubeAPIServer]]
SERVICES = 20
FAST_LEASE = LeaderOptions(lease_duration=1, renew_deadline=0.6, retry_period=0.1)


@pytest.fixture
async def controllers() -> AsyncIterator[Callable[..., Awaitable[LiveController]]]:
    running: list[tuple[Fleet, DerivedPublisher, LiveController]] = []

    async def start(live: LiveFleet, **options: Any) -> LiveController:
        fleet = Fleet.from_config(load_fleet_config(live.fleet_yaml), live_factory=LiveSource.factory)
        await fleet.start()
        publisher = DerivedPublisher(fleet).start()
        ctl = start_live_controller(fleet, publisher, **options)
        assert ctl is not None
        running.append((fleet, publisher, ctl))
        return ctl

    yield start
    for fleet, publisher, ctl in running:
        await ctl.close(release=False)
        await publisher.close()
        await fleet.stop()


def exports(server: KubeAPIServer, n: int = SERVICES) -> None:
    for i in range(n):
        server.create(service(f"s{i}"))
        server.create(endpoint_slice(f"s{i}", [endpoint(f"10.1.0.{i + 1}")], name=f"s{i}-1"))
        server.create(export(f"s{i}"))


def converged(ctl: LiveController, members: tuple[str, ...] = ("zone-a", "zone-b")) -> bool:
    writer = ctl.writer
    return writer.derived is not None and all(writer.workers[m].source.loaded for m in members) and \
        writer.idle and not any(writer.plan(m) for m in members)


def key_writes(server: KubeAPIServer) -> list[tuple[str, str, str]]:
    """(method, plural, name) of the writes to our objects of one service each (not the
    ClusterProperty or the Lease), as the server received them."""
    out = []
    for r in server.writes():
        parts = r.path.rstrip("/").split("/")
        plural = parts[-2] if parts[-1] == "status" else (parts[-1] if r.method == "POST" else parts[-2])
        if plural in ("serviceimports", "services", "endpointslices", "serviceexports"):
            out.append((r.method, plural, "" if r.method == "POST" else parts[-1]))
    return out


def service_of(plural: str, name: str) -> str:
    """The exported name a derived object of ours belongs to (s3, amcs-s3, amcs-s3-zone-a-ipv4)."""
    return name[5:].split("-")[0] if name.startswith("amcs-") else name


async def two_members(api_servers: Start, tmp_path: Path, hub: KubeAPIServer | None = None, *,
                      exported: bool = True) -> tuple[KubeAPIServer, KubeAPIServer, LiveFleet]:
    a, b = await api_servers(), await api_servers()
    for server in (a, b):
        server.create(namespace("demo"))
    if exported:
        exports(a)
    return a, b, write_fleet(tmp_path / "fleet", hub=hub if hub is not None else "zone-a",
                             members={"zone-a": a, "zone-b": b})


async def test_writes_run_in_parallel_up_to_the_limit_in_order_per_service_and_a_held_member_holds_up_nobody(
        api_servers: Start, controllers: Any, tmp_path: Path) -> None:
    a, b, live = await two_members(api_servers, tmp_path, exported=False)
    ctl = await controllers(live, max_concurrent=4)
    await eventually(lambda: converged(ctl), what="an empty fleet converged")
    b.delay(30)  # zone-b answers no new request until released (its watches are open already)
    exports(a)
    await eventually(lambda: len(b.writes()) >= 4, what="four writes held in zone-b")
    await eventually(lambda: len([n for n in (o["metadata"]["name"] for o in a.objects("EndpointSlice", "demo"))
                                  if n.startswith("amcs-")]) == SERVICES, timeout=10,
                     what="zone-a written in full while zone-b is held")
    held = key_writes(b)
    assert held == [("POST", "serviceimports", "")] * 4, "no more writes in flight than --max-concurrent-writes"
    b.delay(0)
    await eventually(lambda: converged(ctl), timeout=15, what="converged")

    for server in (a, b):  # per service: its import, then its Service, then its slice
        order: dict[str, list[str]] = {}
        for event, plural, _, name, _ in server.changes():
            if plural in ("serviceimports", "services", "endpointslices") and (
                    plural == "serviceimports" or name.startswith("amcs-")):
                order.setdefault(service_of(plural, name), []).append(f"{event} {plural}")
        assert len(order) == SERVICES
        for svc, seq in order.items():
            assert seq[0] == "ADDED serviceimports", (svc, seq)
            assert seq.index("ADDED services") < seq.index("ADDED endpointslices"), (svc, seq)

    # an unexport deletes in order: slices, then the Service, then the import
    mark = b.resource_version
    for i in range(SERVICES):
        a.delete("ServiceExport", f"s{i}", "demo")
    await eventually(lambda: not b.objects("ServiceImport", "demo"), timeout=10, what="unexported")
    order = {}
    for event, plural, _, name, _ in b.changes(mark):
        order.setdefault(service_of(plural, name), []).append(f"{event} {plural}")
    assert len(order) == SERVICES
    assert all(seq == ["DELETED endpointslices", "DELETED services", "DELETED serviceimports"]
               for seq in order.values()), order


async def test_a_restart_and_a_leader_change_converge_with_no_delete_and_no_recreate(
        api_servers: Start, controllers: Any, tmp_path: Path) -> None:
    hub = await api_servers()
    a, b, live = await two_members(api_servers, tmp_path, hub=hub)
    first = await controllers(live, leader_elect=True, leader_options=FAST_LEASE)
    await eventually(lambda: first.elector is not None and first.elector.is_leader, what="the first leads")
    await eventually(lambda: converged(first), timeout=15, what="converged")
    uids = {(i, kind, o["metadata"]["name"]): o["metadata"]["uid"] for i, s in enumerate((a, b))
            for kind in ("ServiceImport", "Service", "EndpointSlice") for o in s.objects(kind, "demo")}
    marks = [a.resource_version, b.resource_version]

    # a restart: a new controller, the same fleet
    await first.close(release=True)
    second = await controllers(live, leader_elect=True, leader_options=FAST_LEASE)
    await eventually(lambda: second.elector is not None and second.elector.is_leader, what="the restart leads")
    await eventually(lambda: converged(second), timeout=15, what="the restart converged")
    # a leader change: a standby takes over from a holder that stops without releasing
    third = await controllers(live, leader_elect=True, leader_options=FAST_LEASE)
    await second.close(release=False)
    await eventually(lambda: third.elector is not None and third.elector.is_leader, timeout=5,
                     what="the standby leads")
    await eventually(lambda: converged(third), timeout=15, what="the new leader converged")
    await asyncio.sleep(0)
    for server, mark in zip((a, b), marks):
        assert server.changes(mark) == [], "no write at all after a restart or a leader change"
    assert uids == {(i, kind, o["metadata"]["name"]): o["metadata"]["uid"] for i, s in enumerate((a, b))
                    for kind in ("ServiceImport", "Service", "EndpointSlice") for o in s.objects(kind, "demo")}



class _MarksAsTheLastWriterLeaves:
    """A Leader (always leading) that, once armed, marks a key dirty from inside a writer's
    last loop check, when its queue is empty and everything is derived (nothing else would
    mark a key later): the mark runs after that writer's task has finished but before the
    task's done callbacks, the moment a key could find no writer."""

    def __init__(self) -> None:
        self.worker: Any = None
        self.key: tuple[str, str] | None = None
        self.fired = False

    @property
    def is_leader(self) -> bool:
        w, key = self.worker, self.key
        if (w is not None and key is not None and asyncio.current_task() in w._tasks
                and w.current and not (w._urgent or w._pending or w._busy)):
            self.key = None

            def mark() -> None:
                self.fired = True
                w.mark([key])
            asyncio.get_running_loop().call_soon(mark)
        return True


async def test_a_key_marked_as_the_last_writer_leaves_is_still_planned(api_servers: Start, tmp_path: Path) -> None:
    a, b, live = await two_members(api_servers, tmp_path, exported=False)
    fleet = Fleet.from_config(load_fleet_config(live.fleet_yaml), live_factory=LiveSource.factory)
    await fleet.start()
    publisher = DerivedPublisher(fleet).start()
    leader = _MarksAsTheLastWriterLeaves()
    writer = LiveWriter(publisher, fleet.live_members(), leader=leader, max_concurrent=1)
    writer.start()
    try:
        await eventually(lambda: writer.derived is not None and writer.idle, what="an empty fleet converged")
        leader.worker, leader.key = writer.workers["zone-b"], ("demo", "late")
        exports(a, 1)  # zone-b's writer imports s0, then finds its queue empty and leaves
        await eventually(lambda: leader.fired, what="the late mark made")
        await eventually(lambda: writer.idle, what="the late key planned (a writer started for it)")
        assert b.get("ServiceImport", "s0", "demo") is not None
    finally:
        await writer.close()
        await publisher.close()
        await fleet.stop()


async def test_a_cold_start_sends_every_write_it_plans(api_servers: Start, controllers: Any, tmp_path: Path) -> None:
    """A key's next pass waits for the derivation that has seen its last answers instead of
    planning (rendering every slice) from an older one and throwing that plan away: with
    no one else writing, every planned write is sent, one pass per step of a service."""
    a, b, live = await two_members(api_servers, tmp_path)  # exported before the controller starts
    ctl = await controllers(live)
    await eventually(lambda: converged(ctl) and ctl.writer.writes > 0, timeout=15, what="converged")
    workers = ctl.writer.workers.values()
    assert ctl.writer.writes >= 5 * SERVICES  # per service and member: import, its status, Service, slice...
    assert sum(w.planned for w in workers) == ctl.writer.writes


async def test_writes_go_on_after_the_api_server_drops_every_kept_alive_connection(
        api_servers: Start, controllers: Any, tmp_path: Path) -> None:
    """zone-b's API server restarts (every connection dropped, fleet/kubewrite.py's idle
    ones included): the next service exported is still written there, on new connections."""
    a, b, live = await two_members(api_servers, tmp_path)
    ctl = await controllers(live)
    await eventually(lambda: converged(ctl) and ctl.writer.writes > 0, timeout=15, what="converged")
    pool = ctl.writer.workers["zone-b"].source.client._pool
    assert pool is not None
    made = pool.connections_made
    await b.restart()
    a.create(service("late"))
    a.create(endpoint_slice("late", [endpoint("10.9.0.1")], name="late-1"))
    a.create(export("late"))
    await eventually(lambda: any(o["metadata"]["name"] == "amcs-late-zone-a-ipv4"
                                 for o in b.objects("EndpointSlice", "demo")), timeout=15,
                     what="the late service's slice written to zone-b after its restart")
    await eventually(lambda: converged(ctl), timeout=15, what="converged again")
    assert pool.connections_made > made


async def test_a_pass_sends_its_objects_writes_at_once_and_a_service_before_its_slices(
        api_servers: Start, controllers: Any, tmp_path: Path) -> None:
    """Once a name's ServiceImport exists, the writes of its other objects depend on
    nothing but it: one pass sends them together (one round trip, not one per object),
    the `amcs-` Service's still before its slices."""
    a, b, live = await two_members(api_servers, tmp_path)
    ctl = await controllers(live)
    await eventually(lambda: converged(ctl), timeout=15, what="converged")
    si = b.get("ServiceImport", "s0", "demo")
    slice_name = next(o["metadata"]["name"] for o in b.objects("EndpointSlice", "demo")
                      if o["metadata"]["name"].startswith("amcs-s0-"))
    label = {"metadata": {"labels": {"example.com/touched": "yes"}}}  # not ours: nothing to undo
    todo = [Write(STATUS, "ServiceImport", "demo", "s0", {"status": si["status"]}),
            Write(UPDATE, "Service", "demo", "amcs-s0", label),
            Write(UPDATE, "EndpointSlice", "demo", slice_name, label)]
    before = len(b.writes())
    b.delay(30)  # zone-b answers no new request until released
    sent = asyncio.get_running_loop().create_task(ctl.writer.workers["zone-b"]._send(todo))
    try:
        await eventually(lambda: len(b.writes()) - before >= 2, what="two writes of one pass in flight at once")
        assert sorted(w.path.split("/namespaces/demo/")[1] for w in b.writes()[before:]) == [
            "serviceimports/s0/status", "services/amcs-s0"]
    finally:
        b.delay(0)
    assert await asyncio.wait_for(sent, 10) is None
    assert b.writes()[-1].path.endswith(f"/endpointslices/{slice_name}"), "the slice after its Service"
    assert b.get("EndpointSlice", slice_name, "demo")["metadata"]["labels"]["example.com/touched"] == "yes"


async def test_writes_in_flight_to_a_member_stay_within_max_concurrent(
        api_servers: Start, controllers: Any, tmp_path: Path) -> None:
    """A pass may send several objects' writes at once, but never more than
    --max-concurrent-writes to one member (issue 18: writes in flight, not names)."""
    a, b, live = await two_members(api_servers, tmp_path)
    ctl = await controllers(live, max_concurrent=1)
    await eventually(lambda: converged(ctl), timeout=15, what="converged")
    si = b.get("ServiceImport", "s0", "demo")
    label = {"metadata": {"labels": {"example.com/touched": "yes"}}}
    todo = [Write(STATUS, "ServiceImport", "demo", "s0", {"status": si["status"]}),
            Write(UPDATE, "Service", "demo", "amcs-s0", label)]
    before = len(b.writes())
    b.delay(30)
    sent = asyncio.get_running_loop().create_task(ctl.writer.workers["zone-b"]._send(todo))
    try:
        await eventually(lambda: len(b.writes()) - before >= 1, what="the first write in flight")
        await asyncio.sleep(0.3)  # the window in which a second write would have been sent
        assert len(b.writes()) - before == 1, "a second write went out while one was in flight"
    finally:
        b.delay(0)
    assert await asyncio.wait_for(sent, 10) is None
    assert len(b.writes()) - before == 2
