"""The public smuggling corpus end to end over sockets, and the data-path defects of issue 13.

A real gateway stands in front of a backend that parses strictly (httptools) and records
every complete request it receives. Each corpus request goes on a fresh connection: a
rejected case gets its status and reaches nothing; an accepted one reaches the backend as
exactly its intended requests; no hidden request ever arrives, and the gateway keeps serving.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import httptools
import pytest

from corpus import HOST, REQUESTS, RESPONSES, RequestCase, ResponseCase
from gateway_support import endpoint_slice, ingress, rule, service
from gateway.cli import add_arguments, options_from
from gateway.context import Limits
from h1_support import RawResponse, read_response, scripted_backend

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
PROBE = b"GET /probe HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n"
READ_TIMEOUT = 5.0


# --- a strict, recording backend -------------------------------------------------------------

@dataclass
class Seen:
    conn: int
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


@dataclass
class Recorder:
    """What the backend saw: complete requests, parse errors, connections opened/closed."""

    requests: list[Seen] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    hold: asyncio.Event | None = None  # set: answer; unset: hold every answer until it is

    def targets(self, start: int = 0) -> list[bytes]:
        return [r.target for r in self.requests[start:]]


class RecordingBackend(asyncio.Protocol):
    """llhttp parses every byte the gateway sends; each complete request is recorded and
    answered with a fixed small response. An upgrade request is declined (a 200) and the
    bytes after its head are parsed as ordinary requests, so any leak shows up recorded."""

    ids = itertools.count(1)

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.conn = next(self.ids)
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.cur: Seen | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.rec.opened += 1
        self.rec.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.rec.closed += 1
        self.rec.changed.set()

    def data_received(self, data: bytes) -> None:
        while data:
            try:
                self.parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as upgrade:
                data = data[upgrade.args[0]:]
                self.parser = httptools.HttpRequestParser(self)  # declined: go on parsing
            except httptools.HttpParserError as err:
                self.rec.errors.append(f"conn {self.conn}: {err!r} on {data[:80]!r}")
                if self.transport is not None:
                    self.transport.close()
                return

    def on_message_begin(self) -> None:
        self.cur = Seen(self.conn, b"", b"", [])

    def on_url(self, url: bytes) -> None:
        assert self.cur is not None
        self.cur.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.cur is not None
        self.cur.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        assert self.cur is not None
        self.cur.method = self.parser.get_method()

    def on_body(self, body: bytes) -> None:
        assert self.cur is not None
        self.cur.body += body

    def on_message_complete(self) -> None:
        seen, self.cur = self.cur, None
        assert seen is not None
        self.rec.requests.append(seen)
        self.rec.changed.set()
        if self.rec.hold is not None and not self.rec.hold.is_set():
            asyncio.get_running_loop().create_task(self._answer_later())
        elif self.transport is not None:
            self.transport.write(OK)

    async def _answer_later(self) -> None:
        assert self.rec.hold is not None
        await self.rec.hold.wait()
        if self.transport is not None:
            self.transport.write(OK)


async def recording_backend(host: str) -> tuple[asyncio.AbstractServer, int, Recorder]:
    rec = Recorder()
    server = await asyncio.get_running_loop().create_server(lambda: RecordingBackend(rec), host, 0)
    return server, server.sockets[0].getsockname()[1], rec


async def corpus_gateway(fleet_dir: Any, start_gateway: Any, host: str, port: int, **options: Any) -> Any:
    """A gateway routing http://corpus.example/ to the one pod host:port."""
    fd = fleet_dir("zone-a")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(host, port)])])
    fd.hub([ingress("corpus", [rule(HOST.decode(), ("/", "Prefix", "svc"))])])
    return await start_gateway(fd, **options)


# --- reading what the gateway answers ----------------------------------------------------------

