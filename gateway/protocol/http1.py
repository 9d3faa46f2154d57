"""HTTP/1.1 constants and the responses the gateway generates itself.

Precomputed so the request path only concatenates bytes: status lines, header names that
need attention, and the short plain-text error responses every generated answer uses.
"""
from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

# Request header names (lowercase) the proxy handles itself instead of copying through.
H_HOST = 1
H_CONTENT_LENGTH = 2
H_TRANSFER_ENCODING = 3
H_CONNECTION = 4
H_HOP = 5  # dropped: hop-by-hop
H_XFF = 6
H_XFP = 7  # dropped: we set our own
H_XFH = 8  # dropped: we set our own
H_REQUEST_ID = 9
H_VIA = 10
H_EXPECT = 11
H_UPGRADE = 12

REQUEST_SPECIAL: dict[bytes, int] = {
    b"host": H_HOST,
    b"content-length": H_CONTENT_LENGTH,
    b"transfer-encoding": H_TRANSFER_ENCODING,
    b"connection": H_CONNECTION,
    b"keep-alive": H_HOP,
    b"proxy-connection": H_HOP,
    b"te": H_HOP,
    b"trailer": H_HOP,
    b"proxy-authorization": H_HOP,
    b"proxy-authenticate": H_HOP,
    b"upgrade": H_UPGRADE,
    b"x-forwarded-for": H_XFF,
    b"x-forwarded-proto": H_XFP,
    b"x-forwarded-host": H_XFH,
    b"x-request-id": H_REQUEST_ID,
    b"via": H_VIA,
    b"expect": H_EXPECT,
}

# Response header lines the proxy removes (hop-by-hop, RFC 9110 7.6.1) or frames itself,
# searched for in the lowercased header block: one C-level scan per response head.
RESPONSE_HOP = re.compile(
    rb"\n(connection|keep-alive|proxy-connection|te|trailer|proxy-authenticate|transfer-encoding|upgrade):")
MAX_RESPONSE_HEAD = 64 * 1024

# Connection-header tokens that are not header names to strip.
CONNECTION_KEYWORDS = frozenset((b"close", b"keep-alive", b"upgrade"))


def host_name(host: bytes) -> bytes:
    """A Host header's name without its port ("[::1]:8080" -> "[::1]")."""
    if host[:1] == b"[":
        return host[:host.find(b"]") + 1]
    colon = host.find(b":")
    return host if colon < 0 else host[:colon]


def connection_tokens(value: bytes, into: list[bytes] | None) -> list[bytes] | None:
    """Header names a Connection header lists (they are hop-by-hop too), added to `into`."""
    for token in value.lower().split(b","):
        token = token.strip()
        if token and token not in CONNECTION_KEYWORDS:
            if into is None:
                into = []
            into.append(token)
    return into


def strip_response_hop(fields: bytes, low: bytes, code: int) -> tuple[bytes, bool]:
    """The response head minus hop-by-hop lines and the ones its Connection header names,
    and whether the body is chunked. `fields` runs from the status line (or its CRLF) to the
    last header's CRLF; `low` is it lowercased. Upgrade stays in a 101; a Content-Length
    next to Transfer-Encoding goes (RFC 9112 6.3: the transfer coding wins)."""
    kept: list[bytes] = []
    pos = 0
    chunked = False
    listed: list[bytes] | None = None
    for m in RESPONSE_HOP.finditer(low):
        name = m.group(1)
        if name == b"upgrade" and code == 101:
            continue
        eol = low.index(b"\r\n", m.end())
        if name == b"transfer-encoding":
            chunked = b"chunked" in low[m.end():eol]
        elif name == b"connection":
            listed = connection_tokens(low[m.end():eol], listed)
        kept.append(fields[pos:m.start() + 1])
        pos = eol + 2
    kept.append(fields[pos:])
    fields = b"".join(kept)
    if chunked and b"\ncontent-length:" in low:
        listed = (listed or []) + [b"content-length"]
    if listed:
        drop = set(listed)
        fields = b"\r\n".join(line for line in fields.split(b"\r\n")
                               if b":" not in line or line.split(b":", 1)[0].strip().lower() not in drop)
    return fields, chunked


IDEMPOTENT_METHODS = frozenset((b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"))

STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus
}


def status_line(code: int, reason: bytes = b"") -> bytes:
    """`HTTP/1.1 <code> <reason>`; the upstream's reason phrase is kept when it has one."""
    if not reason:
        line = STATUS_LINES.get(code)
        if line is not None:
            return line
    return b"HTTP/1.1 %d %s\r\n" % (code, reason)


class DateHeader:
    """`date: ...` header line rebuilt at most once a second (RFC 9110 asks for one)."""

    __slots__ = ("_second", "line")

    def __init__(self) -> None:
        self._second = -1
        self.line = b""
        self.refresh()

    def refresh(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self.line = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.line


DATE = DateHeader()


def error_response(code: int, reason: str, *, close: bool = False, request_id: bytes = b"",
                   extra: bytes = b"") -> bytes:
    """A short plain-text response the gateway generates, always carrying
    x-fleetgate-reason so clients and tests can tell it from an upstream's."""
    if code in (204, 304):  # no body allowed
        body = b""
        head = [status_line(code), DATE.line]
    else:
        body = f"{code} {HTTPStatus(code).phrase}: {reason}\n".encode()
        head = [status_line(code), DATE.line, b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(body)]
    head += [b"x-fleetgate-reason: ", reason.encode(), b"\r\n"]
    if request_id:
        head += [b"x-request-id: ", request_id, b"\r\n"]
    if extra:
        head.append(extra)
    if close:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
