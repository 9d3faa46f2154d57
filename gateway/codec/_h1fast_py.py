"""The twin's front: the common heads in a few C-level calls, everything else to the rules.

`_http1_py` states every rule in the compiled module's order; this module only recognises
the heads that make up nearly all traffic and answers them without a Python step per header
line, giving the same result the rules would (tests/gateway/codec hold both to the
compiled codec). Anything it does not recognise goes to the rules unchanged, so a refused
head always gets the rules' error.

How, measured (callgrind, CPython 3.11): a C call costs hundreds of instructions, a pass
of `bytes.find`/`count`/`translate` ~5-7 per byte, a character class in `re` ~22 per byte
but a negated single byte (`[^\\r]`) ~6, and every header line the `re` engine repeats
over ~300-700. So:

- head_end finds the end with one `find` and proves "no bare CR or LF" with three counts
  (CRs = LFs = CRLFs); it remembers that proof for this buffer and head (`clean`).
- parse_request / parse_response, on a head head_end proved clean, take one `translate`
  that lowercases the head and turns every other CTL into CR: then a CTL is a CR that no
  LF follows, so `[^\\r]*+\\r\\n` validates a value, and header names can be told apart
  with lowercase literals. One `fullmatch` then validates the whole head and says where
  the few lines the codec reads are, for the common shapes: a request whose only field
  the gateway reads is Host (in canonical `name: value` form, so the forwarded lines are
  the received bytes), a response whose only such fields are at most one Content-Length
  and one `Connection: keep-alive|close`. Values come from the received bytes, by offset.

Measured (bench/h1_path_cpu.py --instructions, FLEETGATE_PURE_PYTHON=1): 128.7k -> 103.8k
instructions per proxied request at 3 headers, 154k -> 122.8k at 12. What is left is
CPython's floor for this shape: per head one regex call (~9k for a 6-line response: the
engine's ~500-800 per line plus its set-up), three counts and a find (~5k), and ~50
bytecodes with their slices and small objects (~10k).
"""
from __future__ import annotations

import re
from typing import Callable

from .types import RequestHead, ResponseHead

__all__ = ["fast_paths", "request_whole", "response_whole"]

_new = tuple.__new__
_CODES = {b"%d" % c: c for c in range(100, 1000)}

# Lowercase letters; every CTL but HTAB, CR and LF (and DEL) becomes CR.
_LOWER_CTL = bytes(c + 32 if 65 <= c <= 90 else 13 if (c < 32 and c not in (9, 10)) or c == 127 else c
                   for c in range(256))

_TCHL = rb"[!#$%&'*+\-.^_`|~0-9a-z]"  # tchar, lowercase (the head was lowercased)
# The request fields the codec reads (types.REQUEST_DROP) as a trie of lowercase literals:
# the engine rejects a line on its first letter or two.
_REQ_SPECIAL = (rb"c(?:on(?:nection|tent-length))|ex(?:pect)|host|keep-alive|proxy-(?:connection|authori[sz]ation"
                rb"|authenticate)|t(?:e|railer|ransfer-encoding)|upgrade|via|x-(?:forwarded-(?:for|proto|host)"
                rb"|request-id)")
# A forwarded line in canonical form: `name: value` with no OWS at either end of the value.
_PLAIN = rb"(?!(?:" + _REQ_SPECIAL + rb"):)" + _TCHL + rb"++: [^ \t\r][^\r]*+(?<![ \t])\r\n"
# The whole request head, lowercased: request line (origin form; CONNECT takes an authority),
# the header lines and the final CRLF, Host once (uri-host without '%' or '[', optional port).
# Groups: 1 method, 2 target, 3 Host's value. The caller checks the received bytes' case
# where the grammar needs it (the method's letters and "HTTP" are uppercase).
_REQUEST_HOST_ONLY = re.compile(rb"(?!connect )([a-z_\-]++) (/[\x21\x22\x24-\x7e]*+) http/1\.[01]\r\n(?:" + _PLAIN
                                + rb")*+host: ([a-z0-9\-._~!$&'()*+,;=]++(?::[0-9]*+)?)\r\n(?:" + _PLAIN + rb")*+\r\n")

