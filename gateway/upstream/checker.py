"""Active health checks: one small task per checked endpoint, feeding HealthState.

Opt-in per Ingress (any `health-check-*` annotation); passive outlier detection needs no
configuration and is always on. Each probe is a TCP connect, an HTTP/1.1 GET of the
path that must answer 2xx/3xx, or, on gRPC routes (backend-protocol GRPC|GRPCS), a
`grpc.health.v1.Health/Check` call over HTTP/2 (h2c, or TLS with ALPN h2) that must answer
SERVING; intervals are jittered by ±10 % so probes of many gateways and endpoints do not
synchronise.
"""
from __future__ import annotations

import asyncio
import logging
import random
import struct
from typing import Mapping

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from ..routing.policy import HealthCheck
from ..routing.table import UpstreamEndpoint
from .h2_pool import upstream_h2_tls_context
from .health import HealthState

log = logging.getLogger("fleetgate.health")


SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus


def health_request(service: str) -> bytes:
    """A gRPC message (5-byte prefix) of HealthCheckRequest{service} in protobuf: field 1, a string."""
    name = service.encode()
    body = b"\x0a" + _varint(len(name)) + name if name else b""
    return b"\x00" + struct.pack(">I", len(body)) + body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def serving_status(message: bytes) -> int:
    """HealthCheckResponse.status (field 1, a varint) of a gRPC message; 0 (UNKNOWN) if absent."""
    if len(message) < 5:
        return 0
    body = message[5:5 + struct.unpack(">I", message[1:5])[0]]
    i = 0
    while i < len(body):
        key = body[i]
        i += 1
        value = shift = 0
        if key & 7 == 0:  # varint
            while i < len(body):
                b = body[i]
                i += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if key >> 3 == 1:
                return value
        elif key & 7 == 2:  # length-delimited: skip
            length = 0
            while i < len(body):
                b = body[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            i += length
        else:
            return 0
    return 0


async def grpc_probe(endpoint: UpstreamEndpoint, check: HealthCheck, timeout: float) -> int | None:
    """grpc.health.v1.Health/Check on its own HTTP/2 connection: None when unreachable (or no
    answer in time), 200 when SERVING, 503 for any other status or a non-OK grpc-status."""
    tls = check.grpc == "tls"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            endpoint.address, endpoint.port, ssl=upstream_h2_tls_context() if tls else None,
            server_hostname="" if tls else None), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        return await asyncio.wait_for(_health_call(reader, writer, endpoint, check, tls), timeout)
    except (OSError, asyncio.TimeoutError, h2.exceptions.ProtocolError):
        return None
    finally:
        writer.close()


async def _health_call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: UpstreamEndpoint,
                       check: HealthCheck, tls: bool) -> int | None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"POST"), (b":scheme", b"https" if tls else b"http"),
                          (b":path", b"/grpc.health.v1.Health/Check"),
                          (b":authority", b"%s:%d" % (endpoint.address.encode(), endpoint.port)),
                          (b"content-type", b"application/grpc"), (b"te", b"trailers"),
                          (b"user-agent", b"fleetgate-health-check")])
    conn.send_data(1, health_request(check.grpc_service), end_stream=True)
    writer.write(conn.data_to_send())
    message = b""
    grpc_status = None
    while True:
        data = await reader.read(65536)
        if not data:
            return None
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                message += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, 1)
            elif isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                for name, value in ev.headers:
                    if name == b"grpc-status":
                        grpc_status = value
            elif isinstance(ev, h2.events.StreamEnded):
                return 200 if grpc_status == b"0" and serving_status(message) == SERVING else 503
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                return None
        writer.write(conn.data_to_send())


async def probe(endpoint: UpstreamEndpoint, check: HealthCheck, timeout: float) -> int | None:
    """None when the endpoint is unreachable; 0 for a TCP success; else the HTTP status
    (a gRPC check's: 200 SERVING, 503 anything else)."""
    if check.grpc is not None:
        return await grpc_probe(endpoint, check, timeout)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.address, endpoint.port), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        if check.path is None:
            return 0
        writer.write(f"GET {check.path} HTTP/1.1\r\nHost: {endpoint.address}:{endpoint.port}\r\n"
                     "User-Agent: fleetgate-health-check\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return 599
        return int(parts[1])
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        writer.close()


class ActiveChecker:
    def __init__(self, health: HealthState) -> None:
        self.health = health
        self.tasks: dict[str, tuple[asyncio.Task[None], HealthCheck]] = {}
        self.probes = 0

    def update(self, targets: Mapping[str, tuple[UpstreamEndpoint, HealthCheck]]) -> None:
        """Follow a new set of checked endpoints (called after each table swap)."""
        for key in [k for k in self.tasks if k not in targets or self.tasks[k][1] != targets[k][1]]:
            self.tasks.pop(key)[0].cancel()
        for key, (endpoint, check) in targets.items():
            if key not in self.tasks:
                self.tasks[key] = (asyncio.get_running_loop().create_task(self._run(endpoint, check)), check)

    async def _run(self, endpoint: UpstreamEndpoint, check: HealthCheck) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0, check.interval))  # spread the first probes
        while True:
            status = await probe(endpoint, check, timeout=min(check.interval, 2.0))
            self.probes += 1
            now = loop.time()
            if status is None or (status >= 400 or 100 <= status < 200):
                if status is not None:
                    self.health.mark_unhealthy_now(endpoint.key, now)
                else:
                    self.health.check_result(endpoint.key, False, healthy_threshold=check.healthy_threshold,
                                             unhealthy_threshold=check.unhealthy_threshold, now=now)
            else:
                self.health.check_result(endpoint.key, True, healthy_threshold=check.healthy_threshold,
                                         unhealthy_threshold=check.unhealthy_threshold, now=now)
            await asyncio.sleep(check.interval * random.uniform(0.9, 1.1))

    def close(self) -> None:
        for task, _ in self.tasks.values():
            task.cancel()
        self.tasks.clear()
