"""Malformed, smuggling and valid-but-tricky requests (see the package docstring).

Sources, cited by short name per case:
- RFC 9112 (HTTP/1.1 message syntax) and RFC 9110 (semantics), by section.
- llhttp's own test suite (test/request/*.md in nodejs/llhttp), by file name.
- Kettle 2019: James Kettle, "HTTP Desync Attacks: Request Smuggling Reborn" (PortSwigger
  research, 2019): the CL.TE / TE.CL families and the TE.TE header obfuscations.
- Kettle 2025: James Kettle, "HTTP/1.1 must die: the desync endgame" (PortSwigger research,
  2025): 0.CL, Expect-based desyncs, header-name and line-ending variants.
- Garden: the HTTP Garden differential fuzzer's published findings (Kallus, Moore et al.,
  2024), on chunk sizes, line endings, whitespace and Host.
- Funky chunks: "Funky chunks: abusing ambiguous chunk line terminators for request
  smuggling" (Jeppe Bonde Weikop, 2025), on chunk extensions and bare-LF/CR terminators.
- Watchfire 2005: Linhart, Klein, Heled, Orrin, "HTTP Request Smuggling" (the original
  double Content-Length and CL+TE cases).
"""
from __future__ import annotations

from . import HOST, RequestCase

H = b"Host: " + HOST + b"\r\n"
E400 = frozenset({400})
TE_BAD = frozenset({400, 501})  # a transfer coding we cannot or must not apply
VERSION_BAD = frozenset({400, 505})
SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"

REQUESTS: list[RequestCase] = []


def bad(name: str, raw: bytes, source: str, codes: frozenset[int] = E400,
        forwarded: tuple[bytes, ...] = ()) -> None:
    """A request the gateway must refuse (after serving `forwarded`), then close."""
    REQUESTS.append(RequestCase(name, raw, source, forwarded, codes, True))


def ok(name: str, raw: bytes, source: str, *targets: bytes, closes: bool = False) -> None:
    """Valid bytes: exactly `targets` reach the backend."""
    REQUESTS.append(RequestCase(name, raw, source, targets, frozenset(), closes))


def post(headers: bytes, body: bytes, *, line: bytes = b"POST /ok HTTP/1.1") -> bytes:
    return line + b"\r\n" + H + headers + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked\r\n"

# --- request line (RFC 9112 §3) -----------------------------------------------------------
bad("method-lowercase-unknown", b"get /ok HTTP/1.1\r\n" + H + b"\r\n", "llhttp method.md", frozenset({400, 501}))
bad("method-with-non-token-char", b"G(T /ok HTTP/1.1\r\n" + H + b"\r\n", "RFC 9112 §3.1 (method = token)")
bad("method-empty", b" /ok HTTP/1.1\r\n" + H + b"\r\n", "RFC 9112 §3")
bad("tab-separator", b"GET\t/ok HTTP/1.1\r\n" + H + b"\r\n", "Garden (whitespace in request line)")
bad("trailing-space-after-version", b"GET /ok HTTP/1.1 \r\n" + H + b"\r\n", "llhttp invalid.md")
bad("space-in-target", b"GET /ok /smuggled HTTP/1.1\r\n" + H + b"\r\n", "RFC 9112 §3.2 (no whitespace in target)")
bad("nul-in-target", b"GET /ok\x00 HTTP/1.1\r\n" + H + b"\r\n", "llhttp uri.md")
bad("control-char-in-target", b"GET /ok\x01x HTTP/1.1\r\n" + H + b"\r\n", "llhttp uri.md")
bad("cr-in-target", b"GET /ok\rx HTTP/1.1\r\n" + H + b"\r\n", "Garden (bare CR)")
bad("missing-target", b"GET HTTP/1.1\r\n" + H + b"\r\n", "RFC 9112 §3", VERSION_BAD)
bad("http09-no-version", b"GET /ok\r\n" + H + b"\r\n", "RFC 9112 §2.3 (HTTP/0.9 is not served)", VERSION_BAD)
bad("version-lowercase", b"GET /ok http/1.1\r\n" + H + b"\r\n", "RFC 9112 §2.3 (HTTP-name is case-sensitive)", VERSION_BAD)
bad("version-two-digit-major", b"GET /ok HTTP/11.1\r\n" + H + b"\r\n", "RFC 9112 §2.3 (one digit each)", VERSION_BAD)
bad("version-leading-zero", b"GET /ok HTTP/01.1\r\n" + H + b"\r\n", "RFC 9112 §2.3", VERSION_BAD)
bad("version-missing-minor", b"GET /ok HTTP/1\r\n" + H + b"\r\n", "RFC 9112 §2.3", VERSION_BAD)
bad("version-3", b"GET /ok HTTP/3.0\r\n" + H + b"\r\n", "llhttp invalid.md (unsupported major)", VERSION_BAD)
bad("version-garbage", b"GET /ok HTTP/1.x\r\n" + H + b"\r\n", "RFC 9112 §2.3", VERSION_BAD)
bad("request-line-bare-lf", b"GET /ok HTTP/1.1\n" + H + b"\r\n", "Kettle 2025 / RFC 9112 §2.2 (we do not accept bare LF)")
bad("request-line-bare-cr", b"GET /ok HTTP/1.1\r" + H + b"\r\n", "RFC 9112 §2.2 (bare CR is invalid)")
bad("absolute-form-unknown-scheme", b"GET ftp://corpus.example/ok HTTP/1.1\r\n" + H + b"\r\n",
    "RFC 9112 §3.2.2")
