"""The HTTP/1 codec in plain Python: the twin of `_http1.pyx`, with the same results.

Used when the compiled module is not built or FLEETGATE_PURE_PYTHON=1 is set, and run
against the same corpus and random heads as the compiled module (tests/gateway/codec).
Every rule is written once here in the order the compiled module applies it, so both
report the same HeadError for the same bytes: size limits first, then the request line
left to right, then each header line in order, then the checks that need the whole head.
The public head_end, parse_request and parse_response (bound at the bottom) are
`_h1fast_py`'s fronts over these rules: they answer the common heads in a few C-level
calls and hand every other head to the rules unchanged.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .types import (CONNECTION_KEYWORDS, FIELD_VCHAR, HOST_CHARS, METHOD, REQUEST_DROP, RESPONSE_HOP, TARGET,
                    TOKEN, TRAILER_FORBIDDEN, HeadError, RequestHead, ResponseHead, drop_named_lines)

__all__ = ["head_end", "parse_request", "upstream_head", "parse_response", "ChunkedDecoder"]

INT64_MAX = (1 << 63) - 1
_WS = b" \t"


def _skip_empty_lines(buf: bytes, s: int, end: int) -> int:
    """RFC 9112 2.2: a server SHOULD ignore empty lines received before the start line."""
    while s + 1 < end and buf[s] == 13 and buf[s + 1] == 10:
        s += 2
    return s


def head_end_rules(buf: bytes, start: int, limit: int, line_limit: int = 0, resume: int = 0) -> int:
    """Offset just past the CRLFCRLF that ends the head beginning at `start`, or -1.

    Every LF must follow a CR and every CR precede a LF (RFC 9112 2.2; rejected, as llhttp
    strict does): HeadError(400, "bare-lf"/"bare-cr") at the first offender. Without an
    end after `limit` bytes: HeadError(431), or 414 when `line_limit` is set and the first
    line has not ended within it. `resume` (optional) is len(buf) at the previous call for
    this head, so a head that arrives a byte at a time is not rescanned from its start."""
    n = len(buf)
    s = _skip_empty_lines(buf, start, n) if start < n and buf[start] == 13 else start
    i = s if s > resume - 3 else resume - 3
    end = buf.find(b"\r\n\r\n", i)
    seg = buf[i:] if end < 0 else buf[i:end + 4]
    # every CR and LF in a pair (the common case, counted in C): CRs and LFs = 2 x CRLFs
    if len(seg) - len(seg.translate(None, b"\r\n")) != 2 * seg.count(b"\r\n") or seg[:1] == b"\n":
        stop = n if end < 0 else end + 4
        lf, cr = _first_bare(buf, s, i, n, stop)
        if lf >= 0 and (cr < 0 or lf < cr):
            raise HeadError(400, "bare-lf")
        if cr >= 0:
            raise HeadError(400, "bare-cr")
    if end >= 0:
        return end + 4
    if line_limit > 0 and n - s > line_limit + 1 and buf.find(b"\n", s, s + line_limit + 2) < 0:
        raise HeadError(414, "uri-too-long")
    if n - start > limit:
        raise HeadError(431, "headers-too-large")
    return -1


def _first_bare(buf: bytes, s: int, i: int, n: int, stop: int) -> tuple[int, int]:
    """The first LF without its CR and the first CR without its LF in buf[i:stop] (-1: none)."""
    lf = buf.find(b"\n", i, stop)
    while lf >= 0 and lf > s and buf[lf - 1] == 13:
        lf = buf.find(b"\n", lf + 1, stop)
    cr = buf.find(b"\r", i, stop)
    while cr >= 0 and cr + 1 < n and buf[cr + 1] == 10:
        cr = buf.find(b"\r", cr + 1, stop)
    if cr >= 0 and cr + 1 >= n:
        cr = -1  # a CR at the very end: its LF may be in the next read
    return lf, cr


def _all_in(table: bytes, data: bytes) -> bool:
    """Every byte of data is allowed by table (a C-speed check: delete the allowed bytes)."""
    return not data.translate(None, _MEMBERS[table])


_MEMBERS: dict[bytes, bytes] = {}


def _members(table: bytes) -> bytes:
    _MEMBERS[table] = bytes(c for c in range(256) if table[c])
    return table


def _valid_host(h: bytes, need_port: bool) -> bool:
    """uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2); CONNECT needs the port."""
    if h[:1] == b"[":
        close = h.find(b"]")
        if close < 2:
            return False
        for c in h[1:close]:
            if not (48 <= c <= 57 or 97 <= c <= 102 or 65 <= c <= 70 or c == 58 or c == 46
                    or c == 118 or c == 86):  # hex, ':', '.', 'v' (IPvFuture)
                return False
        rest = h[close + 1:]
        if not rest:
            return not need_port
        if rest[:1] != b":":
            return False
        port = rest[1:]
    else:
        colon = h.find(b":")
        name = h if colon < 0 else h[:colon]
        if not _all_in(HOST_CHARS, name) or not _pct_ok(name):
            return False
        if colon < 0:
            return not need_port
        port = h[colon + 1:]
    if need_port and not port:
        return False
    for c in port:
        if not 48 <= c <= 57:
            return False
    return True


def _pct_ok(name: bytes) -> bool:
    """Every '%' starts a pct-encoded octet: '%' HEXDIG HEXDIG (RFC 3986 2.1)."""
    i = name.find(b"%")
    while i >= 0:
        if i + 2 >= len(name) or not (_HEX[name[i + 1]] and _HEX[name[i + 2]]):
            return False
        i = name.find(b"%", i + 3)
    return True


_HEX = bytes(1 if c in b"0123456789abcdefABCDEF" else 0 for c in range(256))


def _codings(values: list[bytes]) -> tuple[int, bool, bool]:
    """Transfer-Encoding fields as (number of `chunked`, chunked is last, other codings)."""
    n_chunked = 0
    last_chunked = False
    other = False
    for value in values:
        for item in value.split(b","):
            item = item.strip(_WS)
            if not item:
                continue
            if item.lower() == b"chunked":
                n_chunked += 1
                last_chunked = True
            else:
                other = True
                last_chunked = False
    return n_chunked, last_chunked, other


def _field(buf: bytes, p: int, e: int, status: int) -> tuple[bytes, bytes]:
    """One header line buf[p:e] (no CRLF) -> (name, value with OWS trimmed), validated."""
    c = buf[p]
    if c == 32 or c == 9:
        raise HeadError(status, "obs-fold")
    colon = buf.find(b":", p, e)
    if colon <= p:
        raise HeadError(status, "bad-header-name")
    name = buf[p:colon]
    if not _all_in(TOKEN, name):
        raise HeadError(status, "bad-header-name")
    value = buf[colon + 1:e]
    if not _all_in(FIELD_VCHAR, value):
        raise HeadError(status, "bad-header-value")
    return name, value.strip(_WS)


# The fast paths: one compiled regex validates a whole well-formed head (start line and every
# header line) in one C-level match; a head it does not match takes the slow path, which
# applies the rules one by one in the compiled module's order and so names the same error.
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_VIS = rb"[\x21-\x7e\x80-\xff]"  # a field-vchar that is not SP/HTAB
_VCH = rb"[\t\x20-\x7e\x80-\xff]"
# origin-form request line, one SP after the method, and canonical header lines (`name: value`,
# one SP after the colon, a value that neither starts nor ends with OWS): their bytes are
# already the forwarded form. Possessive repeats and a look-behind at the line's end: no
# backtracking inside a line (an empty value takes the slow path).
_REQUEST = re.compile(rb"([A-Z_\-]+) (/[\x21\x22\x24-\x7e]*+) HTTP/1\.([01])\r\n((?:" + _TCHAR + rb"++: "
                      + _VIS + _VCH + rb"*+(?<![ \t])\r\n)*+)\r\n")
_RESPONSE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: (" + _VCH + rb"*))?\r\n((?:" + _TCHAR + rb"+:"
                       + _VCH + rb"*\r\n)*)\r\n")
# a valid header block in any shape (the slow path's shortcut past per-line checks)
_VALID_BLOCK = re.compile(rb"(?:" + _TCHAR + rb"+:" + _VCH + rb"*\r\n)*")


def _names(names: Iterable[bytes]) -> bytes:
    """Header names as one case-insensitive alternation grouped by first letter (`[Hh](?i:ost)|...`):
    the regex engine skips a group on its first byte, so a line costs a few steps."""
    groups: dict[bytes, list[bytes]] = {}
    for n in sorted(names, key=len, reverse=True):
        groups.setdefault(n[:1], []).append(re.escape(n[1:]))
    return b"|".join(b"[%s%s](?i:%s)" % (f.upper(), f, b"|".join(rest)) for f, rest in sorted(groups.items()))


# The header lines a head's fast path must look at, split out of its block (each line led by
# its CRLF: literal prefix "\r\n", so the regex engine jumps line to line) in one call.
_REQUEST_SPLIT = re.compile(rb"\r\n(" + _names(REQUEST_DROP) + rb"): ([^\r]*)")
_RESPONSE_SPLIT = re.compile(rb"(\r\n(" + _names(RESPONSE_HOP | {b"content-length"}) + rb"):([^\r]*))")
_CODES = {b"%d" % c: c for c in range(100, 1000)}
_new = tuple.__new__


def _checked_lines(buf: bytes, p: int, end: int, status: int) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(name, value with OWS trimmed, raw line) for each header line in buf[p:end-2], each
    validated as it is reached (so the first bad line is the error, after earlier lines)."""
    block = buf[p:end - 2]
    if _VALID_BLOCK.fullmatch(block):
        for line in block.split(b"\r\n")[:-1]:
            name, _, value = line.partition(b":")
            yield name, value.strip(_WS), line
        return
    stop = end - 2
    while p < stop:
        e = buf.find(b"\r\n", p, end)
        name, value = _field(buf, p, e, status)
        yield name, value, buf[p:e]
        p = e + 2