# Response: the hop-by-hop fields and Content-Length (types.RESPONSE_HOP | content-length).
_RESP_SPECIAL = (rb"c(?:on(?:nection|tent-length))|keep-alive|proxy-(?:connection|authenticate)"
                 rb"|t(?:e|railer|ransfer-encoding)|upgrade")
_RPLAIN = rb"(?:(?!(?:" + _RESP_SPECIAL + rb"):)" + _TCHL + rb"++:[^\r]*+\r\n)*+"
_CL = rb"content-length:[ \t]*+([0-9]{1,18}+)[ \t]*+\r\n"
_CONN = rb"(connection:[ \t]*+(keep-alive|close)[ \t]*+\r\n)"
# The whole response head, lowercased: status line, at most one Content-Length and one
# Connection (either order), the final CRLF. Groups: 1 reason; 2 Content-Length, 3 the
# Connection line, 4 its value; 5-7 the same with Connection first (line, value, length).
_RESPONSE_COMMON = re.compile(rb"http/1\.[01] [1-9][0-9][0-9](?: ([^\r]*+))?\r\n" + _RPLAIN + rb"(?:" + _CL + _RPLAIN
                              + rb"(?:" + _CONN + _RPLAIN + rb")?|" + _CONN + _RPLAIN + rb"(?:" + _CL + _RPLAIN
                              + rb")?)?\r\n")


# The whole paths (request_whole / response_whole) have no proof from head_end, so their
# regexes validate every byte themselves: they run over `bytes.lower()` (~6 instructions a
# byte; translate ~9) and take a value as a field-vchar run, `[\t\x20-\x7e\x80-\xff]*+` (one
# bitmap test a byte, which refuses every CTL, DEL, CR and LF), so a CR or LF can only be a
# line's CRLF and no count or translate table is needed to prove it.
_VCHAR = rb"[\x21-\x7e\x80-\xff]"  # a field-vchar (no SP, HTAB, CTL, DEL)
_FIELD = rb"[\t\x20-\x7e\x80-\xff]*+"  # field-vchar / SP / HTAB, as many as there are
# A forwarded request line in canonical form (see _PLAIN), validated to the byte.
_LINE = rb"(?!(?:" + _REQ_SPECIAL + rb"):)" + _TCHL + rb"++: " + _VCHAR + _FIELD + rb"(?<![ \t])\r\n"
# The whole request head, lowercased, as _REQUEST_HOST_ONLY. Groups: 1 target, 2 the minor
# version when it is 1, 3 Host's value (the method is what precedes the target's SP).
_REQUEST_WHOLE = re.compile(rb"(?!connect )[a-z_\-]++ (/[\x21\x22\x24-\x7e]*+) http/1\.(?:0|(1))\r\n(?:" + _LINE
                            + rb")*+host: ([a-z0-9\-._~!$&'()*+,;=]++(?::[0-9]*+)?)\r\n(?:" + _LINE + rb")*+\r\n")
# The whole-response head for response_whole, lowercased, from the status line's 13th byte
# (its first 12 are looked up in _STATUS): like _RESPONSE_COMMON, but only a keep-alive
# Connection line (a `close` one is not reusable: the general way). Groups: 1 Content-Length,
# 2 the Connection line; 3-4 the same with Connection first (line, length).
_WPLAIN = rb"(?:(?!(?:" + _RESP_SPECIAL + rb"):)" + _TCHL + rb"++:" + _FIELD + rb"\r\n)*+"
_KA = rb"(connection:[ \t]*+keep-alive[ \t]*+\r\n)"
_RESPONSE_WHOLE = re.compile(rb"(?: " + _FIELD + rb")?\r\n" + _WPLAIN + rb"(?:" + _CL + _WPLAIN + rb"(?:" + _KA
                             + _WPLAIN + rb")?|" + _KA + _WPLAIN + rb"(?:" + _CL + _WPLAIN + rb")?)?\r\n")
# "HTTP/1.x NNN" -> the status, negative for HTTP/1.0: one dict lookup checks the name's
# case, the version and the code at once
_STATUS = {b"HTTP/1.%d %d" % (minor, code): code if minor else -code for minor in (0, 1) for code in range(100, 1000)}
_WHOLE_MAX = 8192  # a request longer than this (a head with its body, say) takes the general way
_SHORT_BODY = 128  # a body shorter than this is lowered with its head (cheaper than a slice)


