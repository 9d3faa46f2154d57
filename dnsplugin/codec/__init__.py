"""The DNS fast path: learned answers served without the resolver, compiled where built.

The one place that chooses (the gateway codec's shape): the typed Cython module
`_fastpath` (recvmmsg/sendmmsg, Linux) when built and FLEETGATE_PURE_PYTHON is not "1",
else its twin `_fastpath_py` (recvfrom/sendto, one datagram per call). Both give the same
bytes for the same datagrams (tests/dnsplugin/test_codec_*.py). `IMPLEMENTATION` says
which is active ("compiled" | "pure").

The interface, for dnsplugin.server:

- answer(fast, data, counts, tcp=False) -> bytes | None: the learned answer to `data`
  (exactly what the resolver returned for the same query but for ID and name case), or
  None; a hit bumps counts[qtype]. Over TCP only entries learned whole are served.
- pump(sock, holder, counts, slow, limit) -> int: read up to `limit` datagrams waiting on
  the non-blocking UDP socket `sock`, answer each from holder.fast or slow(data, addr),
  send the replies; returns the number read (0: nothing was waiting).
- pumped_latency() -> list[float]: the answer-latency row (dnsplugin.metrics: answers per
  bucket of types.LATENCY_BOUNDS, +Inf, sum of seconds) of every reply pump sent in this
  process. The compiled pump times each recvmmsg batch once and keeps the row in C.
"""
from __future__ import annotations

import os

from .types import BATCH_LIMIT, MAX_QUERY, FastEntry

__all__ = ["IMPLEMENTATION", "BATCH_LIMIT", "MAX_QUERY", "FastEntry", "answer", "pump", "pumped_latency"]

IMPLEMENTATION: str
if os.environ.get("FLEETGATE_PURE_PYTHON") == "1":
    from ._fastpath_py import answer, pump, pumped_latency
    IMPLEMENTATION = "pure"
else:
    try:
        from ._fastpath import answer, pump, pumped_latency  # type: ignore[no-redef, import-not-found]
        IMPLEMENTATION = "compiled"
    except ImportError:  # not built (no compiler, or not Linux): the twin
        from ._fastpath_py import answer, pump, pumped_latency  # type: ignore[assignment]
        IMPLEMENTATION = "pure"