bad("absolute-form-host-with-userinfo", b"GET http://user@corpus.example/ok HTTP/1.1\r\n" + H + b"\r\n",
    "RFC 9110 §4.2.4 (userinfo is not allowed in http URIs)")
bad("authority-form-connect", b"CONNECT corpus.example:443 HTTP/1.1\r\n" + H + b"\r\n",
    "RFC 9112 §3.2.3 (CONNECT is not proxied here)", frozenset({400, 405, 501}))
bad("authority-form-on-get", b"GET corpus.example:80 HTTP/1.1\r\n" + H + b"\r\n",
    "RFC 9112 §3.2.3 (authority form only for CONNECT)")
bad("request-line-too-long", b"GET /ok" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "RFC 9112 §3 (414 for a long target)", frozenset({414, 431}))
bad("request-line-only-garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    "llhttp invalid.md (TLS on the plain port)")

# --- header fields (RFC 9112 §5) -------------------------------------------------------------
bad("space-before-colon", b"GET /ok HTTP/1.1\r\nHost : corpus.example\r\n\r\n",
    "RFC 9112 §5.1 (MUST reject whitespace before colon)")
bad("tab-before-colon", b"GET /ok HTTP/1.1\r\n" + H + b"X-A\t: 1\r\n\r\n", "RFC 9112 §5.1")
bad("obs-fold", b"GET /ok HTTP/1.1\r\n" + H + b"X-A: 1\r\n 2\r\n\r\n", "RFC 9112 §5.2 (we reject obs-fold)")
bad("obs-fold-tab", b"GET /ok HTTP/1.1\r\n" + H + b"X-A: 1\r\n\t2\r\n\r\n", "RFC 9112 §5.2")
bad("first-header-folded", b"GET /ok HTTP/1.1\r\n X-A: 1\r\n" + H + b"\r\n",
    "RFC 9112 §2.2 (whitespace between start line and first field)")
bad("header-name-with-space", b"GET /ok HTTP/1.1\r\n" + H + b"X A: 1\r\n\r\n", "RFC 9110 §5.1 (field-name = token)")
bad("header-name-with-paren", b"GET /ok HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n", "RFC 9110 §5.1")
bad("header-name-with-at", b"GET /ok HTTP/1.1\r\n" + H + b"X@A: 1\r\n\r\n", "RFC 9110 §5.1")
bad("header-name-empty", b"GET /ok HTTP/1.1\r\n" + H + b": 1\r\n\r\n", "llhttp invalid.md")
bad("header-without-colon", b"GET /ok HTTP/1.1\r\n" + H + b"X-A\r\n\r\n", "llhttp invalid.md")
bad("nul-in-header-value", b"GET /ok HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", "RFC 9110 §5.5 (NUL MUST be rejected)")
bad("bare-cr-in-header-value", b"GET /ok HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", "RFC 9110 §5.5 (bare CR)")
bad("bare-lf-between-headers", b"GET /ok HTTP/1.1\r\n" + H + b"X-A: 1\nX-B: 2\r\n\r\n", "Kettle 2025 (bare LF)")
bad("bare-lf-hides-header", b"GET /ok HTTP/1.1\r\n" + H + b"X-A: 1\nContent-Length: 40\r\n\r\n",
    "Kettle 2025 (a line only an LF-splitting parser sees)")
bad("head-ends-with-lf-lf", b"GET /ok HTTP/1.1\n" + H[:-2] + b"\n\n", "Garden (LF-only head)")
bad("head-ends-cr-lf-lf", b"GET /ok HTTP/1.1\r\n" + H + b"\n", "Garden (CRLF LF end)")
bad("control-char-in-header-value", b"GET /ok HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", "RFC 9110 §5.5")
bad("header-name-non-ascii", b"GET /ok HTTP/1.1\r\n" + H + b"X-\xe9: 1\r\n\r\n", "RFC 9110 §5.1")
bad("headers-too-large", b"GET /ok HTTP/1.1\r\n" + H + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 1000)
                                                                for i in range(70)) + b"\r\n",
    "RFC 6585 §5 (431)", frozenset({431}))