def request_whole(buf: bytes, max_line: int, max_header_bytes: int) -> RequestHead | None:
    """head_end + parse_request for a buffer that is exactly one common request head, in one
    call (the request path's idle read, twin only): the RequestHead parse_request gives, or
    None for anything else, however valid (the caller then takes the general way, which
    parses it again and names any error). No proof from head_end is needed: the regex takes
    a CR or LF only in a line's CRLF, and no CTL or DEL at all (see _FIELD)."""
    if len(buf) > _WHOLE_MAX:
        return None
    h = _REQUEST_WHOLE.fullmatch(buf.lower())
    if h is None:
        return None
    _, (ta, tz), (v, _), (hs, he) = h.regs
    method = buf[:ta - 1]
    if (not method.isupper() or buf[tz + 1:tz + 5] != b"HTTP" or tz + 9 > max_line
            or len(buf) - 13 - tz > max_header_bytes):
        return None
    if hs == tz + 17:  # Host first: the lines after it
        fields = buf[he + 2:-2]
    else:
        fields = buf[tz + 11:hs - 6] + buf[he + 2:-2]
    if v > 0:  # HTTP/1.1
        return _new(RequestHead, (method, buf[ta:tz], 11, buf[hs:he], -1, False, True, None, False, None, None,
                                  None, fields, buf.count(b"\r\n") - 2))
    return _new(RequestHead, (method, buf[ta:tz], 10, buf[hs:he], -1, False, False, None, False, None, None,
                              None, fields, buf.count(b"\r\n") - 2))


def response_whole(data: bytes, head_request: bool) -> tuple[int, int, bytes] | None:
    """A whole reusable response in `data` (the upstream's idle read, twin only): (status,
    end of head, the downstream head) when head_end + parse_response would say its head ends
    at `end`, it is keep-alive, not chunked, and its body is exactly the rest of `data`
    (Content-Length, or none: 1xx, 204, 304, an answer to HEAD); else None, however valid
    (the caller takes the general way). Its regex alone refuses a bare CR or LF and every
    CTL (see _FIELD)."""
    end = data.find(b"\r\n\r\n") + 4
    if end > _WHOLE_MAX:
        return None
    status = _STATUS.get(data[:12])
    if status is None:
        return None
    r = _RESPONSE_WHOLE.fullmatch(data.lower() if len(data) - end < _SHORT_BODY else data[:end].lower(), 12, end)
    if r is None:
        return None
    _, (ca, cz), (la, lz), (la2, lz2), (ca2, cz2) = r.regs
    if ca < 0:  # (Connection first, or no Content-Length)
        ca, cz, la, lz = ca2, cz2, la2, lz2
    if status > 0:  # HTTP/1.1: keep-alive unless it says close (then no match)
        if head_request or status < 200 or status == 204 or status == 304:
            if end != len(data):
                return None
        elif ca < 0 or int(data[ca:cz]) != len(data) - end:
            return None
        if la < 0:
            return status, end, data[:end - 2]
        if lz == end - 2:  # the Connection line last
            return status, end, data[:la]
        return status, end, data[:la] + data[lz:end - 2]
    if la < 0:  # HTTP/1.0 without keep-alive
        return None
    status = -status
    if head_request or status < 200 or status == 204 or status == 304:
        if end != len(data):
            return None
    elif ca < 0 or int(data[ca:cz]) != len(data) - end:
        return None
    return status, end, b"HTTP/1.1" + data[8:la] + data[lz:end - 2]


