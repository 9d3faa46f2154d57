"""A public request-smuggling and malformed-message corpus, restated as raw bytes.

Each case names its public source (an RFC 9112 section, an llhttp test file, or published
desync research) and the outcome a strict HTTP/1.1 intermediary must produce. The cases are
restated from those sources, not copied. Shared by the end-to-end smuggling tests
(tests/gateway/protocol/test_smuggling.py) and the codec tests, so both are held to one corpus.

Every request names the host HOST; a target a backend must receive starts with "/ok";
a target that must never reach a backend is "/smuggled".
"""
from __future__ import annotations

from dataclasses import dataclass

HOST = b"corpus.example"


@dataclass(frozen=True, slots=True)
class RequestCase:
    """Raw request bytes sent on one fresh connection, and what must follow.

    `forwarded`: the request targets a backend must receive as complete requests, in order
    (valid pipelined requests before a bad one are served). `reject`: the statuses the
    gateway may answer the bad request with (empty: nothing is rejected, every response is
    the backend's and the connection stays usable). `closes`: the gateway closes the
    connection after its last response (always so after a rejection).
    """

    name: str
    raw: bytes
    source: str
    forwarded: tuple[bytes, ...] = ()
    reject: frozenset[int] = frozenset()
    closes: bool = False

    @property
    def accepted(self) -> bool:
        return not self.reject


@dataclass(frozen=True, slots=True)
class ResponseCase:
    """Raw bytes an upstream answers a GET with.

    `status`: what the client must get: 502 when the head is malformed (nothing was sent
    yet), or the upstream's own status when the head was good and only what follows is bad.
    `cut`: the client's connection is closed with the response incomplete (its head had
    already been sent). In every case the upstream connection is never used again.
    """

    name: str
    raw: bytes
    source: str
    status: int = 502
    cut: bool = False


from .requests import REQUESTS  # noqa: E402
from .responses import RESPONSES  # noqa: E402

__all__ = ["HOST", "RequestCase", "ResponseCase", "REQUESTS", "RESPONSES"]