async def responses_until_close(reader: asyncio.StreamReader) -> tuple[list[RawResponse], bool]:
    """Every response on the stream until the gateway closes it (or the bounded timeout):
    the responses, and whether the connection was closed."""
    out: list[RawResponse] = []
    while True:
        try:
            out.append(await read_response(reader, timeout=READ_TIMEOUT))
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return out, True
        except asyncio.TimeoutError:
            return out, False
        if "close" in out[-1].headers.get("connection", ""):
            rest = await asyncio.wait_for(reader.read(), READ_TIMEOUT)
            return out, rest == b""


async def gateway_answers(gw: Any, rec: Recorder) -> str | None:
    """None when the gateway serves a normal request on a new connection (the backend gets it)."""
    before = len(rec.requests)
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(PROBE)
        resp = await read_response(reader, timeout=READ_TIMEOUT)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as err:
        return f"gateway no longer serving: {err!r}"
    finally:
        writer.close()
    if resp.status != 200 or rec.targets(before) != [b"/probe"]:
        return f"probe got {resp.status}, backend saw {rec.targets(before)}"
    return None


async def run_request_case(gw: Any, rec: Recorder, case: RequestCase) -> list[str]:
    """Send one case on a fresh connection; the list of ways it went wrong (empty: none)."""
    problems: list[str] = []
    before = len(rec.requests)
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(case.raw)
        await writer.drain()
        if case.accepted and not case.closes:
            got = []
            for _ in case.forwarded:
                got.append(await read_response(reader, timeout=READ_TIMEOUT))
            # the connection must be in a clean state: the next request is the next one served
            writer.write(PROBE)
            got.append(await read_response(reader, timeout=READ_TIMEOUT))
            closed = False
            want = [*case.forwarded, b"/probe"]
        else:
            got, closed = await responses_until_close(reader)
            want = list(case.forwarded)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as err:
        return [f"{case.name}: reading the answer failed: {err!r}"]
    finally:
        writer.close()
    statuses = [r.status for r in got]
    if case.accepted:
        if statuses != [200] * len(want):
            problems.append(f"{case.name}: statuses {statuses}, wanted all 200 for {want}")
    else:
        served, last = statuses[:-1], statuses[-1:] or [None]
        if served != [200] * len(case.forwarded) or last[0] not in case.reject:
            problems.append(f"{case.name}: statuses {statuses}, wanted {len(case.forwarded)}x200 "
                            f"then one of {sorted(case.reject)}")
    if case.closes and not closed:
        problems.append(f"{case.name}: the connection stayed open")
    seen = rec.targets(before)
    if seen != want:
        problems.append(f"{case.name}: backend saw {seen}, wanted {want}")
    return problems


async def test_corpus_requests_are_refused_or_forwarded_exactly(fleet_dir, start_gateway) -> None:
    server, port, rec = await recording_backend("127.0.63.1")
    async with server:
        gw = await corpus_gateway(fleet_dir, start_gateway, "127.0.63.1", port)
        problems: list[str] = []
        for case in REQUESTS:
            problems += await run_request_case(gw, rec, case)
            broken = await gateway_answers(gw, rec)
            if broken:
                problems.append(f"after {case.name}: {broken}")
                break
    assert not problems, "\n".join(problems)
    assert b"/smuggled" not in rec.targets()
    assert rec.errors == []  # the gateway never sent the backend bytes a strict parser refuses
    assert len(REQUESTS) >= 100 and sum(not c.accepted for c in REQUESTS) >= 100


async def test_corpus_bodies_and_trailers_reach_the_backend_as_sent(fleet_dir, start_gateway) -> None:
    """The body of each accepted request arrives whole; trailers are dropped (never forwarded)."""
    server, port, rec = await recording_backend("127.0.63.2")
    wanted = {"get-with-body-holding-a-request": b"GET /smuggled HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n",
              "chunked-body-holding-a-request": b"GET /smuggled HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n",
              "chunked-with-trailers": b"abc", "chunked-trailer-named-host": b"abc",
              "chunked-with-extensions": b"abcde", "chunked-size-uppercase-hex": b"0123456789"}
    cases = {c.name: c for c in REQUESTS}
    async with server:
        gw = await corpus_gateway(fleet_dir, start_gateway, "127.0.63.2", port)
        for name, body in wanted.items():
            before = len(rec.requests)
            assert await run_request_case(gw, rec, cases[name]) == []
            first = rec.requests[before]
            assert first.body == body, name
            names = [n for n, _ in first.headers]
            assert names.count(b"host") == 1 and b"x-checksum" not in names, (name, first.headers)
            assert dict(first.headers)[b"host"] == HOST


