"""`fleetgate gateway` flags and start-up (fleetgate/ composes the components)."""
from __future__ import annotations

import argparse

from fleet.admin import AdminServer
from fleet.view import FleetView

from .accesslog import AccessLogError
from .context import Limits
from .server import Gateway, GatewayOptions


class ListenerError(OSError):
    """One listener could not bind: names which one and its address, so the start-up error
    blames the one that failed (`cannot listen for https on 127.0.0.1:8443: ...`)."""

    def __init__(self, listener: str, address: tuple[str, int], cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.listener = listener
        self.address = address


def non_negative_int(value: str) -> int:
    """argparse type: a count that may be 0 (0 keeps no idle connection)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is negative")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The gateway's flags, for `fleetgate gateway`, `up` and `demo`."""
    parser.add_argument("--http", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="plain HTTP listener (default %(default)s)")
    parser.add_argument("--https", default="127.0.0.1:8443", metavar="HOST:PORT",
                        help="TLS listener, opened only when some Ingress has tls (default %(default)s)")
    parser.add_argument("--ingress-class", action="append", metavar="NAME",
                        help="IngressClass names to serve (repeatable or comma-separated; default fleetgate)")
    parser.add_argument("--no-cluster-header", action="store_true",
                        help="do not add x-fleetgate-cluster to responses (default: added)")
    parser.add_argument("--zone", default=None,
                        help="this gateway's topology zone, preferred when choosing endpoints (default: none)")
    parser.add_argument("--header-timeout", type=float, default=10.0,
                        help="seconds to receive a request head (default %(default)s)")
    parser.add_argument("--idle-timeout", type=float, default=60.0,
                        help="seconds a keep-alive client connection may stay idle (default %(default)s)")
    parser.add_argument("--max-body-size", type=int, default=None,
                        help="default request body limit in bytes (413 past it; default unlimited)")
    parser.add_argument("--upstream-keepalive-connections", type=non_negative_int, default=320, metavar="N",
                        help="idle keep-alive connections kept per upstream endpoint; more are closed when "
                             "released (ingress-nginx's upstream-keepalive-connections; default %(default)s)")
    parser.add_argument("--http2", choices=("on", "off"), default="on",
                        help="HTTP/2 for clients: ALPN h2 on TLS and h2c prior knowledge (default %(default)s; "
                             "off: HTTP/1.1 only, as ingress-nginx's use-http2: false)")
    parser.add_argument("--access-log", default="-", metavar="off|-|PATH",
                        help="one line per request: - for stdout, a file (appended to), or off "
                             "(default %(default)s; docs/access-log.md)")
    parser.add_argument("--access-log-format", choices=("text", "json"), default="text",
                        help="text: ingress-nginx's log-format-upstream plus member cluster and canary; "
                             "json: the same fields, one object per line (default %(default)s)")
    parser.add_argument("--metrics-endpoint-labels", action="store_true",
                        help="also export per-endpoint series (ejections, upstream connections by endpoint); "
                             "off by default: 10,000 pods would make 10,000 series of each")
    parser.add_argument("--publish-address", default=None, metavar="ADDRESS",
                        help="IP or hostname written to status.loadBalancer of the Ingresses served "
                             "(live hubs; default: none, status is not written)")


def ingress_classes(args: argparse.Namespace) -> tuple[str, ...]:
    names: list[str] = []
    for value in args.ingress_class or ["fleetgate"]:
        names += [v.strip() for v in value.split(",") if v.strip()]
    return tuple(names)


def options_from(args: argparse.Namespace, http: tuple[str, int], *, reuse_port: bool = False,
                 https: tuple[str, int] | None = None) -> GatewayOptions:
    from .protocol.h2 import set_http2

    set_http2(getattr(args, "http2", "on") == "on")  # process-wide, before any listener opens
    return GatewayOptions(
        http=http,
        https=https,
        ingress_classes=ingress_classes(args),
        limits=Limits(header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                      max_body_size=args.max_body_size,
                      upstream_keepalive_connections=getattr(args, "upstream_keepalive_connections", 320)),
        cluster_header=not args.no_cluster_header,
        reuse_port=reuse_port,
        drain_timeout=args.drain_timeout,
        zone=args.zone,
        publish_address=args.publish_address,
        access_log=getattr(args, "access_log", "off"),
        access_log_format=getattr(args, "access_log_format", "text"),
        metrics_endpoint_labels=getattr(args, "metrics_endpoint_labels", False),
    )


async def start_gateway(fleet: FleetView, options: GatewayOptions, admin: AdminServer | None) -> Gateway:
    """Start serving `fleet`; ListenerError when the http or (tls in the fleet) https
    listener cannot bind. The caller owns the result: `drain()` (or `close()`) stops it."""
    gateway = Gateway(options)
    gateway.follow(fleet)
    try:
        await gateway.start()
    except AccessLogError:
        await gateway.close()
        raise
    except OSError as exc:
        # the http listener is bound first; with it up, the failure was the https one
        listener = "https" if gateway.servers else "http"
        address = options.https if listener == "https" and options.https else options.http
        await gateway.close()
        raise ListenerError(listener, address, exc) from None
    if admin is not None:
        admin.add_collector(gateway.ctx.metrics)
        admin.add_json("/debug/routes", lambda request: gateway.debug_routes(),
                       "the gateway's routing table, endpoints and their health (JSON)")
    return gateway

