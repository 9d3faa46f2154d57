"""Malformed upstream responses (see the package docstring): what a backend answers a GET
with. The gateway must never relay a malformed head, never reuse the connection, and never
let bytes after a response become the answer to someone else's request.

Sources: RFC 9112 by section; llhttp's test/response/*.md by file name; Garden and Kettle
as in requests.py.
"""
from __future__ import annotations

from . import ResponseCase

RESPONSES: list[ResponseCase] = []


def bad(name: str, raw: bytes, source: str) -> None:
    """A malformed head: the client gets 502."""
    RESPONSES.append(ResponseCase(name, raw, source, 502, False))


def cut(name: str, raw: bytes, source: str, status: int = 200) -> None:
    """A good head, a bad body: the client's connection is cut after the head."""
    RESPONSES.append(ResponseCase(name, raw, source, status, True))


def extra(name: str, raw: bytes, source: str, status: int = 200) -> None:
    """A complete good response followed by stray bytes: the client gets it whole, and the
    connection is not reused."""
    RESPONSES.append(ResponseCase(name, raw, source, status, False))


CL2 = b"Content-Length: 2\r\n"

bad("status-line-bare-lf", b"HTTP/1.1 200 OK\n" + CL2 + b"\r\nok", "RFC 9112 §2.2 / llhttp response/invalid.md")
bad("status-code-four-digits", b"HTTP/1.1 2000 OK\r\n" + CL2 + b"\r\nok", "RFC 9112 §4 (3DIGIT)")
bad("status-code-two-digits", b"HTTP/1.1 20 OK\r\n" + CL2 + b"\r\nok", "RFC 9112 §4 (3DIGIT)")
bad("status-code-non-digit", b"HTTP/1.1 2x0 OK\r\n" + CL2 + b"\r\nok", "RFC 9112 §4")
bad("status-code-missing", b"HTTP/1.1 OK\r\n" + CL2 + b"\r\nok", "RFC 9112 §4")
bad("version-garbage", b"HTTP/x.1 200 OK\r\n" + CL2 + b"\r\nok", "RFC 9112 §2.3")
bad("not-http-at-all", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "llhttp response/invalid.md")
bad("cl-twice-different", b"HTTP/1.1 200 OK\r\n" + CL2 + b"Content-Length: 20\r\n\r\nok",
    "RFC 9112 §6.3 item 5 (a response with conflicting lengths is unrecoverable)")
bad("cl-non-numeric", b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok", "llhttp response/content-length.md")
bad("cl-negative", b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", "llhttp response/content-length.md")
bad("cl-overflow", b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\nok",
    "llhttp response/content-length.md")
bad("space-before-colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", "RFC 9112 §5.1")
bad("obs-fold", b"HTTP/1.1 200 OK\r\n" + CL2 + b"X-A: 1\r\n 2\r\n\r\nok", "RFC 9112 §5.2")
bad("header-without-colon", b"HTTP/1.1 200 OK\r\n" + CL2 + b"X-A\r\n\r\nok", "llhttp response/invalid.md")
bad("nul-in-header", b"HTTP/1.1 200 OK\r\n" + CL2 + b"X-A: a\x00b\r\n\r\nok", "RFC 9110 §5.5")
bad("bare-cr-in-header", b"HTTP/1.1 200 OK\r\n" + CL2 + b"X-A: a\rb\r\n\r\nok", "RFC 9110 §5.5")
bad("header-name-non-token", b"HTTP/1.1 200 OK\r\n" + CL2 + b"X A: 1\r\n\r\nok", "RFC 9110 §5.1")
bad("head-too-large", b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))
    + CL2 + b"\r\nok", "nginx proxy_buffer_size (a head that never ends)")
bad("interim-then-garbage", b"HTTP/1.1 100 Continue\r\n\r\nGARBAGE\r\n\r\n", "llhttp response/invalid.md")
bad("bare-lf-between-headers", b"HTTP/1.1 200 OK\r\nX-A: 1\n" + CL2 + b"\r\nok", "Kettle 2025 (bare LF)")
cut("chunk-size-invalid", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    "llhttp response/transfer-encoding.md")
cut("chunk-data-no-crlf", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
    "Garden (missing chunk CRLF)")
cut("chunk-size-bare-lf", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n",
    "Funky chunks (LF-only size line)")
cut("body-shorter-than-cl", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nok",
    "RFC 9112 §8 (incomplete message)")
extra("bytes-after-complete-response", b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\nokHTTP/1.1 200 OK\r\n" + CL2
      + b"\r\nno", "issue 13 (a second response nobody asked for)")
extra("garbage-after-complete-response", b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\nokGARBAGE",
      "issue 13 (stray bytes after a response)")

__all__ = ["RESPONSES"]
