"""The pure-Python twin of dnsplugin.codec._fastpath: the same answers, one datagram per call.

`answer` serves a query the resolver answered before (its learned entry in `fast`, keyed
by the query from byte 2 on, lowercased) with the request's ID and question case patched
in; `pump` reads up to `limit` datagrams from a non-blocking UDP socket with recvfrom and
answers each with sendto. The compiled module does the same with recvmmsg/sendmmsg.
"""
from __future__ import annotations

import socket
from bisect import bisect_left
from time import perf_counter
from typing import Any, Callable, Protocol

from .types import LATENCY_BOUNDS, MAX_QUERY, FastEntry


class HolderLike(Protocol):
    """What pump reads of a ZoneHolder: the learned answers of the zone in force."""
    fast: dict[bytes, FastEntry]


Slow = Callable[[bytes, Any], "bytes | None"]


def answer(fast: dict[bytes, FastEntry], data: bytes, counts: list[int], tcp: bool = False) -> bytes | None:
    """The learned answer to `data` (bytes the resolver gave for the same query), else None.

    Over TCP only entries learned whole (no Additional dropped for UDP) are served.
    A hit is counted in counts[qtype].
    """
    entry = fast.get(data[2:].lower())
    if entry is None or (tcp and not entry[4]):
        return None
    counts[entry[3]] += 1
    return data[:2] + entry[0] + data[12:entry[2]] + entry[1]


# pump's answer-latency row (answers per bucket, +Inf, sum of seconds) since import
_LATENCY: list[float] = [0.0] * (len(LATENCY_BOUNDS) + 2)


def pumped_latency() -> list[float]:
    """The answer-latency row of every reply pump sent in this process (a copy)."""
    return list(_LATENCY)


def pump(sock: socket.socket, holder: HolderLike, counts: list[int], slow: Slow, limit: int) -> int:
    """Answer up to `limit` waiting datagrams; returns how many were read (0: none waiting).

    Datagrams the learned answers do not cover go to slow(data, addr), which returns the
    reply or None (dropped, or answered later). A send that would block drops the reply.
    Each reply's time is observed (pumped_latency).
    """
    latency = _LATENCY
    done = 0
    recvfrom, sendto = sock.recvfrom, sock.sendto
    while done < limit:
        started = perf_counter()
        try:
            data, addr = recvfrom(MAX_QUERY + 1)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # an ICMP error queued on the socket: consumed, nothing to answer
            done += 1
            continue
        done += 1
        if len(data) > MAX_QUERY:
            continue
        reply = answer(holder.fast, data, counts)
        if reply is None:
            reply = slow(data, addr)
            if reply is None:
                continue
        try:
            sendto(reply, addr)
        except OSError:
            pass  # a full send buffer or an unroutable peer: UDP drops it
        seconds = perf_counter() - started
        latency[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        latency[-1] += seconds
    return done
