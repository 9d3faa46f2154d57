"""Which connections the compiled core may write to directly (`wfd`).

The compiled build (_core.pxd's `_write`, `_write_response`) sends a request head or a
whole response straight to the socket when the transport has nothing buffered and is not
closing, exactly as the loop's own write begins (uvloop's try-write, asyncio's
sock.send), and hands whatever the socket did not take to `transport.write`: the order of
bytes and every error stay the transport's. That saves the loop's write layers (~1k
instructions a write, bench/proxy_profile.py --callgrind). Only a plain TCP transport of
uvloop or asyncio qualifies: a TLS transport's socket carries records, never our bytes.
"""
from __future__ import annotations

import asyncio
from typing import Any

from . import IMPLEMENTATION

# (module, class name) of the transports whose socket takes our bytes as they are
_PLAIN = frozenset((("uvloop.loop", "TCPTransport"), ("asyncio.selector_events", "_SelectorSocketTransport")))


def direct_fd(transport: asyncio.BaseTransport | Any) -> int:
    """The socket descriptor the compiled core may write `transport`'s bytes to, -1 when it
    may not (the twin, TLS, another kind of transport)."""
    if IMPLEMENTATION != "compiled":
        return -1
    kind = type(transport)
    if (kind.__module__, kind.__name__) not in _PLAIN or transport.get_extra_info("sslcontext") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    try:
        return int(sock.fileno()) if sock is not None else -1
    except (OSError, ValueError):
        return -1