def parse_request_rules(buf: bytes, start: int, end: int, max_line: int, max_header_bytes: int) -> RequestHead:
    """Validate the request head buf[start:end] (`end` as head_end returns it) in one pass."""
    m = _REQUEST.fullmatch(buf, start, end)
    if m is None or m.end(1) - start == 7 and m[1] == b"CONNECT":  # CONNECT takes an authority
        return _parse_request_slow(buf, start, end, max_line, max_header_bytes)
    fs = m.start(4)
    if fs - 2 - start > max_line:
        raise HeadError(414, "uri-too-long")
    if end - 2 - fs > max_header_bytes:
        raise HeadError(431, "headers-too-large")
    method, target, minor = m.group(1, 2, 3)
    block = buf[fs - 2:end - 4]  # every header line led by its CRLF
    pieces = _REQUEST_SPLIT.split(block)  # [kept, name, value, kept, ...]
    if len(pieces) == 1:
        return _request(method, target, 11 if minor == b"1" else 10, None, (), [buf[fs:end - 2]],
                        block.count(b"\r\n"))
    kept = b"".join(pieces[::3])
    return _request(method, target, 11 if minor == b"1" else 10, None, zip(pieces[1::3], pieces[2::3]),
                    [kept[2:] + b"\r\n" if kept else b""], block.count(b"\r\n"))


