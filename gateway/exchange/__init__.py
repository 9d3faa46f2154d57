"""One request/response exchange, explicit: its phase, its fields, and what the upstream
side may ask of the downstream connection that owns it.

Below gateway/protocol/ and gateway/upstream/ (it imports neither at run time), so both
can use it and neither imports the other: the upstream connection talks to its owner
through the `Downstream` protocol (kopf's WatchStreamProcessor pattern), never through
DownstreamH1 itself.

The phase (h11's `_state.py` shape, phases.py): `TRANSITIONS` lists the phases each phase
may move to and `Exchange.advance()` checks a move against it. The hot path (a plain GET
answered by a pooled connection) assigns the phase directly; `CheckedExchange` (the
subclass the tests run with, see tests/gateway/conftest.py, or FLEETGATE_CHECK_PHASES=1)
turns every assignment into a checked one (the compiled hot path, whose assignment to a
plain Exchange is a C store, moves any subclass through `advance`), so the hot path's
moves are held to the same table.

The request path's hot core (`Exchange`, and the `DownstreamCore` / `UpstreamCore` that
H1Reader/DownstreamH1 and UpstreamH1 build on) is three sources, _core_py.py,
_exchange_py.py (the exchange) and _route_py.py (the context's route snapshots, the warm
plan), used as is or compiled with Cython as `_core`, `_exchange` and `_route` (setup.py; typed by the .pxd
of each name, _core.pxd cimporting the other two). This is the one place that
chooses, as gateway/codec does: the compiled modules when all three are built and
FLEETGATE_PURE_PYTHON is not "1", else the three twins (never a mix). `IMPLEMENTATION` ("compiled" | "pure")
names it for `fleetgate --version` and the build-info metric.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

from .phases import ALLOWED, DONE, RECEIVED, RESPONDING, SENT, TRANSITIONS, TUNNEL, Phase, PhaseError

if TYPE_CHECKING:
    import asyncio

__all__ = ["Phase", "RECEIVED", "SENT", "RESPONDING", "TUNNEL", "DONE", "TRANSITIONS", "PhaseError", "Exchange",
           "CheckedExchange", "ContextCore", "Downstream", "Upstream", "DownstreamCore", "PoolCore", "UpstreamCore", "Reject",
           "IDEMPOTENT_METHODS", "MAX_RESPONSE_HEAD", "EXCHANGE_DEFAULTS", "IMPLEMENTATION", "round_robin",
           "wait_until"]

_ALLOWED = ALLOWED  # (the name this module had it under)

IMPLEMENTATION: str
if os.environ.get("FLEETGATE_PURE_PYTHON") == "1":
    from ._core_py import MAX_RESPONSE_HEAD, DownstreamCore, PoolCore, UpstreamCore
    from ._exchange_py import EXCHANGE_DEFAULTS, IDEMPOTENT_METHODS, Exchange, Reject
    from ._route_py import ContextCore, round_robin, wait_until
    IMPLEMENTATION = "pure"
else:
    try:
        # _core first: it cimports the other two, so it imports only when all three are built
        from ._core import (MAX_RESPONSE_HEAD, DownstreamCore,  # type: ignore[no-redef, import-not-found]
                            PoolCore, UpstreamCore)
        from ._exchange import (EXCHANGE_DEFAULTS, IDEMPOTENT_METHODS,  # type: ignore[no-redef, import-not-found]
                                Exchange, Reject)
        from ._route import ContextCore, round_robin, wait_until  # type: ignore[no-redef, import-not-found]
        IMPLEMENTATION = "compiled"
    except ImportError:  # not built (no compiler at install time): the twins, all three
        from ._core_py import (MAX_RESPONSE_HEAD, DownstreamCore,  # type: ignore[assignment]
                               PoolCore, UpstreamCore)
        from ._exchange_py import (EXCHANGE_DEFAULTS, IDEMPOTENT_METHODS,  # type: ignore[assignment]
                                   Exchange, Reject)
        from ._route_py import ContextCore, round_robin, wait_until  # type: ignore[assignment]
        IMPLEMENTATION = "pure"

# the compiled Exchange keeps its phase in a C field (a descriptor on the class); the twin's
# default is a class attribute (an int)
_PHASE_FIELD: Any = Exchange.__dict__.get("phase")
_FIELD = hasattr(_PHASE_FIELD, "__set__")


class CheckedExchange(Exchange):
    """An Exchange whose every phase assignment is checked (tests; FLEETGATE_CHECK_PHASES=1)."""

    @property  # type: ignore[override]
    def phase(self) -> int:  # noqa: F811
        if _FIELD:
            return _PHASE_FIELD.__get__(self)  # type: ignore[no-any-return]
        return self.__dict__.get("_phase", Phase.RECEIVED)  # type: ignore[no-any-return]

    @phase.setter
    def phase(self, new: int) -> None:
        old = _PHASE_FIELD.__get__(self) if _FIELD else self.__dict__.get("_phase", Phase.RECEIVED)
        if not ALLOWED[old] >> new & 1:
            raise PhaseError("exchange %s: %s -> %s is not allowed" % (
                self.method.decode("latin-1"), Phase(old).name, Phase(new).name))
        if _FIELD:
            _PHASE_FIELD.__set__(self, new)
        else:
            self.__dict__["_phase"] = new

    def advance(self, new: int) -> None:
        self.phase = new


class Upstream(Protocol):
    """What the downstream side holds of an upstream connection (UpstreamH1)."""

    transport: "asyncio.Transport | None"
    ex: "Exchange | None"

    def send(self, ex: Exchange, data: bytes) -> None: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class Downstream(Protocol):
    """What an upstream connection (gateway/upstream/) needs from the client connection
    that owns its exchange. DownstreamH1 implements it; upstream/ imports only this."""

    out: list[bytes]  # response bytes for the client, written at the next flush()
    http11: bool  # the client spoke HTTP/1.1 (else 1.0: close-delimited, keep-alive spelled out)
    transport: "asyncio.Transport | None"
    active: Exchange | None  # the exchange being proxied
    health: Any  # upstream/health.py's HealthState (.endpoints: endpoints whose statuses are watched)

    def now(self) -> float: ...
    def flush(self) -> None: ...
    def cluster_line(self, cluster: str) -> bytes: ...
    def connected(self, ex: Exchange, conn: Any) -> None: ...
    def response_head(self, ex: Exchange, code: int) -> bool: ...
    def response_complete(self, ex: Exchange, reusable: bool, upstream: Any) -> None: ...
    def retry_after_status(self, ex: Exchange, code: int, upstream: Any, reusable: bool) -> None: ...
    def upstream_failed(self, ex: Exchange, kind: str, *, reused: bool, got_bytes: bool) -> None: ...
    def start_tunnel(self, ex: Exchange, up: Any, rest: bytes) -> None: ...
    def tunnel_closed(self) -> None: ...


# The class the downstream creates per request: CheckedExchange under
# FLEETGATE_CHECK_PHASES=1 (tests/gateway/conftest.py sets it for the whole suite).
EXCHANGE_CLASS: type[Exchange] = CheckedExchange if os.environ.get("FLEETGATE_CHECK_PHASES") == "1" else Exchange