# --- the response corpus -------------------------------------------------------------------------

async def response_backend(host: str, log: list[tuple[int, bytes]]) -> tuple[asyncio.AbstractServer, int]:
    """Answers /bad/<i> with RESPONSES[i]'s bytes (and, for a cut case, then closes), anything
    else with a good response; logs (connection number, target) for every request head."""
    ids = itertools.count(1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = next(ids)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1]
                log.append((conn, target))
                if target.startswith(b"/bad/"):
                    case = RESPONSES[int(target[5:])]
                    writer.write(case.raw)
                    await writer.drain()
                    if case.cut:
                        break
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    return server, server.sockets[0].getsockname()[1]


async def is_whole_response(raw: bytes) -> bool:
    """Whether raw holds one complete response by its own framing (a cut one does not)."""
    stream = asyncio.StreamReader()
    stream.feed_data(raw)
    stream.feed_eof()
    try:
        await read_response(stream, timeout=READ_TIMEOUT)
    except (asyncio.IncompleteReadError, ValueError):
        return False
    return True


async def run_response_case(gw: Any, i: int, case: ResponseCase) -> list[str]:
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(b"GET /bad/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, HOST))
        if case.cut:
            raw = await asyncio.wait_for(reader.read(), READ_TIMEOUT)  # until the gateway cuts it
            status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0
            if status != case.status or await is_whole_response(raw):
                return [f"{case.name}: got {raw[:200]!r}, wanted a cut {case.status}"]
            return []
        problems = []
        first = await read_response(reader, timeout=READ_TIMEOUT)
        if first.status != case.status:
            problems.append(f"{case.name}: got {first.status}, wanted {case.status}")
        if case.status == 200 and first.body != b"ok":
            problems.append(f"{case.name}: got body {first.body!r}")
        # the same client goes on: its next answer is its own
        writer.write(b"GET /good HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST)
        second = await read_response(reader, timeout=READ_TIMEOUT)
        if second.status != 200 or second.body != b"good":
            problems.append(f"{case.name}: the next request got {second.status} {second.body!r}")
        return problems
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as err:
        return [f"{case.name}: {err!r}"]
    finally:
        writer.close()


async def test_corpus_responses_never_reach_a_client_whole_or_reuse_the_connection(fleet_dir,
                                                                                   start_gateway) -> None:
    log: list[tuple[int, bytes]] = []
    server, port = await response_backend("127.0.64.1", log)
    problems: list[str] = []
    async with server:
        gw = await corpus_gateway(fleet_dir, start_gateway, "127.0.64.1", port)
        for i, case in enumerate(RESPONSES):
            problems += await run_response_case(gw, i, case)
    bad_conns: dict[int, bytes] = {}
    for conn, target in log:
        if conn in bad_conns:
            problems.append(f"upstream connection {conn} reused for {target!r} after {bad_conns[conn]!r}")
        if target.startswith(b"/bad/"):
            bad_conns[conn] = target
    assert not problems, "\n".join(problems)
    assert len(RESPONSES) >= 20 and len(bad_conns) >= len(RESPONSES)


# --- the defects of issue 13, one by one ---------------------------------------------------------

async def test_bytes_after_an_upgrade_head_wait_for_the_101(fleet_dir, start_gateway) -> None:
    """Sent with the head, they reach the upstream only once it has switched protocols."""
    heads: list[bytes] = []
    switched = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    got: list[bytes] = []
    first_read = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        try:  # nothing else may arrive before we answer 101
            early = await asyncio.wait_for(reader.read(100), 0.3)
            got.append(b"EARLY:" + early)
        except asyncio.TimeoutError:
            pass
        writer.write(switched)
        await writer.drain()
        got.append(await reader.readexactly(len(b"frame-bytes")))
        first_read.set()
        writer.write(b"pong")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.63.3", 0)
    async with server:
        gw = await corpus_gateway(fleet_dir, start_gateway, "127.0.63.3", server.sockets[0].getsockname()[1])
        reader, writer = await asyncio.open_connection(gw.host, gw.port)
        try:
            writer.write(b"GET /ws HTTP/1.1\r\nHost: " + HOST + b"\r\nConnection: Upgrade\r\n"
                         b"Upgrade: websocket\r\n\r\nframe-bytes")
            resp = await read_response(reader)
            assert resp.status == 101
            await asyncio.wait_for(first_read.wait(), READ_TIMEOUT)
            assert await asyncio.wait_for(reader.readexactly(4), READ_TIMEOUT) == b"pong"
        finally:
            writer.close()
    assert got == [b"frame-bytes"]
    assert heads[0].startswith(b"GET /ws HTTP/1.1\r\n")


async def test_a_header_dripped_byte_by_byte_is_cut_at_the_header_timeout(fleet_dir, start_gateway) -> None:
    """The header timeout runs from a head's first byte (the method) to its end: sending
    one byte at a time does not restart it."""
    server, port, rec = await recording_backend("127.0.63.4")
    async with server:
        gw = await corpus_gateway(fleet_dir, start_gateway, "127.0.63.4", port,
                                  limits=Limits(header_timeout=0.5))
        head = b"GET /ok HTTP/1.1\r\nHost: " + HOST + b"\r\n" + b"X-Drip: " + b"d" * 200 + b"\r\n\r\n"
        reader, writer = await asyncio.open_connection(gw.host, gw.port)
        sent = 0
        try:
            # 60 ms a byte: the whole head would take ~14 s, 28 times the timeout
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                try:
                    answer = await asyncio.wait_for(reader.read(), 0.06)
                except asyncio.TimeoutError:
                    continue
                break
            else:
                answer = b""
        except ConnectionError:
            answer = b"(reset)"
        finally:
            writer.close()
    assert sent < len(head), "the gateway waited for the whole dripped head"
    assert answer.startswith(b"HTTP/1.1 408") or answer in (b"", b"(reset)"), answer[:100]
    assert rec.requests == []


async def test_idle_upstream_connections_per_endpoint_are_capped(fleet_dir, start_gateway) -> None:
    """Six concurrent requests open six upstream connections; once answered, only
    `--upstream-keepalive-connections` of them stay idle, the rest are closed."""
    limits = options_from(cli_args("--upstream-keepalive-connections", "2"), ("127.0.0.1", 0)).limits
    server, port, rec = await recording_backend("127.0.63.5")
    rec.hold = asyncio.Event()
    async with server:
        gw = await corpus_gateway(fleet_dir, start_gateway, "127.0.63.5", port,
                                  limits=limits)
        conns = [await asyncio.open_connection(gw.host, gw.port) for _ in range(6)]
        try:
            for i, (_, writer) in enumerate(conns):
                writer.write(b"GET /ok/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, HOST))
            async with asyncio.timeout(READ_TIMEOUT):
                while len(rec.requests) < 6:
                    rec.changed.clear()
                    await rec.changed.wait()
            assert rec.opened == 6
            rec.hold.set()
            for reader, _ in conns:
                assert (await read_response(reader)).status == 200
            async with asyncio.timeout(READ_TIMEOUT):
                while rec.closed < 4:
                    rec.changed.clear()
                    await rec.changed.wait()
        finally:
            for _, writer in conns:
                writer.close()
    assert rec.closed == 4
    assert Limits().upstream_keepalive_connections == 320  # ingress-nginx's default
    assert options_from(cli_args(), ("127.0.0.1", 0)).limits.upstream_keepalive_connections == 320


def test_upstream_keepalive_connections_must_be_a_count() -> None:
    for bad in ("-1", "many"):
        with pytest.raises(SystemExit):
            cli_args("--upstream-keepalive-connections", bad)
    assert options_from(cli_args("--upstream-keepalive-connections", "0"),
                        ("127.0.0.1", 0)).limits.upstream_keepalive_connections == 0


def cli_args(*argv: str) -> argparse.Namespace:
    """`fleetgate gateway`'s flags parsed as the CLI does."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--drain-timeout", type=float, default=1.0)
    return parser.parse_args(list(argv))


async def test_te_on_http10_is_refused_even_with_keep_alive(fleet_dir, start_gateway) -> None:
    server, port, rec = await recording_backend("127.0.63.6")
    async with server:
        gw = await corpus_gateway(fleet_dir, start_gateway, "127.0.63.6", port)
        reader, writer = await asyncio.open_connection(gw.host, gw.port)
        try:
            writer.write(b"POST /ok HTTP/1.0\r\nHost: " + HOST + b"\r\nConnection: keep-alive\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
            got, closed = await responses_until_close(reader)
        finally:
            writer.close()
    assert [r.status for r in got] == [400] and closed
    assert rec.requests == []


async def test_a_pooled_connection_with_stray_bytes_is_never_handed_out(fleet_dir, start_gateway) -> None:
    """An upstream that follows its response with bytes nobody asked for (garbage, a second
    response, or the start of one): the next client gets its own answer from a new
    connection, not a 502 while its request runs on the backend anyway."""
    for n, stray in enumerate((b"GARBAGE", b"HTTP/1.1 2", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")):
        heads: list[bytes] = []
        server, port = await scripted_backend(f"127.0.63.{10 + n}", [OK + stray], heads=heads)
        async with server:
            gw = await corpus_gateway(fleet_dir, start_gateway, f"127.0.63.{10 + n}", port)
            for i in range(3):
                reader, writer = await asyncio.open_connection(gw.host, gw.port)
                try:
                    writer.write(b"GET /ok/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, HOST))
                    resp = await read_response(reader)
                finally:
                    writer.close()
                assert (resp.status, resp.body) == (200, b"ok"), (stray, i)
        assert len(heads) == 3


def downstream_of(gw: Any, writer: asyncio.StreamWriter) -> Any:
    """The gateway's DownstreamH1 serving the connection of `writer`."""
    mine = writer.get_extra_info("sockname")
    for ds in gw.gateway.ctx.downstreams:
        if ds.transport is not None and ds.transport.get_extra_info("peername") == mine:
            return ds
    raise AssertionError("no such downstream")


async def until(condition: Any, what: str) -> None:
    """Wait (bounded) for a condition on gateway state that no event announces."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_header_timeout_starts_at_the_heads_first_byte_not_its_target(fleet_dir,
                                                                                start_gateway) -> None:
    """On a keep-alive connection the next head's deadline is set when its first byte (the
    method) arrives, and the target arriving later does not move it."""
    server, port, rec = await recording_backend("127.0.63.8")
    async with server:
        gw = await corpus_gateway(fleet_dir, start_gateway, "127.0.63.8", port,
                                  limits=Limits(header_timeout=30.0, idle_timeout=300.0))
        reader, writer = await asyncio.open_connection(gw.host, gw.port)
        try:
            writer.write(b"GET /ok/1 HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
            assert (await read_response(reader)).status == 200
            ds = downstream_of(gw, writer)
            idle_deadline = ds.deadline
            writer.write(b"GE")
            await until(lambda: ds.deadline != idle_deadline, "the head's first bytes")
            first_byte_deadline = ds.deadline
            assert first_byte_deadline < idle_deadline  # the header timeout, not the idle one
            writer.write(b"T /ok/2 HTTP/1.1\r\nHo")
            await until(lambda: b"/ok/2" in ds.buf, "the target")  # buffered, the head not complete
            assert ds.deadline == first_byte_deadline
            writer.write(b"st: " + HOST + b"\r\n\r\n")
            assert (await read_response(reader)).status == 200
        finally:
            writer.close()
    assert rec.targets() == [b"/ok/1", b"/ok/2"]
