"""DownstreamH1's tunnels (after a 101) and the client's deadlines (driven by the
server's sweeper; the attempt's own timeout is attempts.py's, shared with HTTP/2).

A mixin of the downstream connection, apart from reading (http1_downstream.py) and
proxying (downstream.py) so each stays short; it uses their state (active, out, held,
tunnel, deadline).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..exchange import DONE, Exchange
from .http1 import error_response

if TYPE_CHECKING:
    from ..upstream.connection import UpstreamH1


class TunnelsAndTimeouts:
    """Tunnels and timeouts of a DownstreamH1 (see the module docstring)."""

    __slots__ = ()

    ctx: Any
    active: Exchange | None
    out: list[bytes]
    held: bytes | None
    tunnel: Any
    transport: asyncio.Transport | None
    deadline: float
    began: float
    close_after: bool
    now: Any

    # --- upgrades (WebSocket and other tunnels) ------------------------------------------

    def start_tunnel(self, ex: Exchange, up: "UpstreamH1", rest: bytes) -> None:
        """The upstream answered 101: the held bytes are the tunnel's, both ways from now."""
        ex.advance(DONE)
        self.active = None
        self.tunnel = up
        self.deadline = 0.0
        self.ctx.metrics.request_done(ex, self.now())
        if rest:
            self.out.append(rest)
        held, self.held = self.held, None
        if held and up.transport is not None:
            up.transport.write(held)
        if self.transport is not None:
            self.transport.resume_reading()

    def tunnel_closed(self) -> None:
        self.tunnel = None
        self.flush()  # type: ignore[attr-defined]
        if self.transport is not None:
            self.transport.close()

    # --- timeouts (driven by the server's sweeper) ------------------------------------

    def check_timeouts(self, now: float, horizon: float = 0.0) -> None:
        """Called by the server's sweeper every interval: the active exchange's attempt
        (Attempts._check_attempt), else the client's header or idle deadline."""
        ex = self.active
        if ex is not None:
            self._check_attempt(ex, now, horizon)  # type: ignore[attr-defined]
            return
        if self.tunnel is None and self.deadline and now > self.deadline:
            if self.began:  # a head began and did not end in time: nginx's client_header_timeout
                self.out.append(error_response(408, "request-timeout", close=True))
                self.flush()  # type: ignore[attr-defined]
            if self.transport is not None:
                self.transport.close()

    def drain(self) -> None:
        """Graceful shutdown: close now if idle, else after the current response."""
        if self.active is None and not self.began and self.tunnel is None and self.cur is None:  # type: ignore[attr-defined]
            if self.transport is not None:
                self.transport.close()
        else:
            self.close_after = True
            if self.active is not None:
                self.active.keep_alive = False  # the response in flight says `connection: close`