def fast_paths(head_end_rules: Callable[..., int], parse_request_rules: Callable[..., RequestHead],
               parse_response_rules: Callable[..., ResponseHead]) -> tuple[Callable[..., int],
                                                                         Callable[..., RequestHead],
                                                                         Callable[..., ResponseHead]]:
    """head_end, parse_request and parse_response: the fast paths above, each falling back
    to the given rules; they share `clean`, head_end's last proof (a closure cell)."""
    clean: tuple = (None, -1, -1, 0)  # (buf, start, end, CRLFs): buf[start:end] has no bare CR/LF

    def head_end(buf: bytes, start: int, limit: int, line_limit: int = 0, resume: int = 0) -> int:
        """See _http1_py.head_end (the rules): same results."""
        nonlocal clean
        if start < len(buf) and buf[start] != 13:  # (leading empty lines: the rules)
            end = buf.find(b"\r\n\r\n") if start == 0 and resume < 4 else \
                buf.find(b"\r\n\r\n", start if start > resume - 3 else resume - 3)
            if end >= 0:
                end += 4
                seg = buf if start == 0 and end == len(buf) else buf[start:end]
                n = seg.count(b"\r\n")
                if seg.count(b"\r") == n and seg.count(b"\n") == n:
                    clean = (buf, start, end, n)
                    return end
        return head_end_rules(buf, start, limit, line_limit, resume)

    def parse_request(buf: bytes, start: int, end: int, max_line: int, max_header_bytes: int) -> RequestHead:
        """See _http1_py.parse_request (the rules): same results."""
        cbuf, cstart, cend, n = clean
        if cbuf is buf and cstart == start and cend == end:
            h = _REQUEST_HOST_ONLY.fullmatch((buf if start == 0 and end == len(buf) else buf[start:end])
                                             .translate(_LOWER_CTL))
            if h is not None:
                _, (_, sp), (ta, tz), (hs, he) = h.regs
                method = buf[start:start + sp]
                if (method.isupper() and buf[start + tz + 1:start + tz + 5] == b"HTTP" and tz + 9 <= max_line
                        and end - 13 - start - tz <= max_header_bytes):
                    if hs == tz + 17:  # Host first: the lines after it
                        fields = buf[start + he + 2:end - 2]
                    else:
                        fields = buf[start + tz + 11:start + hs - 6] + buf[start + he + 2:end - 2]
                    if buf[start + tz + 8] == 49:  # HTTP/1.1
                        return _new(RequestHead, (method, buf[start + ta:start + tz], 11, buf[start + hs:start + he],
                                                  -1, False, True, None, False, None, None, None, fields, n - 2))
                    return _new(RequestHead, (method, buf[start + ta:start + tz], 10, buf[start + hs:start + he],
                                              -1, False, False, None, False, None, None, None, fields, n - 2))
        return parse_request_rules(buf, start, end, max_line, max_header_bytes)

    def parse_response(buf: bytes, start: int, end: int, head_request: bool) -> ResponseHead:
        """See _http1_py.parse_response (the rules): same results."""
        cbuf, cstart, cend, _ = clean
        if cbuf is buf and cstart == start and cend == end:
            r = _RESPONSE_COMMON.fullmatch((buf if start == 0 and end == len(buf) else buf[start:end])
                                           .translate(_LOWER_CTL))
            if r is not None and buf[start:start + 5] == b"HTTP/":
                _, (ra, rz), (ca, cz), (la, lz), (va, vz), (la2, lz2), (va2, vz2), (ca2, cz2) = r.regs
                status = _CODES[buf[start + 9:start + 12]]
                ver = 11 if buf[start + 7] == 49 else 10
                if ca < 0:  # (Connection first, or no Content-Length)
                    la, lz, va, vz, ca, cz = la2, lz2, va2, vz2, ca2, cz2
                if la < 0:  # no Connection line: the head as received
                    head = buf[start:end - 2] if ver == 11 else b"HTTP/1.1" + buf[start + 8:end - 2]
                    keep_alive = ver == 11
                else:
                    head = b"HTTP/1.1" + buf[start + 8:start + la] + buf[start + lz:end - 2]
                    keep_alive = vz - va != 5 if ver == 11 else vz - va == 10  # close / keep-alive
                reason = buf[start + ra:start + rz] if ra >= 0 else b""
                if head_request or status < 200 or status == 204 or status == 304:
                    return _new(ResponseHead, (status, reason, ver, keep_alive, 0, False, False, head))
                if ca < 0:  # close-delimited
                    return _new(ResponseHead, (status, reason, ver, False, -1, False, True, head))
                return _new(ResponseHead, (status, reason, ver, keep_alive, int(buf[start + ca:start + cz]), False,
                                           False, head))
        return parse_response_rules(buf, start, end, head_request)

    return head_end, parse_request, parse_response
