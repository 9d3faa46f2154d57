"""Types and constants shared by the compiled HTTP/1 codec (`_http1`) and its twin (`_http1_py`).

Both implementations return these classes, so a result from one compares equal to the
result from the other (the differential tests rely on it); they are NamedTuples, so the
compiled module fills them in C and the twin builds them with one `tuple.__new__`. The character tables are the
RFC 9110/9112 grammar written once; the twin indexes them, the compiled module builds its
C tables from the same definitions.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["HeadError", "RequestHead", "ResponseHead", "TOKEN", "METHOD", "FIELD_VCHAR", "TARGET",
           "HOST_CHARS", "REQUEST_DROP", "RESPONSE_HOP", "CONNECTION_KEYWORDS", "drop_named_lines"]


class HeadError(Exception):
    """A head (or chunked body) the codec refuses: `status` is what the gateway answers
    (400, 414, 417, 431, 501, 505 for requests; 502 for an upstream's response) and
    `reason` a short kebab-case word for logs, metrics and x-fleetgate-reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return "HeadError(%d, %r)" % (self.status, self.reason)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeadError) and (self.status, self.reason) == (other.status, other.reason)

    def __hash__(self) -> int:
        return hash((self.status, self.reason))


class RequestHead(NamedTuple):
    """A validated request head (immutable; a tuple, so the compiled module builds it in C
    with no Python-level call and both implementations' results compare equal).

    method, target: bytes (target in origin form, or `*`, or CONNECT's authority; an
    absolute-form target is reduced to its path and query, its authority becoming `host`);
    version: 10 or 11; host: the Host (b"" when an HTTP/1.0 request has none);
    content_length: -1 when absent; chunked: Transfer-Encoding chunked; keep_alive: from
    version and Connection; upgrade: the Upgrade value when Connection lists `upgrade`,
    else None; expect: `Expect: 100-continue`; xff, request_id, via: the client's values
    (None when absent; repeated fields joined with ", "); fields: the header lines to
    forward, each `name: value\\r\\n` (name as received, value with OWS trimmed), without
    Host, framing, hop-by-hop, Connection-named, Expect, X-Forwarded-*, X-Request-Id and
    Via; header_count: every header line of the head."""

    method: bytes
    target: bytes
    version: int
    host: bytes
    content_length: int
    chunked: bool
    keep_alive: bool
    upgrade: bytes | None
    expect: bool
    xff: bytes | None
    request_id: bytes | None
    via: bytes | None
    fields: bytes
    header_count: int

    def as_tuple(self) -> tuple:
        return tuple(self)


class ResponseHead(NamedTuple):
    """A validated upstream response head (immutable, a tuple like RequestHead).

    status, reason (bytes), version (10 or 11); keep_alive: the upstream connection may
    carry another request after this response's body; content_length: the body length to
    read (0 when the response has no body: 1xx, 204, 304, an answer to HEAD; -1 when
    chunked or close-delimited); chunked; close_delimited: the body ends when the upstream
    closes; head: the downstream head without its final blank line: `HTTP/1.1` plus the
    status line's rest as received, then the header lines as received minus hop-by-hop
    ones, Connection-named ones, Content-Length next to a chunked Transfer-Encoding, and
    Upgrade (kept in a 101). The caller appends its own framing lines and the CRLF."""

    status: int
    reason: bytes
    version: int
    keep_alive: bool
    content_length: int
    chunked: bool
    close_delimited: bool
    head: bytes

    def as_tuple(self) -> tuple:
        return tuple(self)


def _table(chars: bytes) -> bytes:
    """A 256-byte membership table (1 = allowed) for indexing by byte value."""
    t = bytearray(256)
    for c in chars:
        t[c] = 1
    return bytes(t)


_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# RFC 9110 5.6.2: tchar
TOKEN = _table(b"!#$%&'*+-.^_`|~" + _ALNUM)
# Methods: tokens of uppercase letters, '-' and '_' (nginx's rule; llhttp accepts only its
# registry). Lowercase or other token characters are refused with 400.
METHOD = _table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ-_")
# RFC 9110 5.5: field-vchar (VCHAR / obs-text) plus SP and HTAB inside a value
FIELD_VCHAR = _table(bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100)) + b" \t")
# request-target bytes: visible ASCII except '#' (a fragment is no part of a request target,
# RFC 9112 3.2); no CTL, SP or obs-text
TARGET = _table(bytes(c for c in range(0x21, 0x7F) if c != 0x23))
# RFC 3986 reg-name / IPv4address: unreserved, pct-encoded ('%'), sub-delims
HOST_CHARS = _table(_ALNUM + b"-._~%!$&'()*+,;=")

# Request header names never copied into `fields` (lowercase): framing, hop-by-hop
# (RFC 9110 7.6.1), and the ones the gateway writes itself.
REQUEST_DROP = frozenset((
    b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive",
    b"proxy-connection", b"te", b"trailer", b"upgrade", b"proxy-authorization",
    b"proxy-authenticate", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
    b"x-request-id", b"via", b"expect"))
# Response header names removed from the downstream head (Upgrade is kept in a 101).
RESPONSE_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                          b"proxy-authenticate", b"transfer-encoding", b"upgrade"))
# Fields a trailer section must not carry (RFC 9110 6.5.1: framing is decided by the header section).
TRAILER_FORBIDDEN = frozenset((b"content-length", b"transfer-encoding"))
# Connection tokens that are options, not header names to remove.
CONNECTION_KEYWORDS = frozenset((b"close", b"keep-alive", b"upgrade"))


def drop_named_lines(block: bytes, names: set[bytes] | frozenset[bytes]) -> bytes:
    """Header lines (each ending CRLF, names as received) minus those whose lowercased
    name is in `names`: the rare Connection-named headers, removed after the one pass."""
    kept = [line for line in block.split(b"\r\n")
            if line and line.split(b":", 1)[0].lower() not in names]
    return b"".join(line + b"\r\n" for line in kept)