bad("single-header-too-large", b"GET /ok HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 70000 + b"\r\n\r\n",
    "RFC 6585 §5 (431)", frozenset({431}))

# --- Host (RFC 9112 §3.2, RFC 9110 §7.2) -------------------------------------------------------
bad("host-missing", b"GET /ok HTTP/1.1\r\nX-A: 1\r\n\r\n", "RFC 9112 §3.2 (MUST 400 without Host)")
bad("host-twice-same-value", b"GET /ok HTTP/1.1\r\n" + H + H + b"\r\n", "RFC 9112 §3.2 (more than one Host: 400)")
bad("host-twice-different", b"GET /ok HTTP/1.1\r\n" + H + b"Host: other.example\r\n\r\n", "RFC 9112 §3.2")
bad("host-twice-case-variant", b"GET /ok HTTP/1.1\r\n" + H + b"hOST: other.example\r\n\r\n", "Garden (Host case)")
bad("host-with-space", b"GET /ok HTTP/1.1\r\nHost: corpus.example other\r\n\r\n", "RFC 9112 §3.2 (uri-host[:port])")
bad("host-with-path", b"GET /ok HTTP/1.1\r\nHost: corpus.example/smuggled\r\n\r\n", "RFC 9112 §3.2")
bad("host-with-userinfo", b"GET /ok HTTP/1.1\r\nHost: user@corpus.example\r\n\r\n", "RFC 9112 §3.2")
bad("host-bad-port", b"GET /ok HTTP/1.1\r\nHost: corpus.example:80x\r\n\r\n", "RFC 9112 §3.2 (port = *DIGIT)")
bad("host-two-ports", b"GET /ok HTTP/1.1\r\nHost: corpus.example:80:81\r\n\r\n", "RFC 9112 §3.2")
bad("host-list", b"GET /ok HTTP/1.1\r\nHost: other.example, corpus.example\r\n\r\n", "Garden (Host lists)")
bad("host-ipv6-unterminated", b"GET /ok HTTP/1.1\r\nHost: [::1\r\n\r\n", "RFC 3986 §3.2.2 (IP-literal)")
bad("host-non-ascii", b"GET /ok HTTP/1.1\r\nHost: corpus\xe9.example\r\n\r\n", "RFC 3986 §3.2.2 (reg-name)")
bad("host-bad-percent", b"GET /ok HTTP/1.1\r\nHost: corpus%zz.example\r\n\r\n", "RFC 3986 §2.1 (pct-encoded)")
bad("host-with-query", b"GET /ok HTTP/1.1\r\nHost: corpus.example?x\r\n\r\n", "RFC 9112 §3.2")
bad("host-with-backslash", b"GET /ok HTTP/1.1\r\nHost: corpus.example\\x\r\n\r\n", "Garden (Host)")
bad("host-inner-tab", b"GET /ok HTTP/1.1\r\nHost: corpus.example\t:80\r\n\r\n", "RFC 9112 §3.2")

