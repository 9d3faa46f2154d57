"""The test API server's HTTP/1.1 layer: an asyncio.Protocol over httptools' parser.

Why not aiohttp's server: under the controller's cold-start mix its per-request machinery
(a task per connection, payload streams, response objects with header multidicts, a
writer per response) cost as much CPU as the API work itself. Here a request is parsed
by httptools (llhttp), its body buffered whole (API objects are small; 64 MiB cap), and
the handler is called synchronously: it returns a `Response`, whose head and body go out
in one `transport.write`, or a coroutine (watches, held responses) that runs as a task
and may stream a `StreamResponse` (chunked). Requests on one connection are answered in
order (pipelining queues). `Expect: 100-continue` is answered when the head arrives.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Union, cast
from urllib.parse import parse_qsl, unquote

import httptools
from multidict import MultiDict, MultiDictProxy

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_EMPTY_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())
_date: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    """`Date: ...\\r\\n`, formatted once per second."""
    global _date
    now = int(time.time())
    if now != _date[0]:
        _date = (now, b"Date: %s\r\n" % formatdate(now, usegmt=True).encode())
    return _date[1]


class Headers:
    """Request headers by lower-case name (repeats joined with ", "); `get`, `in` and `[]`
    take any case, like a CIMultiDict, without building one per request."""

    __slots__ = ("by_name",)

    def __init__(self, by_name: dict[str, str] | None = None) -> None:
        self.by_name = by_name if by_name is not None else {}

    def get(self, name: str, default: Any = None) -> Any:
        return self.by_name.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.by_name

    def __getitem__(self, name: str) -> str:
        return self.by_name[name.lower()]

    def __len__(self) -> int:
        return len(self.by_name)

    def items(self) -> Any:
        return self.by_name.items()


class Request:
    """One parsed request, body included (what the handlers read of aiohttp's BaseRequest)."""

    __slots__ = ("method", "path_qs", "version", "headers", "body", "transport", "keep_alive",
                 "_query", "_path", "_content_type")

    def __init__(self, method: str, target: str, version: str, headers: Headers,
                 body: bytes, transport: asyncio.Transport, keep_alive: bool) -> None:
        self.method = method
        self.path_qs = target
        self.version = version
        self.headers = headers
        self.body = body
        self.transport: asyncio.Transport | None = transport
        self.keep_alive = keep_alive
        self._query: MultiDictProxy[str] | None = None
        self._path: str | None = None
        self._content_type: str | None = None

    @property
    def path(self) -> str:
        """The decoded path, without the query."""
        if self._path is None:
            self._path = unquote(self.path_qs.partition("?")[0])
        return self._path

    @property
    def query(self) -> MultiDictProxy[str]:
        """The query's decoded parameters ('+' is a space), in order, repeats kept."""
        if self._query is None:
            raw = self.path_qs.partition("?")[2]
            self._query = MultiDictProxy(MultiDict(parse_qsl(raw, keep_blank_values=True))) if raw \
                else _EMPTY_QUERY
        return self._query

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case (application/octet-stream if none)."""
        if self._content_type is None:
            raw = self.headers.get("Content-Type", "")
            self._content_type = raw.partition(";")[0].strip().lower() or "application/octet-stream"
        return self._content_type

    @property
    def host(self) -> str:
        host: str | None = self.headers.get("Host")
        if host:
            return host
        sock = self.transport.get_extra_info("sockname") if self.transport is not None else None
        return "%s:%d" % sock[:2] if sock else "localhost"

    @property
    def can_read_body(self) -> bool:
        return bool(self.body)

    async def read(self) -> bytes:
        return self.body


class Response:
    """A whole response: status, body and headers, written at once."""

    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, *, body: bytes = b"", status: int = 200, text: str | None = None,
                 content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
        if text is not None:
            body, content_type = text.encode(), "text/plain; charset=utf-8"
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers  # beyond Content-Type, Content-Length and Date


class StreamResponse:
    """A chunked response written piece by piece (a watch); `write` waits while the client
    is slow to read."""

    def __init__(self, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self._conn: _Connection | None = None

    async def prepare(self, request: Request) -> None:
        conn = request.transport.get_protocol() if request.transport is not None else None
        if not isinstance(conn, _Connection) or conn.transport is None:
            raise ConnectionResetError("the client went away")
        self._conn = conn
        conn.streaming = True
        conn.write(_head(request, self.status, None, self.headers, b"Transfer-Encoding: chunked\r\n"))

    async def write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None or conn.transport is None:
            raise ConnectionResetError("the client went away")
        if data:
            conn.write(b"%x\r\n%s\r\n" % (len(data), data))
            await conn.drain()

    async def write_eof(self) -> None:
        conn = self._conn
        if conn is None or conn.transport is None:
            raise ConnectionResetError("the client went away")
        conn.write(b"0\r\n\r\n")
        conn.streaming = False


Result = Union[Response, StreamResponse]
Handler = Callable[[Request], Union[Response, Awaitable[Result]]]


_status_lines: dict[tuple[str, int], bytes] = {}
_type_lines: dict[str, bytes] = {}


def _head(request: Request, status: int, content_type: str | None, headers: dict[str, str] | None,
          extra: bytes) -> bytes:
    line = _status_lines.get((request.version, status))
    if line is None:
        line = _status_lines[request.version, status] = b"HTTP/%s %d %s\r\n" % (
            request.version.encode(), status, _REASONS.get(status, b"Unknown"))
    lines = [line, _date_header(), extra]
    if content_type is not None:
        typed = _type_lines.get(content_type)
        if typed is None:
            typed = _type_lines[content_type] = b"Content-Type: %s\r\n" % content_type.encode("latin-1")
        lines.append(typed)
    if headers:
        for name, value in headers.items():
            lines.append(b"%s: %s\r\n" % (name.encode(), value.encode("latin-1")))
    if not request.keep_alive:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def encode_response(request: Request, resp: Response) -> bytes:
    body = resp.body
    head = _head(request, resp.status, resp.content_type, resp.headers, b"Content-Length: %d\r\n" % len(body))
    return head if request.method == "HEAD" else head + body


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, server: "HTTPServer") -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.task: asyncio.Task[None] | None = None  # the request answered asynchronously
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._parsed = Headers()
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        self.closing = False
        self.streaming = False  # a StreamResponse is under way (its head is out, not its end)

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.connections.discard(self)
        self.queue.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(ConnectionResetError("the client went away"))
        if self.task is not None:
            self.task.cancel()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            self._fail(400, "malformed HTTP request: %s" % exc)
            return
        if self.task is None:
            self._serve()

    # --- httptools callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = []
        self._headers = []
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))  # decoded once the head is complete

    def on_headers_complete(self) -> None:
        raw = self._headers
        by_name = {name.lower().decode("latin-1"): value.decode("latin-1") for name, value in raw}
        if len(by_name) < len(raw):  # a repeated header: its values joined, in order
            by_name = {}
            for name, value in raw:
                key, text = name.lower().decode("latin-1"), value.decode("latin-1")
                before = by_name.get(key)
                by_name[key] = text if before is None else "%s, %s" % (before, text)
        self._parsed = Headers(by_name)
        expect = by_name.get("expect")
        if expect is not None and expect.lower() == "100-continue" and self.parser.get_http_version() == "1.1":
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= MAX_BODY:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None:  # closed while more requests were in the same read
            return
        target = b"".join(self._url).decode("latin-1")
        body = b"".join(self._body)
        req = Request(self.parser.get_method().decode("latin-1"), target, self.parser.get_http_version(),
                      self._parsed, body, self.transport,
                      self.parser.should_keep_alive())
        if self._size > MAX_BODY:
            req.keep_alive = False
            req.body = b""
            req.method = "!TOO-LARGE"
        self.queue.append(req)

    # --- answering -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._paused and self.transport is not None:
            if self._writable is None or self._writable.done():
                self._writable = asyncio.get_running_loop().create_future()
            await self._writable

    def _fail(self, status: int, message: str) -> None:
        if self.transport is not None:
            req = Request("GET", "/", "1.1", Headers(), b"", self.transport, False)
            self.write(encode_response(req, Response(status=status, text=message)))
            self.transport.close()

    def _serve(self) -> None:
        """Answer queued requests in order until one needs a task (or none is left)."""
        while self.queue and self.task is None and self.transport is not None:
            req = self.queue.popleft()
            if req.method == "!TOO-LARGE":
                self._fail(413, "request body larger than %d bytes" % MAX_BODY)
                return
            try:
                result = self.server.handler(req)
            except Exception:
                log.exception("HTTP handler failed on %s %s", req.method, req.path_qs)
                result = Response(status=500, text="internal error")
            if isinstance(result, Response):
                self._finish(req, result)
            else:
                self.task = asyncio.get_running_loop().create_task(self._later(req, result))

    async def _later(self, req: Request, pending: Awaitable[Result]) -> None:
        try:
            result = await pending
        except Exception:
            log.exception("HTTP handler failed on %s %s", req.method, req.path_qs)
            result = Response(status=500, text="internal error")
        finally:
            self.task = None
        if self.streaming:  # the handler failed mid-stream: nothing more can be said on it
            self.streaming = False
            self._close()
        elif isinstance(result, Response):
            self._finish(req, result)
        elif not req.keep_alive or self.closing:
            self._close()
        self._serve()

    def _finish(self, req: Request, resp: Response) -> None:
        if self.closing:
            req.keep_alive = False
        self.write(encode_response(req, resp))
        if not req.keep_alive:
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class HTTPServer:
    """Listens on host:port; `close` stops listening and ends every connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self, timeout: float = 1.0) -> None:
        """Stop listening; idle connections close now, busy ones when their answer is
        written or after `timeout` seconds (then dropped)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        busy = []
        for conn in list(self.connections):
            conn.closing = True
            if conn.task is None:
                conn._close()
            else:
                busy.append(conn.task)
        if busy:
            await asyncio.wait(busy, timeout=timeout)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
            if conn.task is not None:
                conn.task.cancel()
        await asyncio.sleep(0)
        await server.wait_closed()
