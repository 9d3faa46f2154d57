"""The access log: one line per downstream request, formatted once per loop turn and
written by a thread, so a slow disk or a stalled pipe never holds the event loop.

The request path appends `(exchange, seconds, bytes sent, request bytes)` to
`AccessLog.pending` (that is all it does, in GatewayMetrics.request_done); the first append
of a batch schedules one `loop.call_soon(flush)`, which turns the batch into lines
(`Formatter.batch`: what a line takes from its route, backend and endpoint is made once per
way through the gateway and kept) and buffers them; once 32 KiB wait, or 50 ms after the
first, they go to the writer thread in one piece, and the writer joins what queued up
while it was writing into one `os.write`. A failed write (full disk, closed pipe) is
counted per line in `errors`, logged once, and never reaches a request; when the writer
falls more than `max_backlog` bytes behind (a pipe nobody reads), new lines are dropped and
counted instead of growing memory.

Fields follow ingress-nginx's default `log-format-upstream`, plus the member cluster and
the canary that matched: see docs/access-log.md.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import threading
import time
from typing import Any, NamedTuple

log = logging.getLogger("fleetgate.gateway")

FORMATS = ("text", "json")
MAX_BACKLOG = 8 * 1024 * 1024  # bytes handed to the writer and not written yet
HANDOFF_BYTES = 32 * 1024  # formatted lines wake the writer once this many wait ...
HANDOFF_DELAY = 0.05  # ... or this long after the first of them

_REFERER_AGENT = re.compile(rb"^(referer|user-agent):[ \t]*([^\r\n]*)", re.I | re.M)
# what nginx's text log escapes inside a variable: `"`, `\`, control and non-ASCII bytes
_UNSAFE = re.compile(rb'[^\x20\x21\x23-\x5b\x5d-\x7e]')
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


class AccessLogError(Exception):
    """The access log cannot be opened (a start-up error, as nginx's)."""


class Entry(NamedTuple):
    """One request's fields, for a request that is no Exchange (a gRPC call)."""

    remote_addr: bytes
    time: float  # Unix time the response ended
    method: bytes
    path: bytes
    protocol: bytes
    status: int
    bytes_sent: int
    referer: bytes
    user_agent: bytes
    request_length: int
    request_time: float
    upstream_name: str  # namespace-service-port, "" for none
    alternative_upstream_name: str  # the canary's upstream name when the canary matched
    upstream_addr: str
    upstream_status: int  # 0: no upstream answered
    upstream_response_time: float  # -1: no upstream answered
    request_id: bytes
    cluster: str
    canary: str  # the canary Ingress (namespace/name) that matched, "" for none
    ingress: str


def upstream_name(backend: Any) -> str:
    """ingress-nginx's $proxy_upstream_name: namespace-service-port."""
    return "%s-%s-%s" % (backend.namespace, backend.service, backend.port) if backend is not None else ""


def request_length(ex: Any) -> int:
    """The request as received, approximately: its request line, Host line, the header
    lines forwarded (the codec keeps those, not the raw head) and the body."""
    req = ex.req
    return len(req[0]) + len(req[1]) + len(req[3]) + len(req[12]) + 22 + ex.body_size


def grpc_entry(gs: Any, seconds: float, cluster: str, status: int) -> Entry:
    """The log fields of a gRPC call (h2_grpc.py's GrpcStream), taken when it ends."""
    h = dict(gs.headers)
    t = getattr(gs.conn, "transport", None)
    peer = t.get_extra_info("peername") if t is not None else None
    route = gs.route
    canary = gs.label if gs.label != route.ingress else ""
    chosen = gs.backend or route.backend
    ep = gs.ep
    answered = bool(getattr(gs, "responded", cluster)) and ep is not None
    return Entry(str(peer[0]).encode() if peer else b"", time.time(), b"POST", h.get(b":path", b""), b"HTTP/2.0",
                 status, 0, h.get(b"referer", b""), h.get(b"user-agent", b""), gs.body_size, seconds,
                 upstream_name(route.backend if canary else chosen), upstream_name(chosen) if canary else "",
                 ep.key if ep is not None else "", status if answered else 0, seconds if answered else -1.0,
                 h.get(b"x-request-id", b""), cluster, canary, route.ingress)


# bytes a text field keeps as they are; any other is written \xHH (nginx's escaping)
_SAFE = bytes(b for b in range(0x20, 0x7f) if b not in b'"\\')
# ... and a JSON string (UTF-8 text is decoded and escaped by json.dumps instead)
_JSON_SAFE = bytes(b for b in range(0x20, 0x7f) if b not in b'"\\')


def _esc(value: bytes) -> bytes:
    if not value:
        return b"-"
    if not value.translate(None, _SAFE):
        return value
    return _UNSAFE.sub(lambda m: b"\\x%02X" % m.group()[0], value)


def _js(value: bytes) -> bytes:
    """A JSON string of value."""
    if not value.translate(None, _JSON_SAFE):
        return b'"%s"' % value
    return json.dumps(value.decode("utf-8", "backslashreplace")).encode()


class _Clock:
    """$time_local strings, one per second (UTC, as the container's clock)."""

    def __init__(self) -> None:
        self.second = -1
        self.text = b""
        self.iso = b""

    def at(self, wall: float) -> None:
        s = int(wall)
        if s != self.second:
            t = time.gmtime(s)
            self.second = s
            self.text = b"%02d/%s/%d:%02d:%02d:%02d +0000" % (t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
                                                               t.tm_hour, t.tm_min, t.tm_sec)
            self.iso = time.strftime("%Y-%m-%dT%H:%M:%S", t).encode()


# ingress-nginx's default log-format-upstream, then member cluster and canary Ingress:
# addr - - [time] "method target protocol" status bytes "referer" "agent" request_length
# request_time [upstream] [alternative] upstream_addr - upstream_response_time
# upstream_status req_id cluster canary
TEXT = b'%s - - [%s] "%s %s %s" %d %d "%s" "%s" %d %s %s %s %s %s %s\n'
JSON = (b'{"time":"%s.%06dZ","remote_addr":"%s","method":%s,"path":%s,"protocol":"%s","status":%d,'
        b'"bytes_sent":%d,"http_referer":%s,"http_user_agent":%s,"request_length":%d,"request_time":%s,'
        b'%s,"upstream_status":%s,"upstream_response_time":%s,"req_id":%s,%s}\n')


# a head refused before it became a request (a malformed request line...): ingress-nginx's
# line with "-" where nothing is known (no request line, route, upstream or request id)
REFUSED_TEXT = b'%s - - [%s] "-" %d %d "-" "-" %d %s [] [] - - - - - - -\n'
REFUSED_JSON = (b'{"time":"%s.%06dZ","remote_addr":"%s","method":null,"path":null,"protocol":null,"status":%d,'
                b'"bytes_sent":%d,"http_referer":"","http_user_agent":"","request_length":%d,"request_time":%s,'
                b'"proxy_upstream_name":"","proxy_alternative_upstream_name":"","upstream_addr":"",'
                b'"upstream_status":null,"upstream_response_time":null,"req_id":"","ingress":"","cluster":"",'
                b'"canary":""}\n')


class _Route(NamedTuple):
    """What a line takes from its route, backend, endpoint and canary: the same for every
    request that went the same way, so made once (Formatter.memo)."""

    text_mid: bytes  # `[upstream] [alternative] upstream_addr -`
    text_tail: bytes  # `cluster canary`
    json_mid: bytes  # "proxy_upstream_name":...,"proxy_alternative_upstream_name":...,"upstream_addr":...
    json_tail: bytes  # "ingress":...,"cluster":...,"canary":...


def _route_parts(ingress: str, label: str, chosen: Any, main: Any, addr: str, cluster: str) -> _Route:
    canary = label if ingress and label != ingress else ""
    up = upstream_name(main if canary else chosen)
    alt = upstream_name(chosen) if canary else ""
    return _Route(
        b"[%s] [%s] %s -" % (up.encode(), alt.encode(), addr.encode() or b"-"),
        b"%s %s" % (cluster.encode() or b"-", canary.encode() or b"-"),
        b'"proxy_upstream_name":%s,"proxy_alternative_upstream_name":%s,"upstream_addr":%s' % (
            json.dumps(up).encode(), json.dumps(alt).encode(), json.dumps(addr).encode()),
        b'"ingress":%s,"cluster":%s,"canary":%s' % (
            json.dumps(ingress).encode(), json.dumps(cluster).encode(), json.dumps(canary).encode()))


class Formatter:
    """Lines from finished exchanges, a batch at a time (see the module docstring)."""

    def __init__(self, fmt: str = "text") -> None:
        if fmt not in FORMATS:
            raise ValueError("access log format must be one of %s" % ", ".join(FORMATS))
        self.json = fmt == "json"
        self.clock = _Clock()
        self.memo: dict[tuple[Any, ...], _Route] = {}
        self.h2_types: dict[type, bool] = {}  # the downstream's class -> it is an HTTP/2 stream

    def batch(self, records: list[tuple[Any, float, int, int]], offset: float) -> list[bytes]:
        """records: (exchange, seconds, bytes sent, request bytes); offset: wall - monotonic."""
        out = []
        clock = self.clock
        memo = self.memo
        h2_types = self.h2_types
        as_json = self.json
        for ex, seconds, sent, length in records:
            try:
                method = ex.method
                if not method:  # a stand-in for a head refused before it was a request (HTTP/2)
                    out.append(self.refused(ex.ds.peer, ex.start + seconds + offset, ex.status, sent, 0, seconds))
                    continue
                req = ex.req
                head = req[12]
                referer = agent = b""
                if head:
                    # one scan of the header lines for both (each bytes.find is an
                    # old-style-parsed call: a few of them cost more than this)
                    for name, value in _REFERER_AGENT.findall(head):
                        if name[0] in b"rR":
                            referer = referer or value
                        else:
                            agent = agent or value

                ds = ex.ds
                h2 = h2_types.get(type(ds))
                if h2 is None:
                    h2 = h2_types[type(ds)] = getattr(ds, "stream_id", None) is not None
                proto = b"HTTP/2.0" if h2 else b"HTTP/1.1" if req[2] == 11 else b"HTTP/1.0"
                route = ex.route
                if route is not None:
                    ingress = route.ingress
                    main = route.backend
                else:
                    ingress, main = "", None
                chosen = ex.backend or main
                ep = ex.endpoint
                tried = ex.tried
                cluster = ex.cluster
                if tried:
                    addr = ", ".join(tried if ep is None or tried[-1] == ep.key else (*tried, ep.key))
                    parts = _route_parts(ingress, ex.label, chosen, main, addr, cluster)
                else:
                    # strings only: a route or backend hashes all its fields
                    key = (ingress, ex.label, chosen.key if chosen is not None else "",
                           main.key if main is not None else "", ep.key if ep is not None else "", cluster)
                    parts = memo.get(key)  # type: ignore[assignment]
                    if parts is None:
                        if len(memo) > 4096:
                            memo.clear()
                        parts = memo[key] = _route_parts(ingress, ex.label, chosen, main,
                                                         ep.key if ep is not None else "", cluster)
                wall = ex.start + seconds + offset
                if wall >= clock.second + 1 or wall < clock.second:
                    clock.at(wall)
                status = ex.status
                # seconds with 6 decimals from integers (a float's %.6f costs several times more)
                secs = b"%d.%06d" % divmod(int(seconds * 1e6 + 0.5), 1000000)
                if as_json:
                    out.append(JSON % (
                        clock.iso, int((wall % 1) * 1e6), ds.peer, _js(method), _js(req[1]), proto, status, sent,
                        _js(referer), _js(agent), length, secs, parts.json_mid,
                        b"%d" % status if cluster else b"null", secs if cluster else b"null",
                        _js(ex.request_id), parts.json_tail))
                else:
                    line = TEXT % (
                        ds.peer or b"-", clock.text, method, req[1], proto, status, sent, referer or b"-",
                        agent or b"-", length, secs, parts.text_mid, secs if cluster else b"-",
                        b"%d" % status if cluster else b"-", ex.request_id or b"-", parts.text_tail)
                    # one check of the fields that come from the client, together
                    if _UNSAFE.search(b"".join((req[1], referer, agent, ex.request_id))) is not None:
                        line = TEXT % (
                            ds.peer or b"-", clock.text, method, _esc(req[1]), proto, status, sent,
                            _esc(referer), _esc(agent), length, secs, parts.text_mid, secs if cluster else b"-",
                            b"%d" % status if cluster else b"-", _esc(ex.request_id), parts.text_tail)
                    out.append(line)
            except Exception:  # a record we cannot format must not stop the others
                log.exception("access log: cannot format a record")
        return out

    def refused(self, peer: bytes, wall: float, status: int, sent: int, length: int, seconds: float) -> bytes:
        """The line of a head refused before it became a request (REFUSED_TEXT/_JSON)."""
        clock = self.clock
        clock.at(wall)
        secs = b"%d.%06d" % divmod(int(seconds * 1e6 + 0.5), 1000000)
        if self.json:
            return REFUSED_JSON % (clock.iso, int((wall % 1) * 1e6), peer, status, sent, length, secs)
        return REFUSED_TEXT % (peer or b"-", clock.text, status, sent, length, secs)

    def entry(self, e: Entry) -> bytes:
        """A line from an Entry (a gRPC call)."""
        clock = self.clock
        clock.at(e.time)
        answered = e.upstream_status != 0
        up = b"[%s] [%s] %s -" % (e.upstream_name.encode(), e.alternative_upstream_name.encode(),
                                   e.upstream_addr.encode() or b"-")
        if self.json:
            mid = b'"proxy_upstream_name":%s,"proxy_alternative_upstream_name":%s,"upstream_addr":%s' % (
                json.dumps(e.upstream_name).encode(), json.dumps(e.alternative_upstream_name).encode(),
                json.dumps(e.upstream_addr).encode())
            tail = b'"ingress":%s,"cluster":%s,"canary":%s' % (
                json.dumps(e.ingress).encode(), json.dumps(e.cluster).encode(), json.dumps(e.canary).encode())
            return JSON % (clock.iso, int((e.time % 1) * 1e6), e.remote_addr, _js(e.method), _js(e.path),
                           e.protocol, e.status, e.bytes_sent, _js(e.referer), _js(e.user_agent), e.request_length,
                           b"%.6f" % e.request_time, mid, b"%d" % e.upstream_status if answered else b"null",
                           b"%.6f" % e.upstream_response_time if answered else b"null", _js(e.request_id), tail)
        return TEXT % (e.remote_addr or b"-", clock.text, e.method, _esc(e.path), e.protocol, e.status, e.bytes_sent,
                       _esc(e.referer), _esc(e.user_agent), e.request_length, b"%.6f" % e.request_time, up,
                       b"%.6f" % e.upstream_response_time if answered else b"-",
                       b"%d" % e.upstream_status if answered else b"-", _esc(e.request_id),
                       b"%s %s" % (e.cluster.encode() or b"-", e.canary.encode() or b"-"))


class _Writer(threading.Thread):
    """Writes what the loop hands over; never touches the loop. Only this thread adds to
    `written` and `errors`."""

    def __init__(self, owner: "AccessLog") -> None:
        super().__init__(name="fleetgate-access-log", daemon=True)
        self.owner = owner
        self.queue: "queue.SimpleQueue[tuple[bytes, int] | None]" = queue.SimpleQueue()
        self.written = 0  # bytes taken off the queue (written or failed)
        self.errors = 0  # lines whose write failed
        self.failing = False

    def run(self) -> None:
        q = self.queue
        while True:
            item = q.get()
            stop = item is None
            chunks: list[bytes] = []
            lines = 0
            if item is not None:
                chunks.append(item[0])
                lines += item[1]
            while not stop:  # join whatever queued up meanwhile: one write for all of it
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    chunks.append(item[0])
                    lines += item[1]
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._write(data, lines)
                self.written += len(data)
            if stop:
                return

    def _write(self, data: bytes, lines: int) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.owner.fd, view)
                view = view[n:]
        except OSError as exc:
            self.errors += lines  # (a partly written batch counts whole: its lines are cut)
            if not self.failing:
                self.failing = True
                log.error("access log %s: cannot write (%s); requests are served, lost lines are counted in "
                          "fleetgate_access_log_errors_total", self.owner.target, exc.strerror or exc)
            return
        if self.failing:
            self.failing = False
            log.warning("access log %s: writing again", self.owner.target)


