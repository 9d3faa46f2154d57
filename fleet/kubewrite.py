"""One-object API requests (the controller's writes and gets) over kept-alive HTTP/1.1
connections of our own, with the ApiClient's TLS context and credentials.

Why: through aiohttp, one write cost the controller ~0.2 ms of CPU in the request path
alone (a ClientRequest, a timer, a payload object, a task that writes the body, two socket
sends), about 30 % of its CPU at a cold start (py-spy of bench/controller_scale.py
--services 1000). Here a request is one bytes write, built once, and its answer is parsed
by httptools (llhttp, C): Content-Length, chunked, or ended by the connection's close.

What the ApiClient gives is kept: fleet/kube.py builds the same headers it sends through
aiohttp (the bearer token from the Configuration per request, refreshed by an exec plugin
or OIDC when due; User-Agent; Cookie), and the TLS context here is the one kubernetes_asyncio
made from the kubeconfig (CA, client certificate, verify switches) with its TLS server name.
A proxy is not spoken here: `open_pool` answers None when the client's session would use
one, and fleet/kube.py then stays on aiohttp. Lists and watches always stay on aiohttp.

Connection loss: a request on a reused connection that got no byte of an answer is sent
again once on a new connection when its method is idempotent (aiohttp's rule); otherwise
the caller gets the OSError and its retry rules apply. Redirects are not followed (an API
server does not redirect its API): a 3xx comes back as an answer like any other failure.
"""
from __future__ import annotations

import asyncio
import logging
import os
import ssl
from typing import Any, NamedTuple

import httptools
import yarl

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
KEEP_IDLE = 32  # idle connections kept per API server (the writers use up to --max-concurrent-writes)
IDLE_TIMEOUT = 15.0  # an idle connection older than this is closed, not reused (aiohttp's keepalive_timeout)
DISABLE_ENV = "FLEETGATE_KUBE_AIOHTTP_WRITES"  # "1": every request through aiohttp, as before


class Answer(NamedTuple):
    status: int
    body: bytes
    retry_after: str  # the Retry-After header, or ""


class ConnectionLost(ConnectionError):
    """The connection ended (or sent what is not HTTP) before a whole answer arrived."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered  # some bytes of an answer had arrived: the request was seen


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request at a time, its answer collected whole."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Answer] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._body: list[bytes] = []
        self._retry_after = ""
        self._answered = False
        self._headers_done = False
        self._framed = False  # Content-Length or Transfer-Encoding: the answer's end is in its bytes

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and not self._framed:  # a body that ends with the connection
            self._finish(keep_alive=False)
        else:
            waiter.set_exception(ConnectionLost("connection lost before a whole answer%s" % (
                ": %s" % exc if exc else ""), answered=self._answered))

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # nothing asked: not HTTP we can follow
            self.abort()
            return
        self._answered = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionLost("malformed answer: %s" % exc, answered=True))

    # --- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"retry-after":
            self._retry_after = value.decode("latin-1").strip()
        elif lower == b"content-length" or lower == b"transfer-encoding":
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        self._finish(keep_alive=parser.should_keep_alive())

    # --- requests ---------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[Answer]:
        """Write one request; the future gets its answer (or the connection's failure)."""
        self._parser = httptools.HttpResponseParser(self)
        self._body = []
        self._retry_after = ""
        self._answered = self._headers_done = self._framed = False
        self._waiter = waiter = self.loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        return waiter

    def time_out(self) -> None:
        self._fail(TimeoutError("no answer in time"))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, *, keep_alive: bool) -> None:
        parser, waiter = self._parser, self._waiter
        assert parser is not None and waiter is not None
        self._parser = self._waiter = None
        if not waiter.done():
            waiter.set_result(Answer(parser.get_status_code(), b"".join(self._body), self._retry_after))
        self._body = []
        if not keep_alive:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        self._parser = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()