# --- Content-Length (RFC 9112 §6.2, §6.3) -------------------------------------------------------
bad("cl-non-numeric", post(b"Content-Length: abc\r\n", b""), "llhttp content-length.md")
bad("cl-negative", post(b"Content-Length: -1\r\n", b""), "llhttp content-length.md")
bad("cl-plus-sign", post(b"Content-Length: +3\r\n", b"abc"), "Garden (CL sign)")
bad("cl-hex", post(b"Content-Length: 0x3\r\n", b"abc"), "Garden (CL forms)")
bad("cl-underscore", post(b"Content-Length: 1_0\r\n", b"0123456789"), "Garden (CL forms Python int() accepts)")
bad("cl-inner-space", post(b"Content-Length: 1 0\r\n", b"0123456789"), "llhttp content-length.md")
bad("cl-list-same", post(b"Content-Length: 3, 3\r\n", b"abc"), "RFC 9112 §6.3 item 5 (we reject lists)")
bad("cl-list-different", post(b"Content-Length: 3, 30\r\n", b"abc"), "RFC 9112 §6.3 item 5")
bad("cl-twice-different", post(b"Content-Length: 3\r\nContent-Length: 30\r\n", b"abc"),
    "Watchfire 2005 (double Content-Length)")
bad("cl-twice-same", post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
    "llhttp content-length.md (duplicate Content-Length)")
bad("cl-overflow", post(b"Content-Length: 18446744073709551616\r\n", b"abc"),
    "llhttp content-length.md (overflow)", frozenset({400, 413}))
bad("cl-empty", post(b"Content-Length: \r\n", b""), "llhttp content-length.md")
bad("cl-space-before-colon-0cl", b"GET /ok HTTP/1.1\r\n" + H + b"Content-Length : 44\r\n\r\n" + SMUGGLED,
    "Kettle 2025 (0.CL: a Content-Length one side ignores)")
bad("cl-unicode-digit", post(b"Content-Length: \xd9\xa3\r\n", b"abc"), "Garden (non-ASCII digits)")

# --- Transfer-Encoding (RFC 9112 §6.1, §6.3, §7) ------------------------------------------------
bad("cl-te", post(b"Content-Length: 6\r\n" + CHUNKED, b"0\r\n\r\nG"), "Kettle 2019 (CL.TE)")
bad("te-cl", post(CHUNKED + b"Content-Length: 3\r\n", b"8\r\nSMUGGLED\r\n0\r\n\r\n"), "Kettle 2019 (TE.CL)")
bad("cl-te-smuggled-get", post(b"Content-Length: 49\r\n" + CHUNKED, b"0\r\n\r\n" + SMUGGLED),
    "Kettle 2019 (CL.TE with a whole hidden request)")
