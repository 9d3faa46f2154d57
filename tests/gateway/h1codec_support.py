"""Helpers shared by the codec tests: run a head through an implementation, or through
httptools (llhttp) as the reference parser."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httptools

from gateway.codec.types import HeadError

MAX_LINE = 8 * 1024
MAX_HEADERS = 64 * 1024


def request(mod: ModuleType, raw: bytes) -> Any:
    """A RequestHead, a HeadError, or "incomplete" for one request head."""
    try:
        end = mod.head_end(raw, 0, MAX_LINE + MAX_HEADERS, line_limit=MAX_LINE)
        if end < 0:
            return "incomplete"
        return mod.parse_request(raw, 0, end, max_line=MAX_LINE, max_header_bytes=MAX_HEADERS)
    except HeadError as err:
        return err


def response(mod: ModuleType, raw: bytes, head_request: bool = False) -> Any:
    try:
        end = mod.head_end(raw, 0, MAX_HEADERS)
        if end < 0:
            return "incomplete"
        return mod.parse_response(raw, 0, end, head_request=head_request)
    except HeadError as err:
        return err


def chunked(mod: ModuleType, pieces: list[bytes], **kw: Any) -> tuple[bytes, bool, bytes, Any]:
    """(payload, done, leftover, error) from feeding `pieces` to a fresh ChunkedDecoder."""
    dec = mod.ChunkedDecoder(**kw)
    out: list[bytes] = []
    try:
        for piece in pieces:
            dec.feed(piece, out)
    except HeadError as err:
        return b"".join(out), dec.done, b"", (err.status, err.reason)
    return b"".join(out), dec.done, dec.leftover, None


@dataclass
class Llhttp:
    """What llhttp (via httptools) made of a head: accepted or not, and what it parsed."""

    accepted: bool = False
    error: str = ""
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    method: bytes = b""
    version: str = ""
    keep_alive: bool = False
    upgrade: bool = False
    parser: Any = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        # read here: once the message is complete llhttp has reset its flags
        self.accepted = True
        parser = self.parser
        self.version = parser.get_http_version()
        self.keep_alive = parser.should_keep_alive()
        if isinstance(parser, httptools.HttpRequestParser):
            self.method = parser.get_method()


def _llhttp(parser_class: Any, raw: bytes) -> Llhttp:
    rec = Llhttp()
    parser = rec.parser = parser_class(rec)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        rec.upgrade = True
    except httptools.HttpParserError as err:
        rec.accepted = False
        rec.error = str(err)
    return rec


def llhttp_request(raw: bytes) -> Llhttp:
    """What llhttp makes of a request head (the reference parser)."""
    return _llhttp(httptools.HttpRequestParser, raw)


def llhttp_response(raw: bytes) -> Llhttp:
    """What llhttp makes of a response head."""
    return _llhttp(httptools.HttpResponseParser, raw)


def same(a: Any, b: Any) -> bool:
    """Results of the two implementations agree: equal heads, or errors of equal status and reason."""
    if isinstance(a, HeadError) or isinstance(b, HeadError):
        return (isinstance(a, HeadError) and isinstance(b, HeadError)
                and (a.status, a.reason) == (b.status, b.reason))
    return bool(a == b)


def walk(mod: ModuleType, raw: bytes) -> tuple[list[bytes], Any]:
    """Run a client's byte stream through the codec as the proxy will: heads, bodies
    (Content-Length or chunked), pipelined requests. Returns the targets of the requests
    accepted and how it ended: None (all consumed), a HeadError, "incomplete", "closed"
    (a request that ends the connection) or "upgrade" (nothing after an Upgrade head is
    parsed before the upstream's 101)."""
    targets: list[bytes] = []
    pos = 0
    while pos < len(raw):
        try:
            end = mod.head_end(raw, pos, MAX_LINE + MAX_HEADERS, line_limit=MAX_LINE)
            if end < 0:
                return targets, "incomplete"
            head = mod.parse_request(raw, pos, end, max_line=MAX_LINE, max_header_bytes=MAX_HEADERS)
        except HeadError as err:
            return targets, err
        targets.append(head.target)
        pos = end
        if head.upgrade is not None:
            return targets, "upgrade"
        if head.chunked:
            dec = mod.ChunkedDecoder()
            try:
                dec.feed(raw[pos:])
            except HeadError as err:
                targets.pop()  # its body is bad: the request is refused
                return targets, err
            if not dec.done:
                return targets, "incomplete"
            pos = len(raw) - len(dec.leftover)
        elif head.content_length > 0:
            if pos + head.content_length > len(raw):
                return targets, "incomplete"
            pos += head.content_length
        if not head.keep_alive:
            return targets, "closed"
    return targets, None


def walk_same(a: tuple[list[bytes], Any], b: tuple[list[bytes], Any]) -> bool:
    return a[0] == b[0] and same(a[1], b[1])
