"""The `fleetgate` command: one console script, one subcommand per way of running.

Each component (gateway, dns, controller) brings its own flags and a start function; this
module loads the fleet, starts what the subcommand asks for on one event loop, and turns
SIGTERM/SIGINT into a graceful drain.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from .config import FleetConfigError, load_fleet_config

log = logging.getLogger("fleetgate")

DEFAULT_FLEET = Path(__file__).parent / "examples" / "demo" / "fleet.yaml"
DEFAULT_DEMO_DIR = "fleetgate-demo"  # `fleetgate demo`'s working folder, relative to the cwd

EXIT_CODES = """exit codes:
  0  ok (validate: no errors; a server: stopped by SIGTERM/SIGINT after draining)
  1  validate found errors, a bad fleet.yaml included (with --strict, warnings too)
  2  usage error or start-up failure (a bad flag; a server's bad fleet.yaml; a
     listener that cannot bind: one line naming it)"""


class StartupError(Exception):
    """A problem that stops a command at start: printed as one line, exit 2."""


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def version_text() -> str:
    """`fleetgate --version`: the distribution's version, then which implementation each
    hot-path codec runs (gateway.build_info)."""
    from importlib.metadata import PackageNotFoundError, version

    from gateway import build_info
    try:
        number = version("fleetgate")
    except PackageNotFoundError:  # running from a tree that was never installed
        number = "unknown (not installed)"
    return "\n".join([f"fleetgate {number}"] + [f"  {k}: {v}" for k, v in build_info().items()])


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and the codec implementations in use, then exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit(0)


def _common(parser: argparse.ArgumentParser, *, fleet_default: str | None = str(DEFAULT_FLEET),
            fleet_help: str = "the bundled example fleet") -> None:
    parser.add_argument("--fleet", default=fleet_default, metavar="PATH",
                        help=f"a fleet.yaml or the folder holding one (default: {fleet_help}"
                             + (", %(default)s)" if fleet_default else ")"))
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="least severe log messages shown (default %(default)s)")


def _drain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drain-timeout", type=float, default=10.0,
                        help="seconds to let in-flight requests finish on SIGTERM (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    from gateway import cli as gateway_cli

    parser = argparse.ArgumentParser(prog="fleetgate", description="Multi-cluster traffic layer for Kubernetes fleets",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("gateway", help="run the multi-cluster ingress gateway")
    _common(p)
    _drain(p)
    gateway_cli.add_arguments(p)
    _admin(p, "127.0.0.1:9901")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the http port via SO_REUSEPORT (default %(default)s)")

    p = sub.add_parser("controller", help="run the Multi-Cluster Services controller")
    _common(p)
    _drain(p)
    _admin(p, "127.0.0.1:9902")
    _leader_elect(p)

    p = sub.add_parser("dns", help="run the clusterset.local DNS responder for one cluster")
    _common(p)
    _drain(p)
    _dns_arguments(p, listen_flag="--listen")
    _admin(p, "127.0.0.1:9903")

    for name, text in (("up", "run gateway + controller + DNS in one process"),
                       ("demo", "copy the demo fleet into a working folder, start echo backends for its "
                                "pods, then `up` on that folder (edit it: the gateway follows)")):
        p = sub.add_parser(name, help=text, description=text)
        if name == "demo":
            _common(p, fleet_default=None, fleet_help="the working folder's fleet.yaml, see --dir")
            p.add_argument("--dir", default=DEFAULT_DEMO_DIR, metavar="PATH",
                           help="the demo's working folder: created as a copy of the bundled demo fleet "
                                "if missing, used as it is if present, never overwritten; "
                                "not used with --fleet (default ./%(default)s)")
        else:
            _common(p)
        _drain(p)
        gateway_cli.add_arguments(p)
        _dns_arguments(p, listen_flag="--dns")
        _admin(p, "127.0.0.1:9901")
        if name == "up":
            _leader_elect(p)
        if name == "demo":
            p.add_argument("--live", action="store_true",
                           help="serve each cluster from a test API server (kubectl-able) loaded from the "
                                "fleet at start (default: off, files are followed)")

    p = sub.add_parser("validate", help="load the fleet and print every problem; exit 1 on errors",
                       description="Load the fleet once and print every problem as "
                                   "`path: kind/namespace/name: message`, then `N errors, M warnings`.",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--ingress-class", action="append", metavar="NAME",
                   help="IngressClass names whose Ingresses are checked (repeatable or comma-separated; "
                        "default fleetgate)")
    p.add_argument("--wait", type=float, default=15.0, metavar="SECONDS",
                   help="how long to wait for live (kubeconfig) clusters to list (default %(default)s)")
    p.add_argument("--strict", action="store_true",
                   help="count warnings as errors, so any warning fails with exit 1 (default: off, "
                        "only errors fail)")
    return parser


def _admin(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--admin", default=default, type=parse_address, metavar="HOST:PORT",
                   help="admin listener: /healthz, /readyz, /metrics, /debug/* (default %(default)s)")


def _leader_elect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--leader-elect", action="store_true",
                   help="hold a Lease on the hub so one replica writes (live fleets; default: off)")


def _dns_arguments(p: argparse.ArgumentParser, *, listen_flag: str) -> None:
    p.add_argument(listen_flag, dest="dns_listen", default="127.0.0.1:1053", metavar="HOST:PORT",
                   help="DNS listener, UDP and TCP (default %(default)s)")
    p.add_argument("--cluster", default=None, metavar="NAME",
                   help="member cluster whose view the DNS serves (default: the first)")
    p.add_argument("--upstream", default=None, metavar="HOST:PORT",
                   help="forward names outside the zone here (default: REFUSED)")
    p.add_argument("--ttl", type=int, default=5, help="DNS TTL seconds (default %(default)s)")


# --- running -----------------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run main(stop_event) on a fresh uvloop; SIGTERM/SIGINT set the event."""
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(main(stop))
        return 0
    except StartupError as exc:
        print(f"fleetgate: {exc}", file=sys.stderr)
        return 2
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _start_fleet(path: str) -> Any:
    from .fleet import Fleet
    try:
        config = load_fleet_config(path)
        fleet = Fleet.from_config(config, live_factory=_live_factory())
    except FleetConfigError as exc:
        raise StartupError(str(exc)) from None
    await fleet.start()
    for d in fleet.diagnostics():
        log.error("fleet: %s", d)
    return fleet


