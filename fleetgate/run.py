"""Start the components over one fleet, and stop them in reverse.

The one place that wires components together: one Fleet, one DerivedPublisher (each
snapshot derived once for the controller and the DNS responder), the gateway, the admin
listener. Everything started here is pushed on one exit stack, so whatever started is
stopped by its owner, in reverse order, however the run ends.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from controller.filemode import serve_debug_imports
from controller.publisher import DerivedPublisher
from controller.writer import start_live_controller
from fleet.addresses import Address, parse_hostport, show_address
from fleet.admin import AdminServer
from fleet.config import FleetConfigError, SourceSpec, load_fleet_config
from fleet.fleet import Fleet
from fleet.view import LiveCluster

from .controller_metrics import ControllerSyncMetrics
from .process import StartupError, frozen_after_rebuild, run_until_signal
from .workers import MetricsPeer, WorkerMetrics, socket_path

if TYPE_CHECKING:
    from dnsplugin.service import DnsService

log = logging.getLogger("fleetgate")

__all__ = ["StartupError", "run_components", "run_workers", "live_factory", "start_fleet"]


def live_factory() -> Callable[[str, SourceSpec], LiveCluster]:
    """A factory that imports the live provider (and kubernetes_asyncio, ~30 MB) only when
    the fleet has a kubeconfig source."""
    def make(name: str, spec: SourceSpec) -> LiveCluster:
        try:
            from fleet.live import LiveSource
        except ImportError as exc:
            raise FleetConfigError(f"{name}: live (kubeconfig) sources are unavailable: {exc}") from None
        return LiveSource.factory(name, spec)
    return make


async def start_fleet(path: str) -> Fleet:
    try:
        config = load_fleet_config(path)
        fleet = Fleet.from_config(config, live_factory=live_factory())
    except FleetConfigError as exc:
        raise StartupError(str(exc)) from None
    await fleet.start()
    for d in fleet.diagnostics():
        log.error("fleet: %s", d)
    return fleet


async def _bind(what: str, address: str, start: Callable[[], Awaitable[Any]], *,
                refused: tuple[type[Exception], ...] = (), listener_error: type[OSError] | None = None) -> Any:
    """start(); an OSError becomes the one-line start-up error naming the listener that
    failed (a `listener_error` says which, when one call opens several), and so does any of
    `refused` (the gateway's access log file, opened at start)."""
    try:
        return await start()
    except refused as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        if listener_error is not None and isinstance(exc, listener_error):
            what, address = exc.listener, show_address(exc.address)  # type: ignore[attr-defined]
        # asyncio words some bind errors as "error while attempting to bind on address ...":
        # the errno's own text is the part worth a line
        reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        raise StartupError(f"cannot listen for {what} on {address}: {reason}") from None


def address_arg(value: str) -> Address:
    """argparse type for HOST:PORT flags (an empty host listens on every address)."""
    try:
        return parse_hostport(value, default_host="0.0.0.0")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT") from None


async def run_components(args: argparse.Namespace, stop: asyncio.Event, *, gateway: bool, dns: bool,
                         controller: bool, worker: int = 0, reuse_port: bool = False,
                         workers: int = 1, workers_dir: str | None = None,
                         on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Start fleet → publisher → controller → DNS → gateway → admin listener; wait for
    `stop`; stop them in reverse (the admin listener first, then the gateway's drain).

    Under --workers (`workers_dir` set), worker 0's /metrics sums every worker's families
    and the others hand theirs over a Unix socket in `workers_dir` (fleetgate.workers)."""
    if worker == 0 and not reuse_port:
        _preflight(args, gateway=gateway, dns=dns)
    bound: dict[str, Any] = {}
    started_at = time.monotonic()  # --member-sync-timeout counts from here
    async with contextlib.AsyncExitStack() as stack:
        fleet = await start_fleet(args.fleet)
        stack.push_async_callback(fleet.stop)
        # every worker collects its components' metrics through an AdminServer; only worker 0
        # listens on --admin, the others hand their families to it (fleetgate.workers)
        admin = AdminServer(fleet, member_sync_timeout=float(getattr(args, "member_sync_timeout", 10.0)),
                            debug_addresses=getattr(args, "debug_address", None) or (),
                            started_at=started_at)
        # closed after everything else: /readyz keeps answering 503 while the gateway drains
        stack.push_async_callback(admin.close)
        if workers_dir is not None:
            await _share_metrics(admin, stack, worker=worker, workers=workers, directory=workers_dir)
        if controller or dns:
            publisher = DerivedPublisher(fleet, guard=frozen_after_rebuild).start()
            stack.push_async_callback(publisher.close)
            serve_debug_imports(publisher, admin)
        if controller:
            leader_elect = bool(getattr(args, "leader_elect", False))
            live = start_live_controller(fleet, publisher, leader_elect=leader_elect,
                                         max_concurrent=int(getattr(args, "max_concurrent_writes", 16)),
                                         qps=float(getattr(args, "kube_api_qps", 0.0)),
                                         burst=int(getattr(args, "kube_api_burst", 0)))
            if live is not None:
                stack.push_async_callback(live.close)
            sync = ControllerSyncMetrics(live.writer if live is not None else None).start()
            stack.push_async_callback(sync.close)
            admin.add_collector(sync)
            if live is None and leader_elect:
                log.warning("--leader-elect: no member cluster is live, so the controller writes nothing "
                            "and there is nothing to elect a leader for; ignored")
        if dns:
            from dnsplugin.service import serve as serve_dns  # each component imported only when it runs
            try:
                svc = await _bind("dns", args.dns_listen, lambda: serve_dns(
                    publisher, listen=args.dns_listen, cluster=args.cluster, upstream=args.upstream, ttl=args.ttl,
                    zone_name=fleet.config.zone, reuse_port=reuse_port))
            except ValueError as exc:
                raise StartupError(str(exc)) from None
            stack.push_async_callback(svc.close)
            bound["dns"] = svc.udp_address
            admin.add_json("/debug/zone", lambda request: _zone_or_404(svc, request.query.get("cluster")),
                           "?cluster=NAME: the DNS records served for that member cluster (JSON)")
        if gateway:
            from gateway import cli as gateway_cli
            from gateway.status import start_status_writer
            options = gateway_cli.options_from(args, address_arg(args.http), reuse_port=reuse_port,
                                               https=address_arg(args.https))
            gw = await _bind("http", args.http, lambda: gateway_cli.start_gateway(fleet, options, admin),
                             refused=(gateway_cli.AccessLogError,), listener_error=gateway_cli.ListenerError)
            stack.push_async_callback(gw.drain)
            bound["http"] = gw.servers[0].sockets[0].getsockname()[:2]
            if gw.https_address is not None:
                bound["https"] = gw.https_address
            if options.publish_address:
                status = start_status_writer(fleet, address=options.publish_address,
                                             classes=options.ingress_classes)
                if status is not None:
                    stack.push_async_callback(status.close)
        if worker == 0:
            bound["admin"] = await _bind("admin", show_address(args.admin), lambda: admin.start(*args.admin))
        log.info("fleetgate %s ready: %s", args.command, ", ".join(f"{k} {v[0]}:{v[1]}" for k, v in bound.items()))
        if on_ready is not None:
            on_ready(bound)
        await stop.wait()
        await _drain_delay(args, admin, listening=gateway or dns)
        log.info("shutting down: draining for up to %.1fs", args.drain_timeout)


async def _share_metrics(admin: AdminServer, stack: contextlib.AsyncExitStack, *, worker: int, workers: int,
                         directory: str) -> None:
    """Worker 0 merges the others' families into its /metrics (and lists them at
    /debug/workers); worker i > 0 serves its families on its socket until it stops."""
    if worker == 0:
        merged = WorkerMetrics(directory, workers)
        admin.aggregate = merged.aggregate
        admin.add_json("/debug/workers", lambda request: merged.debug(admin.exposition(), request.query.get("metric")),
                       "?metric=NAME: each worker's pid, whether it answered, and its own sum of NAME (JSON)")
        return
    peer = await MetricsPeer(socket_path(directory, worker), worker, admin.exposition).start()
    stack.push_async_callback(peer.close)


async def _drain_delay(args: argparse.Namespace, admin: AdminServer, *, listening: bool) -> None:
    """SIGTERM's first phase: /readyz answers 503 at once, listeners keep accepting and
    serving for --drain-delay (endpoint controllers and cloud load balancers need that
    long to stop sending here); then the exit stack stops accepting and drains."""
    admin.draining = True
    delay = float(getattr(args, "drain_delay", 0.0))
    if listening and delay > 0:
        log.info("SIGTERM: not ready; still serving for %.1fs (--drain-delay)", delay)
        await asyncio.sleep(delay)


def _zone_or_404(svc: DnsService, cluster: str | None) -> Any:
    body = svc.debug_zone(cluster)
    if body is None:
        raise LookupError(f"no member cluster {cluster!r}")
    return body


def _preflight(args: argparse.Namespace, *, gateway: bool, dns: bool) -> None:
    """Try each fixed listener address before loading anything, so a port in use (say, a
    second demo) stops the command at once with one line, not after a page of start-up
    logs. The real binds below still report, should a port be taken in between."""
    checks: list[tuple[str, str, tuple[int, ...]]] = []
    if gateway:
        checks.append(("http", args.http, (socket.SOCK_STREAM,)))
    if dns:
        checks.append(("dns", args.dns_listen, (socket.SOCK_DGRAM, socket.SOCK_STREAM)))
    checks.append(("admin", show_address(args.admin), (socket.SOCK_STREAM,)))
    for what, address, kinds in checks:
        try:
            host, port = address_arg(address)
        except argparse.ArgumentTypeError:
            continue  # the component's own parsing reports it
        if port == 0:
            continue
        for kind in kinds:
            _try_bind(what, address, host, port, kind, reuse_port=False)


def _try_bind(what: str, address: str, host: str, port: int, kind: int, *, reuse_port: bool) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen for {what} on {address}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind(sockaddr)
        except OSError as exc:
            raise StartupError(f"cannot listen for {what} on {address}: {os.strerror(exc.errno) if exc.errno else exc}"
                               ) from None


def run_workers(args: argparse.Namespace) -> int:
    """--workers N: N forked processes, each a full gateway (or, for `fleetgate dns`, a full
    DNS responder) on SO_REUSEPORT sockets; worker 0 also serves the admin API, whose
    /metrics sums all the workers' (the others hand theirs over Unix sockets in a private
    directory made here, removed when they have all exited)."""
    dns = args.command == "dns"
    what, address = ("dns", args.dns_listen) if dns else ("http", args.http)
    try:
        host, port = address_arg(address)
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM) if dns else (socket.SOCK_STREAM,):
            _try_bind(what, address, host, port, kind, reuse_port=True)
    except (StartupError, argparse.ArgumentTypeError) as exc:
        print(f"fleetgate: {exc}", file=sys.stderr)
        return 2
    children: list[int] = []
    directory = tempfile.mkdtemp(prefix="fleetgate-workers-")  # mode 0700: this user's workers only
    for index in range(args.workers):
        pid = os.fork()
        if pid == 0:
            def worker(stop: asyncio.Event, i: int = index) -> Awaitable[None]:
                return run_components(args, stop, gateway=not dns, dns=dns, controller=False, worker=i,
                                      reuse_port=True, workers=args.workers, workers_dir=directory)
            os._exit(run_until_signal(worker))
        children.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    try:
        for child in children:
            _, status = os.waitpid(child, 0)
            worst = max(worst, os.waitstatus_to_exitcode(status))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return worst