bad("te-xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)", TE_BAD)
bad("te-space-before-colon", post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)")
bad("te-tab-before-colon", post(b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)")
bad("te-leading-space-name", post(b" Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)")
bad("te-folded-after-header", post(b"X: X\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)")
bad("te-value-folded", post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)")
bad("te-lf-before-colon", post(b"Transfer-Encoding\n: chunked\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)")
bad("te-bare-lf-line", post(b"X: X\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)")
bad("te-chunked-then-x", post(CHUNKED + b"Transfer-Encoding: x\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)", TE_BAD)
bad("te-chunked-twice-one-field", post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
    "RFC 9112 §6.1 (chunked at most once)", TE_BAD)
bad("te-chunked-twice-two-fields", post(CHUNKED + CHUNKED, b"0\r\n\r\n"), "RFC 9112 §6.1 (chunked at most once)",
    TE_BAD)
bad("te-chunked-not-last", post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
    "RFC 9112 §6.3 item 4 (chunked not final: 400)", TE_BAD)
bad("te-identity", post(b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"), "RFC 9112 §6.1 (identity is gone)", TE_BAD)
bad("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
    "RFC 9112 §6.1 (a coding we do not apply: 501)", TE_BAD)
bad("te-quoted", post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), "Garden (quoted coding)", TE_BAD)
bad("te-vertical-tab", post(b"Transfer-Encoding: chunked\x0b\r\n", b"0\r\n\r\n"), "Garden (odd whitespace)", TE_BAD)
bad("te-form-feed", post(b"Transfer-Encoding: \x0cchunked\r\n", b"0\r\n\r\n"), "Garden (odd whitespace)", TE_BAD)
bad("te-nul", post(b"Transfer-Encoding: chunked\x00\r\n", b"0\r\n\r\n"), "Garden (NUL)", TE_BAD)
bad("te-chunk-truncated", post(b"Transfer-Encoding: chunk\r\n", b"0\r\n\r\n"), "Kettle 2019 (TE.TE)", TE_BAD)
bad("te-in-http10", post(CHUNKED, b"0\r\n\r\n", line=b"POST /ok HTTP/1.0"),
    "RFC 9112 §6.1 (TE in HTTP/1.0: faulty framing, close)")
bad("te-in-http10-smuggle", post(b"Connection: keep-alive\r\n" + CHUNKED,
                                 b"0\r\n\r\n" + SMUGGLED, line=b"POST /ok HTTP/1.0"),
    "RFC 9112 §6.1 (TE in HTTP/1.0 with keep-alive)")

# --- chunked bodies (RFC 9112 §7.1) ---------------------------------------------------------------
bad("chunk-size-0x", post(CHUNKED, b"0x3\r\nabc\r\n0\r\n\r\n"), "Garden (chunk-size forms)")
bad("chunk-size-leading-space", post(CHUNKED, b" 3\r\nabc\r\n0\r\n\r\n"), "Garden (chunk-size whitespace)")
bad("chunk-size-negative", post(CHUNKED, b"-3\r\nabc\r\n0\r\n\r\n"), "llhttp transfer-encoding.md")
bad("chunk-size-plus", post(CHUNKED, b"+3\r\nabc\r\n0\r\n\r\n"), "Garden (chunk-size forms)")
bad("chunk-size-underscore", post(CHUNKED, b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n"), "Garden (chunk-size forms)")
bad("chunk-size-overflow", post(CHUNKED, b"10000000000000000\r\nabc\r\n0\r\n\r\n"),
    "llhttp transfer-encoding.md (chunk size overflow)", frozenset({400, 413}))
bad("chunk-size-empty", post(CHUNKED, b"\r\nabc\r\n0\r\n\r\n"), "llhttp transfer-encoding.md")
bad("chunk-size-non-hex", post(CHUNKED, b"g\r\nabc\r\n0\r\n\r\n"), "llhttp transfer-encoding.md")
bad("chunk-data-too-long", post(CHUNKED, b"3\r\nabcdef\r\n0\r\n\r\n"), "Kettle 2019 (chunk size vs data)")
bad("chunk-data-no-crlf", post(CHUNKED, b"3\r\nabc0\r\n\r\n"), "Garden (missing chunk CRLF)")
bad("chunk-data-bare-lf", post(CHUNKED, b"3\r\nabc\n0\r\n\r\n"), "Funky chunks (LF-only chunk end)")
bad("chunk-size-bare-lf", post(CHUNKED, b"3\nabc\r\n0\r\n\r\n"), "Funky chunks (LF-only size line)")
bad("chunk-size-bare-cr", post(CHUNKED, b"3\rabc\r\n0\r\n\r\n"), "Funky chunks (CR-only size line)")
bad("chunk-ext-bare-lf", post(CHUNKED, b"3;x\nabc\r\n0\r\n\r\n"), "Funky chunks (LF inside an extension)")
bad("chunk-ext-bare-cr", post(CHUNKED, b"3;x\rabc\r\n0\r\n\r\n"), "Funky chunks (CR inside an extension)")
bad("chunk-ext-hides-chunk", post(CHUNKED, b"2;\n2c\r\nxx\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"),
    "Funky chunks (an extension that one parser ends at LF)")
bad("chunk-ext-control-char", post(CHUNKED, b"3;a\x01b\r\nabc\r\n0\r\n\r\n"), "RFC 9112 §7.1.1 (chunk-ext = token)")
bad("chunk-ext-nul", post(CHUNKED, b"3;a=\x00\r\nabc\r\n0\r\n\r\n"), "RFC 9112 §7.1.1")
bad("chunk-ext-unterminated-quote", post(CHUNKED, b'3;a="b\r\nabc\r\n0\r\n\r\n'), "RFC 9112 §7.1.1 (quoted-string)")
bad("last-chunk-bare-lf-term", post(CHUNKED, b"0\n\r\n" + SMUGGLED),
    "Kettle 2025 / Funky chunks (the TERM trick: LF ends the last chunk)")
bad("last-chunk-lf-lf", post(CHUNKED, b"0\r\n\n" + SMUGGLED), "Funky chunks (LF-only end of trailers)")
bad("trailer-name-with-space", post(CHUNKED, b"0\r\nX T: 1\r\n\r\n"), "RFC 9112 §7.1.2 (trailers are fields)")
bad("trailer-bare-lf", post(CHUNKED, b"0\r\nX-T: 1\n\r\n"), "Funky chunks (trailer line ends)")
bad("trailer-obs-fold", post(CHUNKED, b"0\r\nX-T: 1\r\n 2\r\n\r\n"), "RFC 9112 §5.2")

# --- Expect (RFC 9110 §10.1.1) and upgrades ----------------------------------------------------------
bad("expect-unknown", post(b"Content-Length: 3\r\nExpect: 200-ok\r\n", b"abc"), "RFC 9110 §10.1.1 (417)",
    frozenset({417}))
bad("expect-obfuscated", post(b"Content-Length: 3\r\nExpect: y 100-continue\r\n", b"abc"),
    "Kettle 2025 (Expect-based desync: obfuscated Expect)", frozenset({417}))
bad("expect-folded", post(b"Content-Length: 3\r\nExpect:\r\n 100-continue\r\n", b"abc"),
    "Kettle 2025 (Expect-based desync: folded Expect)")

# --- pipelines where a later request is bad --------------------------------------------------------
bad("pipelined-then-cl-te", b"GET /ok/1 HTTP/1.1\r\n" + H + b"\r\n" + post(b"Content-Length: 6\r\n" + CHUNKED,
                                                                        b"0\r\n\r\nG"),
    "Kettle 2019 (CL.TE behind a good request)", forwarded=(b"/ok/1",))
bad("body-then-garbage", post(b"Content-Length: 3\r\n", b"abcGARBAGE\r\n\r\n"),
    "llhttp pipelining.md (bytes after a body are the next request)", forwarded=(b"/ok",))
bad("underscore-te-then-chunk-line", post(b"Transfer_Encoding: chunked\r\n", b"0\r\n\r\n"),
    "Kettle 2025 (header-name variants: Transfer_Encoding is just a field; its body is the next request)",
    forwarded=(b"/ok",))

# --- valid but tricky: these must work ----------------------------------------------------------------
ok("simple-get", b"GET /ok HTTP/1.1\r\n" + H + b"\r\n", "RFC 9112 §3", b"/ok")
ok("pipelined-two", b"GET /ok/1 HTTP/1.1\r\n" + H + b"\r\nGET /ok/2 HTTP/1.1\r\n" + H + b"\r\n",
   "llhttp pipelining.md", b"/ok/1", b"/ok/2")
ok("pipelined-three-with-bodies", post(b"Content-Length: 3\r\n", b"abc", line=b"POST /ok/1 HTTP/1.1")
   + post(CHUNKED, b"3\r\nabc\r\n0\r\n\r\n", line=b"POST /ok/2 HTTP/1.1") + b"GET /ok/3 HTTP/1.1\r\n" + H + b"\r\n",
   "llhttp pipelining.md", b"/ok/1", b"/ok/2", b"/ok/3")
ok("get-with-body-holding-a-request", b"GET /ok HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED)
   + SMUGGLED, "Kettle 2025 (0.CL: a GET body must be read as a body)", b"/ok")
ok("chunked-body-holding-a-request", post(CHUNKED, b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)),
   "Kettle 2019 (hidden request inside chunk data)", b"/ok")
ok("chunked-with-trailers", post(CHUNKED, b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n"),
   "RFC 9112 §7.1.2 (trailer section)", b"/ok")
bad("chunked-trailer-named-content-length", post(CHUNKED, b"3\r\nabc\r\n0\r\nContent-Length: 40\r\n\r\n"),
    "RFC 9110 §6.5.1 / llhttp (a framing field in trailers is refused outright)")
ok("chunked-trailer-named-host", post(CHUNKED, b"3\r\nabc\r\n0\r\nHost: other.example\r\n\r\n"),
   "RFC 9110 §6.5.1 (trailers never route the message)", b"/ok")
ok("chunked-with-extensions", post(CHUNKED, b"3;name=value\r\nabc\r\n2;flag\r\nde\r\n0;last=1\r\n\r\n"),
   "RFC 9112 §7.1.1 (chunk extensions)", b"/ok")
ok("chunked-extension-quoted", post(CHUNKED, b'3;name="v a;l"\r\nabc\r\n0\r\n\r\n'),
   "RFC 9112 §7.1.1 (quoted-string extension value)", b"/ok")
ok("chunked-coding-uppercase", post(b"Transfer-Encoding: CHUNKED\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
   "RFC 9112 §7 (coding names are case-insensitive)", b"/ok")
ok("chunked-size-uppercase-hex", post(CHUNKED, b"A\r\n0123456789\r\n0\r\n\r\n"), "RFC 9112 §7.1", b"/ok")
ok("chunked-size-leading-zeros", post(CHUNKED, b"0003\r\nabc\r\n0\r\n\r\n"), "RFC 9112 §7.1 (1*HEXDIG)", b"/ok")
ok("expect-100-continue", post(b"Content-Length: 3\r\nExpect: 100-continue\r\n", b"abc"),
   "RFC 9110 §10.1.1", b"/ok")
ok("expect-100-continue-mixed-case", post(b"Content-Length: 3\r\nExpect: 100-Continue\r\n", b"abc"),
   "RFC 9110 §10.1.1 (case-insensitive)", b"/ok")
ok("absolute-form", b"GET http://corpus.example/ok HTTP/1.1\r\n" + H + b"\r\n", "RFC 9112 §3.2.2", b"/ok")
ok("absolute-form-overrides-host", b"GET http://corpus.example/ok HTTP/1.1\r\nHost: other.example\r\n\r\n",
   "RFC 9112 §3.2.2 (the target's authority wins over Host)", b"/ok")
ok("double-space-after-method", b"GET  /ok HTTP/1.1\r\n" + H + b"\r\n",
   "RFC 9112 §3 (MAY parse on whitespace boundaries; the line is rewritten upstream)", b"/ok")
ok("leading-empty-line", b"\r\nGET /ok HTTP/1.1\r\n" + H + b"\r\n", "RFC 9112 §2.2 (SHOULD ignore one CRLF)", b"/ok")
ok("host-with-port", b"GET /ok HTTP/1.1\r\nHost: corpus.example:80\r\n\r\n", "RFC 9112 §3.2", b"/ok")
ok("host-uppercase", b"GET /ok HTTP/1.1\r\nHost: CORPUS.Example\r\n\r\n", "RFC 3986 §3.2.2 (case-insensitive)", b"/ok")
ok("header-value-obs-text", b"GET /ok HTTP/1.1\r\n" + H + b"X-A: caf\xe9\r\n\r\n", "RFC 9110 §5.5 (obs-text)", b"/ok")
ok("header-value-ows", b"GET /ok HTTP/1.1\r\n" + H + b"X-A: \t v \t\r\n\r\n", "RFC 9110 §5.5 (OWS trimmed)", b"/ok")
ok("te-with-ows", post(b"Transfer-Encoding: \t chunked  \r\n", b"3\r\nabc\r\n0\r\n\r\n"), "RFC 9110 §5.5", b"/ok")
ok("cl-zero-then-pipelined", post(b"Content-Length: 0\r\n", b"", line=b"POST /ok/1 HTTP/1.1")
   + b"GET /ok/2 HTTP/1.1\r\n" + H + b"\r\n", "llhttp pipelining.md", b"/ok/1", b"/ok/2")
ok("http10-with-cl", post(b"Content-Length: 3\r\n", b"abc", line=b"POST /ok HTTP/1.0"), "RFC 9112 §6.3", b"/ok",
   closes=True)
ok("connection-close", b"GET /ok HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n", "RFC 9112 §9.6", b"/ok",
   closes=True)
ok("upgrade-declined-hides-nothing", b"GET /ok HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
   b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" + SMUGGLED,
   "issue 13 / Kettle 2019 (bytes behind an Upgrade head before the 101)", b"/ok", closes=True)
ok("h2c-upgrade-declined-hides-nothing", b"GET /ok HTTP/1.1\r\n" + H + b"Connection: Upgrade, HTTP2-Settings\r\n"
   b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n" + SMUGGLED,
   "issue 13 (h2c upgrade smuggling)", b"/ok", closes=True)

__all__ = ["REQUESTS"]