def _live_factory() -> Any:
    """A factory that imports the live provider (and kubernetes_asyncio, ~30 MB) only when
    the fleet has a kubeconfig source."""
    def make(name: str, spec: Any) -> Any:
        try:
            from .live import LiveSource  # type: ignore[attr-defined]
        except ImportError as exc:
            raise FleetConfigError(f"{name}: live (kubeconfig) sources are unavailable: {exc}") from None
        return LiveSource.factory(name, spec)
    return make


async def _bind(what: str, address: str, start: Callable[[], Awaitable[Any]]) -> Any:
    """start(); an OSError becomes the one-line start-up error naming the listener that
    failed (a ListenerError says which, when one call opens several)."""
    try:
        return await start()
    except OSError as exc:
        listener = getattr(exc, "listener", None)
        if listener is not None:
            what, address = listener, _show_address(exc.address)  # type: ignore[attr-defined]
        # asyncio words some bind errors as "error while attempting to bind on address ...":
        # the errno's own text is the part worth a line
        reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        raise StartupError(f"cannot listen for {what} on {address}: {reason}") from None


def _show_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def run_components(args: argparse.Namespace, stop: asyncio.Event, *, gateway: bool, dns: bool,
                         controller: bool, worker: int = 0, reuse_port: bool = False,
                         on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    from .admin import AdminServer

    if worker == 0 and not reuse_port:
        _preflight(args, gateway=gateway, dns=dns)
    fleet = await _start_fleet(args.fleet)
    admin = AdminServer(fleet) if worker == 0 else None
    closers: list[Callable[[], Awaitable[None]]] = []
    drainers: list[Callable[[], Awaitable[None]]] = []
    bound: dict[str, Any] = {}
    try:
        if gateway:
            from gateway import cli as gateway_cli
            http = parse_address(args.http)
            options = gateway_cli.options_from(args, http, reuse_port=reuse_port, https=parse_address(args.https))
            gw = await _bind("http", args.http, lambda: gateway_cli.start_gateway(fleet, options, admin))
            bound["http"] = gw.servers[0].sockets[0].getsockname()[:2]
            if gw.https_address is not None:
                bound["https"] = gw.https_address
            drainers.append(gw.drain)
        if controller or dns:
            from controller import cli as controller_cli
            ctl = controller_cli.start_file_controller(fleet, admin)
            closers.append(ctl.close)
        if controller:
            from controller.writer import start_live_controller
            live = start_live_controller(fleet, leader_elect=getattr(args, "leader_elect", False))
            if live is not None:
                closers.append(live.close)
            elif getattr(args, "leader_elect", False):
                log.warning("--leader-elect: no member cluster is live, so the controller writes nothing "
                            "and there is nothing to elect a leader for; ignored")
        if dns:
            from dnsplugin import cli as dns_cli
            try:
                svc = await _bind("dns", args.dns_listen, lambda: dns_cli.serve(
                    fleet, listen=args.dns_listen, cluster=args.cluster, upstream=args.upstream, ttl=args.ttl,
                    zone_name=fleet.config.zone))
            except ValueError as exc:
                raise StartupError(str(exc)) from None
            bound["dns"] = svc.udp_address
            closers.append(svc.close)
            if admin is not None:
                admin.add_json("/debug/zone", lambda request: _zone_or_404(svc, request.query.get("cluster")))
        if admin is not None:
            bound["admin"] = await _bind("admin", _show_address(args.admin), lambda: admin.start(*args.admin))
            closers.append(admin.close)
        log.info("fleetgate %s ready: %s", args.command, ", ".join(f"{k} {v[0]}:{v[1]}" for k, v in bound.items()))
        if on_ready is not None:
            on_ready(bound)
        await stop.wait()
        log.info("shutting down: draining for up to %.1fs", args.drain_timeout)
    finally:
        for drain in drainers:
            await drain()
        for close in reversed(closers):
            await close()
        await fleet.stop()


def _zone_or_404(svc: Any, cluster: str | None) -> Any:
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
    checks.append(("admin", _show_address(args.admin), (socket.SOCK_STREAM,)))
    for what, address, kinds in checks:
        try:
            host, port = parse_address(address)
        except argparse.ArgumentTypeError:
            continue  # the component's own parsing reports it
        if port == 0:
            continue
        for kind in kinds:
            _try_bind(what, address, host, port, kind)


def _try_bind(what: str, address: str, host: str, port: int, kind: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen for {what} on {address}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError as exc:
            raise StartupError(f"cannot listen for {what} on {address}: {os.strerror(exc.errno) if exc.errno else exc}"
                               ) from None


def _check_bind(address: str) -> None:
    host, port = parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise StartupError(f"cannot listen for http on {address}: {exc.strerror or exc}") from None


def _run_workers(args: argparse.Namespace) -> int:
    """--workers N: N forked processes, each a full gateway on a SO_REUSEPORT socket;
    worker 0 also serves the admin API (its metrics cover its own traffic)."""
    try:
        _check_bind(args.http)
    except StartupError as exc:
        print(f"fleetgate: {exc}", file=sys.stderr)
        return 2
    children: list[int] = []
    for index in range(args.workers):
        pid = os.fork()
        if pid == 0:
            def worker(stop: asyncio.Event, i: int = index) -> Awaitable[None]:
                return run_components(args, stop, gateway=True, dns=False, controller=False, worker=i,
                                      reuse_port=True)
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
    for child in children:
        _, status = os.waitpid(child, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status))
    return worst


async def _load_live_once(config: Any, timeout: float = 15.0) -> tuple[Any, list[Any]]:
    """A fleet with kubeconfig sources: connect, wait for every source's first list (up to
    timeout), and return its snapshot plus a warning per source that did not load."""
    from .fleet import Fleet
    from .snapshot import Diagnostic
    fleet = Fleet.from_config(config, live_factory=_live_factory())
    await fleet.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not fleet.ready and loop.time() < deadline:
        await asyncio.sleep(0.05)
    missing = [Diagnostic(str(config.path), f"cluster/{name}",
                          f"not loaded within {timeout:g}s (API server unreachable?); its objects were not checked",
                          "warning")
               for name in fleet.missing()]
    snapshot = fleet.snapshot
    await fleet.stop()
    return snapshot, missing


def _severity(problem: Any) -> str:
    return getattr(problem, "severity", "error")


def cmd_validate(args: argparse.Namespace) -> int:
    """Load once, run every pure builder's checks, print each problem and the counts.
    Exit 1 on any error (with --strict, on any warning too), else 0."""
    from gateway.cli import ingress_classes
    from gateway.routing.build import build

    from .fleet import load_fleet_once
    missing: list[Any] = []
    try:
        config = load_fleet_config(args.fleet)
        live = any(c.source.kubeconfig for c in config.clusters) or bool(config.hub and config.hub.kubeconfig)
        if live:
            snapshot, missing = asyncio.run(_load_live_once(config, args.wait))
        else:
            snapshot = load_fleet_once(config)
    except FleetConfigError as exc:
        print(str(exc))
        print(f"{args.fleet}: 1 errors, 0 warnings")
        return 1
    # a source that never loaded is said once, by the "not loaded" line
    unloaded = {d.object for d in missing}
    problems = missing + [d for d in snapshot.diagnostics if d.object not in unloaded]
    table, route_diags = build(snapshot, ingress_classes=ingress_classes(args))
    problems += route_diags
    from gateway.tls import certificate_problems
    problems += certificate_problems(table.tls)
    try:
        from controller.imports import derive_imports
        problems += list(derive_imports(snapshot).diagnostics)
    except ImportError:
        pass
    errors = warnings = 0
    for p in problems:
        if _severity(p) != "warning":
            errors += 1
            print(p)
        elif args.strict:
            errors += 1
            print(f"{p} (warning; an error under --strict)")
        else:
            warnings += 1
            print(f"{p} (warning)")
    n_ing = len(snapshot.hub.ingresses)
    print(f"{config.path}: {len(snapshot.members)} member clusters, {n_ing} Ingresses on the hub, "
          f"{errors} errors, {warnings} warnings")
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "gateway":
        if args.workers > 1:
            return _run_workers(args)
        return run_until_signal(lambda stop: run_components(args, stop, gateway=True, dns=False, controller=False))
    if args.command == "controller":
        return run_until_signal(lambda stop: run_components(args, stop, gateway=False, dns=False, controller=True))
    if args.command == "dns":
        return run_until_signal(lambda stop: run_components(args, stop, gateway=False, dns=True, controller=False))
    if args.command == "up":
        return run_until_signal(lambda stop: run_components(args, stop, gateway=True, dns=True, controller=True))
    if args.command == "demo":
        from .demo import run_demo
        return run_until_signal(lambda stop: run_demo(args, stop))
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