class WritePool:
    """Kept-alive connections to one API server (see the module docstring)."""

    def __init__(self, url: yarl.URL, ssl_context: ssl.SSLContext | None, *, server_hostname: str | None = None,
                 connect_timeout: float = 5.0) -> None:
        self.host = url.raw_host or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")  # a server URL may carry a path (a proxying front end)
        self.host_header = url.host_port_subcomponent or self.host
        self.ssl = ssl_context
        self.server_hostname = server_hostname if ssl_context is not None else None
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._closed = False
        self.connections_made = 0  # for tests: reuse is real

    async def request(self, method: str, head: bytes, body: bytes, timeout: float) -> Answer:
        """Send `head` (request line and headers, ending in the blank line) and `body` on a
        kept-alive connection; the whole answer. OSError (TimeoutError included) when there
        is none."""
        data = head + body if body else head
        conn, reused = await self._acquire()
        try:
            answer = await self._exchange(conn, data, timeout)
        except ConnectionLost as exc:
            if not (reused and not exc.answered and method in IDEMPOTENT):
                raise
            log.debug("%s: a kept-alive connection was closed under a %s; sending it again", self.host, method)
            conn = await self._connect()
            answer = await self._exchange(conn, data, timeout)
        self._release(conn)
        return answer

    async def _exchange(self, conn: _Connection, data: bytes, timeout: float) -> Answer:
        waiter = conn.send(data)
        timer = conn.loop.call_later(timeout, conn.time_out)
        try:
            return await waiter
        except BaseException:  # cancelled or failed mid-answer: the connection's state is unknown
            conn.abort()
            self._open.discard(conn)
            raise
        finally:
            timer.cancel()

    async def _acquire(self) -> tuple[_Connection, bool]:
        if self._closed:
            raise ConnectionLost("client closed", answered=False)
        idle = self._idle
        if idle:
            now = idle[-1].loop.time()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < IDLE_TIMEOUT:
                    return conn, True
                self._drop(conn)
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(loop.create_connection(
            lambda: _Connection(loop), self.host, self.port, ssl=self.ssl,
            server_hostname=self.server_hostname), self.connect_timeout)
        self.connections_made += 1
        if self._closed:
            conn.abort()
            raise ConnectionLost("client closed", answered=False)
        self._open.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.closed or self._closed or len(self._idle) >= KEEP_IDLE:
            self._drop(conn)
            return
        conn.idle_since = conn.loop.time()
        self._idle.append(conn)

    def _drop(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if not conn.closed:
            conn.closed = True
            assert conn.transport is not None
            conn.transport.close()

    def close(self) -> None:
        """Close every connection (a request in flight fails with ConnectionLost)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:  # closed cleanly (a TLS close_notify), not reset
            self._drop(conn)
        for conn in list(self._open):
            conn.abort()
        self._open.clear()


def open_pool(api: Any, server: str, *, connect_timeout: float = 5.0) -> WritePool | None:
    """A WritePool for this ApiClient's API server, or None when its requests must stay on
    aiohttp: a proxy applies (configured, or from the environment: fleet/kube.py turned the
    session's trust_env off when none does), a TLS context we cannot take from the session,
    a scheme other than http/https, or the DISABLE_ENV switch."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    rest = api.rest_client
    session = rest.pool_manager
    if rest.proxy or getattr(session, "_trust_env", True):
        return None
    url = yarl.URL(server)
    if url.scheme not in ("http", "https") or not url.raw_host:
        return None
    context = None
    if url.scheme == "https":
        # the context kubernetes_asyncio built from the kubeconfig (CA, client certificate,
        # verify_ssl, strict verification): aiohttp's TCPConnector keeps it as `_ssl`
        context = getattr(session.connector, "_ssl", None)
        if not isinstance(context, ssl.SSLContext):
            return None
    return WritePool(url, context, server_hostname=rest.server_hostname or None, connect_timeout=connect_timeout)
