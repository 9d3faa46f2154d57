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
# fleetgate_dns_answer_seconds buckets (upper bounds; +Inf follows): an answer from the
# zone takes microseconds, a forwarded one up to the forward timeout. A latency row is
# [answers per bucket..., +Inf, sum of seconds], kept by both implementations.
LATENCY_BOUNDS: Final = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                         0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
