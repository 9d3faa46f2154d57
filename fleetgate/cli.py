"""The `fleetgate` command: one console script, one subcommand per way of running.

Parses the flags and hands the run to fleetgate.run (start the components over one
fleet, stop them in reverse) or fleetgate.demo; `validate` runs every pure builder once.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Sequence

from controller.derive import derive_imports
from fleet.admin import DEFAULT_MEMBER_SYNC_TIMEOUT
from fleet.config import FleetConfig, FleetConfigError, load_fleet_config
from fleet.fleet import Fleet, load_fleet_once
from fleet.snapshot import Diagnostic, FleetSnapshot

from .buildinfo import build_info, publish_metric
from .process import run_until_signal, setup_logging
from .run import address_arg, live_factory, run_components, run_workers

DEFAULT_FLEET = Path(__file__).parent / "examples" / "demo" / "fleet.yaml"
DEFAULT_DEMO_DIR = "fleetgate-demo"  # `fleetgate demo`'s working folder, relative to the cwd

EXIT_CODES = """exit codes:
  0  ok (validate: no errors; a server: stopped by SIGTERM/SIGINT after draining)
  1  validate found errors, a bad fleet.yaml included (with --strict, warnings too)
  2  usage error or start-up failure (a bad flag; a server's bad fleet.yaml; a
     listener that cannot bind: one line naming it)"""


def version_text() -> str:
    """`fleetgate --version`: the distribution's version, then which implementation each
    hot-path codec runs (compiled, or the pure-Python twin)."""
    info = build_info()
    number = info.pop("version")
    return "\n".join([f"fleetgate {number}"] + [f"  {k}: {v}" for k, v in info.items()])


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
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text: one readable line; json: one JSON object per line with time, level, "
                             "logger, message, component, cluster, ingress, object (default %(default)s)")


def _drain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drain-delay", type=float, default=5.0, metavar="SECONDS",
                        help="on SIGTERM, /readyz turns 503 at once but listeners keep accepting and serving "
                             "this long, while endpoint controllers and load balancers stop sending "
                             "(default %(default)s)")
    parser.add_argument("--drain-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="then, with listeners closed, seconds to let in-flight requests finish "
                             "(default %(default)s)")


def _gateway_arguments(parser: argparse.ArgumentParser) -> None:
    from gateway import cli as gateway_cli  # imported only by a command that takes its flags
    gateway_cli.add_arguments(parser)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI; with `command` (the one being run), only that command's subparser
    gets the gateway's flags, so `fleetgate controller` or `dns` never imports the gateway."""
    def wants_gateway(name: str) -> bool:
        return command is None or command == name

    parser = argparse.ArgumentParser(prog="fleetgate", description="Multi-cluster traffic layer for Kubernetes fleets",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("gateway", help="run the multi-cluster ingress gateway")
    _common(p)
    _drain(p)
    if wants_gateway("gateway"):
        _gateway_arguments(p)
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
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the DNS port (UDP and TCP) via SO_REUSEPORT, one per core "
                        "(default %(default)s)")

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
        if wants_gateway(name):
            _gateway_arguments(p)
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
    p.add_argument("--admin", default=default, type=address_arg, metavar="HOST:PORT",
                   help="admin listener: /healthz, /readyz, /metrics, /debug/* (default %(default)s)")
    p.add_argument("--debug-address", action="append", default=[], metavar="ADDRESS",
                   help="a peer address or CIDR also allowed to read /debug/* (repeatable; 0.0.0.0 allows "
                        "everyone; default: loopback only)")
    p.add_argument("--member-sync-timeout", type=float, default=DEFAULT_MEMBER_SYNC_TIMEOUT, metavar="SECONDS",
                   help="after this long, /readyz is 200 even if some member cluster has not loaded; its "
                        "body and fleetgate_member_sync_missing name them (default %(default)s)")


def _leader_elect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--leader-elect", action="store_true",
                   help="hold a Lease on the hub so one replica writes (live fleets; default: off)")
    _write_limits(p)


def _write_limits(p: argparse.ArgumentParser) -> None:
    """The live controller's write concurrency and client-side rate limit, per member cluster."""
    p.add_argument("--max-concurrent-writes", type=int, default=16, metavar="N",
                   help="exported services written at once per member cluster; one service's writes "
                        "stay in order (live fleets; default %(default)s)")
    p.add_argument("--kube-api-qps", type=float, default=0.0, metavar="QPS",
                   help="client-side write rate limit per member cluster, client-go's QPS "
                        "(live fleets; default 0: no limit)")
    p.add_argument("--kube-api-burst", type=int, default=0, metavar="N",
                   help="writes allowed at once above --kube-api-qps (default 0: twice the QPS)")


def _dns_arguments(p: argparse.ArgumentParser, *, listen_flag: str) -> None:
    p.add_argument(listen_flag, dest="dns_listen", default="127.0.0.1:1053", metavar="HOST:PORT",
                   help="DNS listener, UDP and TCP (default %(default)s)")
    p.add_argument("--cluster", default=None, metavar="NAME",
                   help="member cluster whose view the DNS serves (default: the first)")
    p.add_argument("--upstream", default=None, metavar="HOST:PORT",
                   help="forward names outside the zone here (default: REFUSED)")
    p.add_argument("--ttl", type=int, default=5, help="DNS TTL seconds (default %(default)s)")


# --- validate ----------------------------------------------------------------------------


async def _load_live_once(config: FleetConfig, timeout: float = 15.0) -> tuple[FleetSnapshot, list[Diagnostic]]:
    """A fleet with kubeconfig sources: connect, wait for every source's first list (up to
    timeout), and return its snapshot plus a warning per source that did not load."""
    fleet = Fleet.from_config(config, live_factory=live_factory())
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


def cmd_validate(args: argparse.Namespace) -> int:
    """Load once, run every pure builder's checks, print each problem and the counts.
    Exit 1 on any error (with --strict, on any warning too), else 0."""
    missing: list[Diagnostic] = []
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
    from gateway import cli as gateway_cli
    from gateway.routing.build import build
    from gateway.tls import certificate_problems
    table, route_diags = build(snapshot, ingress_classes=gateway_cli.ingress_classes(args))
    problems += route_diags
    problems += certificate_problems(table.tls)
    problems += list(derive_imports(snapshot).diagnostics)
    errors = warnings = 0
    for p in problems:
        if p.severity != "warning":
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
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(next((w for w in words if not w.startswith("-")), None)).parse_args(words)
    setup_logging(args.log_level, args.log_format, args.command)
    if args.command == "validate":
        return cmd_validate(args)
    publish_metric()
    if args.command == "gateway":
        if args.workers > 1:
            return run_workers(args)
        return run_until_signal(lambda stop: run_components(args, stop, gateway=True, dns=False, controller=False))
    if args.command == "controller":
        return run_until_signal(lambda stop: run_components(args, stop, gateway=False, dns=False, controller=True))
    if args.command == "dns":
        if args.workers > 1:
            return run_workers(args)
        return run_until_signal(lambda stop: run_components(args, stop, gateway=False, dns=True, controller=False))
    if args.command == "up":
        return run_until_signal(lambda stop: run_components(args, stop, gateway=True, dns=True, controller=True))
    if args.command == "demo":
        from .demo import run_demo
        return run_until_signal(lambda stop: run_demo(args, stop))
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