class AccessLog:
    """`--access-log off|-|PATH`, `--access-log-format text|json` (see the module docstring)."""

    def __init__(self, target: str, fmt: str = "text", *, max_backlog: int = MAX_BACKLOG,
                 handoff_bytes: int = HANDOFF_BYTES, handoff_delay: float = HANDOFF_DELAY) -> None:
        self.target = target
        self.format = fmt
        self.formatter = Formatter(fmt)
        self.max_backlog = max_backlog
        self.handoff_bytes = handoff_bytes
        self.handoff_delay = handoff_delay
        # (exchange, seconds, bytes sent, request bytes), appended by GatewayMetrics.request_done
        self.pending: list[tuple[Any, float, int, int]] = []
        self.buf: list[bytes] = []  # formatted lines not handed to the writer yet
        self.buf_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.fd = -1
        self.own_fd = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.writer: _Writer | None = None
        self.queued = 0  # bytes handed to the writer (only the loop adds)
        self.dropped = 0  # lines dropped: the writer was more than max_backlog behind

    @property
    def errors(self) -> int:
        """Lines not written: failed writes plus batches dropped behind a stalled writer."""
        return (self.writer.errors if self.writer is not None else 0) + self.dropped

    def open(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Open the destination (AccessLogError if it cannot be) and start the writer."""
        if self.target == "-":
            self.fd = 1
        else:
            try:
                self.fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise AccessLogError("cannot open the access log %s: %s" % (self.target, exc.strerror or exc)
                                     ) from None
            self.own_fd = True
        self.loop = loop or asyncio.get_running_loop()
        self.writer = _Writer(self)
        self.writer.start()

    def schedule(self) -> None:
        """The first record of a batch: format the batch once this loop turn is done."""
        loop = self.loop
        if loop is not None:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Format the pending records (on the loop, once per batch); the lines go to the
        writer once HANDOFF_BYTES of them wait, or HANDOFF_DELAY after the first: one
        writer wake-up per many lines, not per loop turn."""
        batch = self.pending
        if not batch:
            return
        self.pending = []
        lines = self.formatter.batch(batch, time.time() - time.monotonic())
        self.buf += lines
        self.buf_bytes += sum(map(len, lines))
        if self.buf_bytes >= self.handoff_bytes:
            self.handoff()
        elif self.timer is None and self.loop is not None:
            self.timer = self.loop.call_later(self.handoff_delay, self.handoff)

    def handoff(self) -> None:
        """Give the formatted lines to the writer thread (or drop and count them when it
        is more than max_backlog bytes behind)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        buf = self.buf
        if not buf:
            return
        self.buf = []
        self.buf_bytes = 0
        writer = self.writer
        if writer is None:
            return
        if self.queued - writer.written > self.max_backlog:
            self.dropped += len(buf)
            return
        data = b"".join(buf)
        self.queued += len(data)
        writer.queue.put((data, len(buf)))

    def add_entry(self, e: Entry) -> None:
        """A line from outside the HTTP exchanges (a gRPC call)."""
        self.add_line(self.formatter.entry(e))

    def add_refused(self, peer: bytes, status: int, sent: int, length: int, seconds: float) -> None:
        """The line of a head refused before it became a request (no exchange to describe)."""
        self.add_line(self.formatter.refused(peer, time.time(), status, sent, length, seconds))

    def add_line(self, line: bytes) -> None:
        """A formatted line, handed to the writer with the next batch (HANDOFF_DELAY at most)."""
        self.buf.append(line)
        self.buf_bytes += len(line)
        if self.timer is None and self.loop is not None:
            self.timer = self.loop.call_later(self.handoff_delay, self.handoff)

    def stop(self) -> "_Writer | None":
        """Hand what is pending to the writer and tell it to end (on the loop); the caller
        waits for the returned writer (`finish`) off the loop."""
        self.flush()
        self.handoff()
        writer = self.writer
        if writer is not None:
            writer.queue.put(None)
        return writer

    def finish(self, writer: "_Writer | None", timeout: float = 2.0) -> None:
        """Wait up to `timeout` for the writer to write the rest, then close the file (a
        writer stalled on a pipe is left behind: a daemon thread holding nothing we need)."""
        if writer is not None:
            writer.join(timeout)
            self.writer = None
            self.dropped += writer.errors  # keep the count readable after the writer is gone
        if self.own_fd and self.fd >= 0 and (writer is None or not writer.is_alive()):
            os.close(self.fd)
            self.fd = -1

    def close(self, timeout: float = 2.0) -> None:
        """stop() and finish() at once (blocks up to `timeout`: benchmarks, tests)."""
        self.finish(self.stop(), timeout)
