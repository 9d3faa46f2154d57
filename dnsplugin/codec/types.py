"""What both fast-path implementations share: the learned-entry shape and the limits."""
from __future__ import annotations

from typing import Final

# A learned UDP answer (resolver._learn): (flags+counts: bytes 2..12 of the answer, body
# after the question, end of the question relative to the end of the query or None for
# the end, qtype for the metrics, whole: True when no Additional was dropped to fit UDP).
FastEntry = tuple[bytes, bytes, "int | None", int, bool]

# A UDP query longer than this is dropped unread (a DNS query is a few dozen bytes; ours
# never need more than a question and one OPT).
MAX_QUERY: Final = 4096
# Datagrams answered per readiness callback before the event loop runs other callbacks
# (TCP connections, zone swaps): the fairness bound.
BATCH_LIMIT: Final = 256