def _request(method: bytes, target: bytes, ver: int, authority: bytes | None,
             specials: Iterable[tuple[bytes, bytes]], parts: list[bytes], count: int) -> RequestHead:
    """The rules on the header lines the gateway reads (both paths): `specials` are their
    names and trimmed values in order; `parts` collects the forwarded lines."""
    host: bytes | None = None
    content_length = -1
    te: list[bytes] | None = None
    close = ka = conn_upgrade = expect = False
    named: set[bytes] | None = None
    upgrade = xff = request_id = via = None
    for name, value in specials:
        lname = name.lower()
        if lname == b"host":
            if host is not None:
                raise HeadError(400, "duplicate-host")
            if value and _REG_NAME.fullmatch(value) is None and _HOST.fullmatch(value) is None:
                raise HeadError(400, "invalid-host")
            host = value
        elif lname == b"content-length":
            if content_length >= 0:
                raise HeadError(400, "duplicate-content-length")
            if not value.isdigit() or len(value) > 18 and int(value) > INT64_MAX:
                raise HeadError(400, "bad-content-length")
            content_length = int(value)
        elif lname == b"transfer-encoding":
            if te is None:
                te = []
            te.append(value)
        elif lname == b"connection":
            value = value.lower()
            if value == b"keep-alive":  # the common one-token values, without the split
                ka = True
                continue
            if value == b"close":
                close = True
                continue
            for token in value.split(b","):
                token = token.strip(_WS)
                if token == b"close":
                    close = True
                elif token == b"keep-alive":
                    ka = True
                elif token == b"upgrade":
                    conn_upgrade = True
                elif token:
                    if named is None:
                        named = set()
                    named.add(token)
        elif lname == b"upgrade":
            upgrade = value if upgrade is None else upgrade + b", " + value
        elif lname == b"expect":
            if not value:
                continue  # an empty list carries no expectation
            if value.lower() != b"100-continue":
                raise HeadError(417, "expectation-failed")
            expect = True
        elif lname == b"x-forwarded-for":
            xff = value if xff is None else xff + b", " + value
        elif lname == b"x-request-id":
            request_id = value
        elif lname == b"via":
            via = value if via is None else via + b", " + value
        # the rest of REQUEST_DROP: hop-by-hop, or written by the gateway
    if host is None:
        if ver == 11:
            raise HeadError(400, "missing-host")
        host = b""
    if authority is not None:
        host = authority  # RFC 9112 3.2.2: the target's authority replaces Host
    chunked = False
    if te is not None:
        if ver == 10:
            raise HeadError(400, "te-on-http10")
        if content_length >= 0:
            raise HeadError(400, "te-and-content-length")
        n_chunked, last_chunked, other = _codings(te)
        if n_chunked != 1 or not last_chunked:
            raise HeadError(400, "bad-transfer-encoding")
        if other:
            raise HeadError(501, "unsupported-transfer-encoding")
        chunked = True
    block = parts[0] if len(parts) == 1 else b"".join(parts)
    if named is not None:
        block = drop_named_lines(block, named)
    return _new(RequestHead, (method, target, ver, host, content_length, chunked,
                              not close if ver == 11 else ka and not close,
                              upgrade if conn_upgrade else None, expect, xff, request_id, via, block, count))


