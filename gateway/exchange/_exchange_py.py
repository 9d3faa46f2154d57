# cython: annotation_typing=False
"""The exchange: one request/response pair's fields (`Exchange`, its defaults
`EXCHANGE_DEFAULTS`, `reset_exchange`), and `Reject`, the request the gateway refuses.

Part of the request path's hot core (see _core_py.py): one source, two builds. This file is
the pure-Python twin; setup.py also compiles it with Cython as `gateway.exchange._exchange`,
typed by `_exchange.pxd`, which _core.pxd cimports (its fields are C reads there). No class
here has class-level defaults (a compiled extension type cannot): `Exchange`'s defaults
are `EXCHANGE_DEFAULTS`, set on the class by the twin and in `__cinit__` by the compiled
build (tests/gateway/test_exchange.py holds both to the same values).
"""
from __future__ import annotations

from typing import Any

from .phases import ALLOWED, DONE, RESPONDING, Phase, PhaseError

__all__ = ["Reject", "IDEMPOTENT_METHODS", "Exchange", "EXCHANGE_DEFAULTS", "reset_exchange", "HOT_ATTRIBUTES"]

IDEMPOTENT_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))


class Reject(Exception):
    """A request the gateway answers itself and then closes (limits, malformed input)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Exchange:
    """One request/response pair, from its parsed head to its last response byte.

    Groups of fields (defaults: EXCHANGE_DEFAULTS):

    - request: `req` (the codec's RequestHead), method, target and host (req's, as
      properties), keep_alive (the client's connection survives this exchange),
      request_done (the whole request body was read), body (pieces kept for a retry, a
      list once there is a body), body_size, replayable (the body still fits the retry
      buffer), request_id (the client's x-request-id, or ours), start.
    - routing and policy (decided once, before the first attempt): route (None: 404),
      backend (a canary's or destination's, else the route's), label (metrics), answer (a
      response the gateway gives itself), extra_resp (header lines a policy adds), view
      and headers (what a policy reads of the request), mirror and mirror_head,
      hard_deadline (the route's total timeout), head (the upstream request head).
    - attempts: upstream (the connection of the current attempt), endpoint, attempt,
      tried (endpoint keys already tried), free_tries (stale pooled connections, not
      counted), counted and sent (least-connections accounting, EWMA sample), deadline
      (of the current wait), timer_attempt (a precise timer is set for that attempt).
    - response: phase, status, cluster, chunked_response (re-chunked to the client).
    """

    def __cinit__(self) -> None:
        """(Compiled build only: a new extension object's fields are None/0 until set here;
        the twin has the defaults on its class and never calls this.)"""
        reset_exchange(self)

    @property
    def target(self) -> bytes:
        """The request target (origin form; an absolute-form target's path and query)."""
        return self.req.target

    @property
    def host(self) -> bytes:
        """The Host (an absolute-form target's authority), b"" for an HTTP/1.0 request without one."""
        return self.req.host

    @property
    def finished(self) -> bool:
        return self.phase == DONE

    @property
    def response_started(self) -> bool:
        return self.phase >= RESPONDING

    def advance(self, new: int) -> None:
        """Move to `new`, checked against TRANSITIONS (the slow paths' way to move)."""
        if not ALLOWED[self.phase] >> new & 1:
            raise PhaseError("exchange %s: %s -> %s is not allowed" % (
                self.method.decode("latin-1"), Phase(self.phase).name, Phase(new).name))
        self.phase = new


EXCHANGE_DEFAULTS: dict[str, Any] = {
    "phase": 0, "ds": None, "req": None, "method": b"", "keep_alive": True, "request_done": False,
    "body": (), "body_size": 0, "replayable": True, "request_id": b"", "start": 0.0,
    "route": None, "backend": None, "label": "", "answer": None, "extra_resp": b"", "view": None,
    "headers": None, "mirror": None, "mirror_head": b"", "hard_deadline": 0.0, "head": b"",
    "upstream": None, "endpoint": None, "attempt": 0, "tried": None, "free_tries": 0, "counted": None,
    "sent": 0.0, "deadline": 0.0, "timer_attempt": 0, "status": 0, "cluster": "", "chunked_response": False,
}

def reset_exchange(ex: Any) -> None:
    """Every field of ex back to its EXCHANGE_DEFAULTS value: a connection's finished
    exchange made ready for its next request (the compiled core reuses one when nothing
    else holds it: no allocation and no deallocation per request). A field added to
    EXCHANGE_DEFAULTS is added here too (tests/gateway/protocol/test_connection_layer.py
    holds the two equal, in both builds)."""
    ex.phase = 0
    ex.ds = None
    ex.req = None
    ex.method = b""
    ex.keep_alive = True
    ex.request_done = False
    ex.body = ()
    ex.body_size = 0
    ex.replayable = True
    ex.request_id = b""
    ex.start = 0.0
    ex.route = None
    ex.backend = None
    ex.label = ""
    ex.answer = None
    ex.extra_resp = b""
    ex.view = None
    ex.headers = None
    ex.mirror = None
    ex.mirror_head = b""
    ex.hard_deadline = 0.0
    ex.head = b""
    ex.upstream = None
    ex.endpoint = None
    ex.attempt = 0
    ex.tried = None
    ex.free_tries = 0
    ex.counted = None
    ex.sent = 0.0
    ex.deadline = 0.0
    ex.timer_attempt = 0
    ex.status = 0
    ex.cluster = ""
    ex.chunked_response = False


# Set on every request, in request-path order (the twin only). CPython lets a class's
# instances share one key table of at most 30 attribute names, taken by the first names
# any instance sets; an instance that sets a name outside it pays for a private dict.
# Claim the table for these at import, before rarer paths can take the places.
HOT_ATTRIBUTES = ("ds", "req", "method", "start", "keep_alive", "request_done",
                  "route", "label", "request_id", "head", "endpoint", "attempt", "deadline", "upstream",
                  "phase", "status", "chunked_response", "cluster", "counted", "extra_resp", "backend")


def compiled() -> bool:
    """True in the Cython build of this module (its functions are not Python functions)."""
    return type(compiled).__name__ != "function"


def _twin_defaults() -> None:
    """The twin: defaults on the class (an instance sets only what differs), and the
    shared key table claimed for the hot attributes."""
    for name, value in EXCHANGE_DEFAULTS.items():
        setattr(Exchange, name, value)
    seed = Exchange()
    for name in HOT_ATTRIBUTES:
        setattr(seed, name, None)



if not compiled():
    _twin_defaults()
