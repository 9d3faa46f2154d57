"""Shared pieces of the HTTP/1.1 protocol tests: a one-service fleet behind a real gateway,
a raw-socket response reader for what aiohttp hides (framing, pipelining, closes), and a
raw upstream that answers with scripted bytes and records the request heads it reads."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from gateway_support import endpoint_slice, ingress, rule, service

HOST = "h1.example"


async def one_service(fleet_dir: Any, echo_backends: Any, start_gateway: Any, pods: dict[str, str], *,
                      handler: Any = None, **gateway_options: Any) -> tuple[Any, list[Any]]:
    """Service `svc` with one pod per member cluster ({cluster: address}), routed from
    http://h1.example/ by a gateway started with gateway_options (limits, cluster_header)."""
    fd = fleet_dir(*pods)
    backends = []
    for cluster, addr in pods.items():
        b = await echo_backends(cluster, host=addr, handler=handler)
        backends.append(b)
        fd.member(cluster, [service("svc"), endpoint_slice("svc", [(b.host, b.port)])])
    fd.hub([ingress("h1", [rule(HOST, ("/", "Prefix", "svc"))])])
    gw = await start_gateway(fd, **gateway_options)
    return gw, backends


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lowercase names; repeated fields joined with ", "
    names: list[str]  # every header name as sent, lowercase, in order
    body: bytes


async def read_response(reader: asyncio.StreamReader, *, head_request: bool = False,
                        timeout: float = 5.0) -> RawResponse:
    """One HTTP/1.x response off a raw stream, honouring its framing (interim 1xx skipped)."""
    while True:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        if status >= 200 or status == 101:
            break
    headers: dict[str, str] = {}
    names = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        names.append(name)
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if head_request or status in (101, 204, 304):
        body = b""
    elif "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    elif "chunked" in headers.get("transfer-encoding", ""):
        pieces = []
        while True:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)  # no trailers expected
                break
            pieces.append(await asyncio.wait_for(reader.readexactly(size), timeout))
            assert await asyncio.wait_for(reader.readexactly(2), timeout) == b"\r\n"
        body = b"".join(pieces)
    else:
        body = await asyncio.wait_for(reader.read(), timeout)  # close-delimited
    return RawResponse(status, headers, names, body)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the server closes the connection (EOF or reset) with nothing more sent."""
    try:
        rest = await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return True
    except asyncio.TimeoutError:
        return False
    assert rest == b"", rest[:200]
    return True


def get(path: str = "/", *, host: str = HOST, extra: str = "", version: str = "1.1") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: {host}\r\n{extra}\r\n".encode()


async def scripted_backend(host: str, pieces: list[bytes], *, pause: float = 0.0, close: bool = False,
                           heads: list[bytes] | None = None) -> tuple[asyncio.AbstractServer, int]:
    """Answers every request on a connection with `pieces`, written one by one (and with
    `close`, then closes the connection); appends each request head it reads to `heads`."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if heads is not None:
                    heads.append(head)
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    if pause:
                        await asyncio.sleep(pause)
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    return server, server.sockets[0].getsockname()[1]


async def gateway_for(fleet_dir: Any, start_gateway: Any, host: str, port: int) -> Any:
    """A gateway routing web.example.com/ to the one pod host:port of Service `svc`."""
    fd = fleet_dir("zone-a")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(host, port)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "svc"))])])
    return await start_gateway(fd)