# uri-host [ ":" port ] as _valid_host(h, False) decides, in one match; and not ":port" alone
_REG_NAME = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=]++(?::[0-9]*+)?")  # the common Host, no '%' or '['
_HOST = re.compile(rb"(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+|\[[0-9A-Fa-f:.vV]+\])(?::[0-9]*)?")


def _parse_request_slow(buf: bytes, start: int, end: int, max_line: int, max_header_bytes: int) -> RequestHead:
    """Every rule in order (any head the fast regex does not match): the first broken one is the error."""
    s = _skip_empty_lines(buf, start, end)
    le = buf.find(b"\r\n", s, end)
    if le < 0 or end < le + 4 or buf[end - 4:end] != b"\r\n\r\n":
        raise HeadError(400, "incomplete-head")
    if le - s > max_line:
        raise HeadError(414, "uri-too-long")
    if end - 2 - (le + 2) > max_header_bytes:
        raise HeadError(431, "headers-too-large")
    sp1 = buf.find(b" ", s, le)
    if sp1 <= s or not _all_in(METHOD, buf[s:sp1]):
        raise HeadError(400, "bad-method")
    method = buf[s:sp1]
    ta = sp1 + 1
    while ta < le and buf[ta] == 32:  # RFC 9112 3: MAY parse on whitespace; the line is rewritten
        ta += 1
    sp2 = buf.find(b" ", ta, le)
    if sp2 < 0:
        raise HeadError(400, "bad-request-line")
    url = buf[ta:sp2]
    if not url or not _all_in(TARGET, url):
        raise HeadError(400, "bad-request-target")
    authority: bytes | None = None
    target = url
    if method == b"CONNECT":
        if not _valid_host(url, True):
            raise HeadError(400, "bad-request-target")
    elif url[0] == 47:  # '/': origin form
        pass
    elif url == b"*":
        if method != b"OPTIONS":
            raise HeadError(400, "bad-request-target")
    else:  # absolute form: http(s)://authority[path-abempty][?query]
        low = url[:8].lower()
        if low.startswith(b"http://"):
            a = 7
        elif low == b"https://":
            a = 8
        else:
            raise HeadError(400, "bad-request-target")
        stop = len(url)
        for j in range(a, len(url)):
            if url[j] == 47 or url[j] == 63:  # '/' or '?'
                stop = j
                break
        authority = url[a:stop]
        if not authority or b"@" in authority or not _valid_host(authority, False) or authority[:1] == b":":
            raise HeadError(400, "bad-request-target")
        rest = url[stop:]
        target = rest if rest[:1] == b"/" else b"/" + rest
    version = buf[sp2 + 1:le]
    if (len(version) != 8 or version[:5] != b"HTTP/" or version[6] != 46
            or not 48 <= version[5] <= 57 or not 48 <= version[7] <= 57):
        raise HeadError(400, "bad-version")
    if version == b"HTTP/1.1":
        ver = 11
    elif version == b"HTTP/1.0":
        ver = 10
    else:
        raise HeadError(505, "version-not-supported")
    parts: list[bytes] = []
    return _request(method, target, ver, authority, _request_lines(buf, le + 2, end, parts), parts,
                    buf.count(b"\r\n", le + 2, end - 2))


def _request_lines(buf: bytes, p: int, end: int, parts: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """The slow path's header lines: forwarded ones appended to `parts` in their
    `name: value` form, the others yielded as (lowercased name, value), each in turn."""
    for name, value, _line in _checked_lines(buf, p, end, 400):
        lname = name.lower()
        if lname in REQUEST_DROP:
            yield lname, value
        else:
            parts.append(b"%s: %s\r\n" % (name, value))


_DIGITS = bytes(1 if 48 <= c <= 57 else 0 for c in range(256))
for _t in (TOKEN, METHOD, FIELD_VCHAR, TARGET, HOST_CHARS, _DIGITS):
    _members(_t)


def upstream_head(head: RequestHead, target: bytes, host: bytes, peer: bytes, scheme: bytes,
                  request_id: bytes, extra: bytes = b"") -> bytes:
    """The upstream request head (the bytes downstream.py wrote), in one join."""
    method, _, _, hhost, content_length, chunked, _, upgrade, _, xff, _, via, fields, _ = head
    if content_length < 0 and xff is None and via is None and upgrade is None and not chunked:  # the common head
        if not extra:  # (one piece fewer to join: ~130 instructions each)
            return b"".join((method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n", fields,
                             b"x-forwarded-for: ", peer, b"\r\nx-forwarded-proto: ", scheme, b"\r\nx-forwarded-host: ",
                             hhost, b"\r\nx-request-id: ", request_id, b"\r\nvia: 1.1 fleetgate\r\n\r\n"))
        return b"".join((method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n", fields, b"x-forwarded-for: ",
                         peer, b"\r\nx-forwarded-proto: ", scheme, b"\r\nx-forwarded-host: ", hhost,
                         b"\r\nx-request-id: ", request_id, b"\r\nvia: 1.1 fleetgate\r\n", extra, b"\r\n"))
    if chunked:
        framing = b"transfer-encoding: chunked\r\n"
    elif content_length >= 0:
        framing = b"content-length: %d\r\n" % content_length
    else:
        framing = b""
    if upgrade is not None:
        framing += b"connection: upgrade\r\nupgrade: " + upgrade + b"\r\n"
    return b"".join((method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n", fields, b"x-forwarded-for: ",
                     xff + b", " + peer if xff else peer, b"\r\nx-forwarded-proto: ", scheme,
                     b"\r\nx-forwarded-host: ", hhost, b"\r\nx-request-id: ", request_id, b"\r\nvia: ",
                     via + b", 1.1 fleetgate\r\n" if via else b"1.1 fleetgate\r\n", framing, extra, b"\r\n"))


def parse_response_rules(buf: bytes, start: int, end: int, head_request: bool) -> ResponseHead:
    """Validate the response head buf[start:end] and write the downstream head in one pass."""
    m = _RESPONSE.fullmatch(buf, start, end)
    if m is None:
        return _parse_response_slow(buf, start, end, head_request)
    minor, code, reason = m.group(1, 2, 3)
    fs = m.start(4)
    kept = _RESPONSE_SPLIT.split(buf[fs - 2:end - 4])  # [piece, line, name, value, piece, ...], lines led by CRLF
    kept[0] = b"HTTP/1.1" + buf[start + 8:fs - 2] + kept[0]
    kept.append(b"\r\n")
    if len(kept) == 2:
        specials: Iterable[tuple[bytes, bytes, int]] = ()
    else:
        specials = zip(kept[2::4], kept[3::4], range(1, len(kept), 4))
        kept[2::4] = kept[3::4] = [b""] * (len(kept) // 4)
    return _response(_CODES[code], reason or b"", 11 if minor == b"1" else 10, specials, kept, head_request)


def _response(status: int, reason: bytes, ver: int, specials: Iterable[tuple[bytes, bytes, int]],
              kept: list[bytes], head_request: bool) -> ResponseHead:
    """The rules on the hop-by-hop and framing lines (both paths): `specials` are their
    names, values and indexes in `kept` (the head's pieces, in order)."""
    cl_at: list[int] = []
    cl = -1
    te: list[bytes] | None = None
    close = ka = False
    named: set[bytes] | None = None
    for name, value, at in specials:
        lname = name.lower()
        value = value.strip(_WS)
        if lname == b"content-length":
            if not value.isdigit() or len(value) > 18 and int(value) > INT64_MAX:
                raise HeadError(502, "bad-content-length")
            n = int(value)
            if cl >= 0 and n != cl:
                raise HeadError(502, "conflicting-content-length")
            cl = n
            cl_at.append(at)
            continue
        if lname == b"upgrade" and status == 101:
            continue  # kept
        kept[at] = b""
        if lname == b"transfer-encoding":
            if te is None:
                te = []
            te.append(value)
        elif lname == b"connection":
            value = value.lower()
            if value == b"keep-alive":  # the common one-token values, without the split
                ka = True
                continue
            if value == b"close":
                close = True
                continue
            for token in value.split(b","):
                token = token.strip(_WS)
                if token == b"close":
                    close = True
                elif token == b"keep-alive":
                    ka = True
                elif token and token not in CONNECTION_KEYWORDS:
                    if named is None:
                        named = set()
                    named.add(token)
    chunked = close_delimited = False
    if te is not None:
        n_chunked, last_chunked, _ = _codings(te)
        if n_chunked > 1 or (n_chunked == 1 and not last_chunked):
            raise HeadError(502, "bad-transfer-encoding")
        if last_chunked:
            for i in cl_at:
                kept[i] = b""  # RFC 9112 6.3: Transfer-Encoding overrides Content-Length
        chunked = last_chunked
        if ver == 10:
            close = True  # RFC 9112 6.1: framing of an HTTP/1.0 message with TE is faulty
    if head_request or status < 200 or status == 204 or status == 304:
        content_length = 0
        chunked = False
    elif chunked:
        content_length = -1
    elif te is not None or cl < 0:
        content_length = -1
        close_delimited = True
    else:
        content_length = cl
    out = b"".join(kept)
    if named is not None:
        first = out.find(b"\r\n") + 2
        out = out[:first] + drop_named_lines(out[first:], named)
    return _new(ResponseHead, (status, reason, ver,
                               (not close if ver == 11 else ka and not close) and not close_delimited,
                               content_length, chunked, close_delimited, out))


def _parse_response_slow(buf: bytes, start: int, end: int, head_request: bool) -> ResponseHead:
    """Every rule in order (any head the fast regex does not match): the first broken one is the error."""
    s = _skip_empty_lines(buf, start, end)
    le = buf.find(b"\r\n", s, end)
    if le < 0 or end < le + 4 or buf[end - 4:end] != b"\r\n\r\n":
        raise HeadError(502, "incomplete-head")
    line = buf[s:le]
    if (len(line) < 12 or line[:5] != b"HTTP/" or line[6] != 46 or not 48 <= line[5] <= 57
            or not 48 <= line[7] <= 57 or line[8] != 32):
        raise HeadError(502, "bad-status-line")
    if line[5:8] == b"1.1":
        ver = 11
    elif line[5:8] == b"1.0":
        ver = 10
    else:
        raise HeadError(502, "bad-version")
    code = line[9:12]
    if not _all_in(_DIGITS, code) or code[0] == 48 or (len(line) > 12 and line[12] != 32):
        raise HeadError(502, "bad-status-line")
    reason = line[13:]
    if not _all_in(FIELD_VCHAR, reason):
        raise HeadError(502, "bad-status-line")
    kept: list[bytes] = [b"HTTP/1.1" + line[8:] + b"\r\n"]
    return _response(int(code), reason, ver, _response_lines(buf, le + 2, end, kept), kept, head_request)


_HOP = RESPONSE_HOP | {b"content-length"}


def _response_lines(buf: bytes, p: int, end: int, kept: list[bytes]) -> Iterator[tuple[bytes, bytes, int]]:
    """The slow path's header lines appended to `kept` as received; the hop-by-hop and
    Content-Length ones also yielded as (lowercased name, value, index in kept), each in turn."""
    for name, value, raw_line in _checked_lines(buf, p, end, 502):
        kept.append(raw_line + b"\r\n")  # before the yield: the rules may blank it at once
        lname = name.lower()
        if lname in _HOP:
            yield lname, value, len(kept) - 1


# The public three: the common heads answered by _h1fast_py, everything else by the rules above.
from ._h1fast_py import fast_paths  # noqa: E402  (it needs the rules defined first)

head_end, parse_request, parse_response = fast_paths(head_end_rules, parse_request_rules, parse_response_rules)
