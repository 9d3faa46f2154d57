# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The HTTP/1 codec, compiled: typed scans over the raw head buffer.

The twin `_http1_py.py` states every rule in plain Python in the same order; this module
does the same work over `const unsigned char*` with C tables and no Python object per
header line (a head's forwarded fields are written into one C buffer and become one
bytes object). Rare paths (Connection-named headers, Content-Length next to a chunked
Transfer-Encoding in a response) reuse the shared Python helper: they are correctness
paths, not hot ones. The results are the shared types of `types.py`, so both compare equal.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy

from .types import (CONNECTION_KEYWORDS, FIELD_VCHAR, HOST_CHARS, METHOD, TARGET, TOKEN, HeadError,
                    RequestHead, ResponseHead, drop_named_lines)

__all__ = ["head_end", "parse_request", "upstream_head", "parse_response", "ChunkedDecoder"]

cdef int64_t INT64_MAX = 0x7FFFFFFFFFFFFFFF

cdef unsigned char T_TOKEN[256]
cdef unsigned char T_METHOD[256]
cdef unsigned char T_VCHAR[256]
cdef unsigned char T_TARGET[256]
cdef unsigned char T_HOST[256]
cdef unsigned char T_QDTEXT[256]
cdef unsigned char T_LOWER[256]


cdef void _fill(unsigned char* t, bytes src):
    cdef int i
    for i in range(256):
        t[i] = src[i]


_fill(T_TOKEN, TOKEN)
_fill(T_METHOD, METHOD)
_fill(T_VCHAR, FIELD_VCHAR)
_fill(T_TARGET, TARGET)
_fill(T_HOST, HOST_CHARS)
for _c in range(256):
    T_QDTEXT[_c] = 1 if (_c in (9, 32, 0x21) or 0x23 <= _c <= 0x5B or 0x5D <= _c <= 0x7E or _c >= 0x80) else 0
    T_LOWER[_c] = _c + 32 if 65 <= _c <= 90 else _c

cdef enum:  # header classes
    K_FORWARD, K_HOST, K_CL, K_TE, K_CONNECTION, K_UPGRADE, K_EXPECT, K_XFF, K_RID, K_VIA, K_DROP


cdef inline bint _ieq(const unsigned char* p, const char* lit, Py_ssize_t n) noexcept:
    """p[0:n] equals the lowercase literal, ignoring ASCII case."""
    cdef Py_ssize_t i
    for i in range(n):
        if T_LOWER[p[i]] != <unsigned char>lit[i]:
            return False
    return True


cdef inline bint _ieq_exact(const unsigned char* p, const char* lit, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] != <unsigned char>lit[i]:
            return False
    return True


cdef int _classify(const unsigned char* p, Py_ssize_t n, bint response) noexcept:
    """The class of a header name; for a response only the hop-by-hop ones and CL matter."""
    cdef unsigned char c = T_LOWER[p[0]]
    if n == 2:
        if _ieq(p, b"te", 2):
            return K_DROP
    elif n == 3:
        if _ieq(p, b"via", 3):
            return K_FORWARD if response else K_VIA
    elif n == 4:
        if _ieq(p, b"host", 4):
            return K_FORWARD if response else K_HOST
    elif n == 6:
        if _ieq(p, b"expect", 6):
            return K_FORWARD if response else K_EXPECT
    elif n == 7:
        if _ieq(p, b"upgrade", 7):
            return K_UPGRADE
        if _ieq(p, b"trailer", 7):
            return K_DROP
    elif n == 10:
        if _ieq(p, b"connection", 10):
            return K_CONNECTION
        if _ieq(p, b"keep-alive", 10):
            return K_DROP
    elif n == 12:
        if _ieq(p, b"x-request-id", 12):
            return K_FORWARD if response else K_RID
    elif n == 14:
        if _ieq(p, b"content-length", 14):
            return K_CL
    elif n == 15:
        if c == 120 and _ieq(p, b"x-forwarded-for", 15):
            return K_FORWARD if response else K_XFF
    elif n == 16:
        if _ieq(p, b"proxy-connection", 16):
            return K_DROP
        if not response and _ieq(p, b"x-forwarded-host", 16):
            return K_DROP
    elif n == 17:
        if _ieq(p, b"transfer-encoding", 17):
            return K_TE
        if not response and _ieq(p, b"x-forwarded-proto", 17):
            return K_DROP
    elif n == 18:
        if _ieq(p, b"proxy-authenticate", 18):
            return K_DROP
    elif n == 19:
        if not response and _ieq(p, b"proxy-authorization", 19):
            return K_DROP
    return K_FORWARD


cdef inline Py_ssize_t _skip_empty_lines(const unsigned char* b, Py_ssize_t s, Py_ssize_t end) noexcept:
    while s + 1 < end and b[s] == 13 and b[s + 1] == 10:
        s += 2
    return s


cdef inline Py_ssize_t _find_crlf(const unsigned char* b, Py_ssize_t i, Py_ssize_t stop) noexcept:
    """Offset of the first CRLF that lies wholly in b[i:stop], or -1."""
    cdef const unsigned char* q
    while i < stop:
        q = <const unsigned char*>memchr(b + i, 13, stop - i)
        if q == NULL:
            return -1
        i = q - b
        if i + 1 < stop and b[i + 1] == 10:
            return i
        i += 1
    return -1


cdef inline Py_ssize_t _find(const unsigned char* b, Py_ssize_t i, Py_ssize_t stop, unsigned char c) noexcept:
    cdef const unsigned char* q
    if i >= stop:
        return -1
    q = <const unsigned char*>memchr(b + i, c, stop - i)
    return -1 if q == NULL else q - b


cdef inline bint _all_in(const unsigned char* t, const unsigned char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if not t[p[i]]:
            return False
    return True


cdef inline bint _is_ws(unsigned char c) noexcept:
    return c == 32 or c == 9


cdef inline bint _is_hex(unsigned char c) noexcept:
    return 48 <= c <= 57 or 97 <= c <= 102 or 65 <= c <= 70


cdef bint _pct_ok(const unsigned char* h, Py_ssize_t n) noexcept:
    """Every '%' starts a pct-encoded octet: '%' HEXDIG HEXDIG (RFC 3986 2.1)."""
    cdef Py_ssize_t i = _find(h, 0, n, 37)
    while i >= 0:
        if i + 2 >= n or not (_is_hex(h[i + 1]) and _is_hex(h[i + 2])):
            return False
        i = _find(h, i + 3, n, 37)
    return True


cdef bint _valid_host(const unsigned char* h, Py_ssize_t n, bint need_port) noexcept:
    """uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2); CONNECT needs the port."""
    cdef Py_ssize_t i, close, colon, port_at
    cdef unsigned char c
    if n > 0 and h[0] == 91:  # '['
        close = _find(h, 0, n, 93)
        if close < 2:
            return False
        for i in range(1, close):
            c = h[i]
            if not (48 <= c <= 57 or 97 <= c <= 102 or 65 <= c <= 70 or c == 58 or c == 46
                    or c == 118 or c == 86):
                return False
        if close + 1 == n:
            return not need_port
        if h[close + 1] != 58:
            return False
        port_at = close + 2
    else:
        colon = _find(h, 0, n, 58)
        if colon < 0:
            return _all_in(T_HOST, h, n) and _pct_ok(h, n) and not need_port
        if not _all_in(T_HOST, h, colon) or not _pct_ok(h, colon):
            return False
        port_at = colon + 1
    if need_port and port_at == n:
        return False
    for i in range(port_at, n):
        if not 48 <= h[i] <= 57:
            return False
    return True


cdef inline int64_t _digits(const unsigned char* p, Py_ssize_t n) noexcept:
    """1*DIGIT as a number; -1 when not digits or beyond int64."""
    cdef Py_ssize_t i
    cdef int64_t v = 0
    if n == 0:
        return -1
    for i in range(n):
        if not 48 <= p[i] <= 57:
            return -1
        if v > (INT64_MAX - (p[i] - 48)) // 10:
            return -1
        v = v * 10 + (p[i] - 48)
    return v


cdef struct Codings:
    int n_chunked
    bint last_chunked
    bint other


cdef void _codings(const unsigned char* p, Py_ssize_t n, Codings* st) noexcept:
    """Add one Transfer-Encoding field's codings to `st` (order across fields kept)."""
    cdef Py_ssize_t i = 0, j, a, z
    while i <= n:
        j = _find(p, i, n, 44)
        if j < 0:
            j = n
        a = i
        z = j
        while a < z and _is_ws(p[a]):
            a += 1
        while z > a and _is_ws(p[z - 1]):
            z -= 1
        if z > a:
            if z - a == 7 and _ieq(p + a, b"chunked", 7):
                st.n_chunked += 1
                st.last_chunked = True
            else:
                st.other = True
                st.last_chunked = False
        i = j + 1


cdef inline bytes _b(const unsigned char* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef int _field(const unsigned char* b, Py_ssize_t p, Py_ssize_t e, int status,
                Py_ssize_t* colon_out, Py_ssize_t* va, Py_ssize_t* vz) except -1:
    """Validate one header line b[p:e] (no CRLF); name is b[p:colon], value b[va:vz] (OWS trimmed)."""
    cdef Py_ssize_t colon, a, z
    cdef unsigned char c = b[p] if p < e else 13
    if c == 32 or c == 9:
        raise HeadError(status, "obs-fold")
    colon = _find(b, p, e, 58)
    if colon <= p:
        raise HeadError(status, "bad-header-name")
    if not _all_in(T_TOKEN, b + p, colon - p):
        raise HeadError(status, "bad-header-name")
    if not _all_in(T_VCHAR, b + colon + 1, e - colon - 1):
        raise HeadError(status, "bad-header-value")
    a = colon + 1
    z = e
    while a < z and _is_ws(b[a]):
        a += 1
    while z > a and _is_ws(b[z - 1]):
        z -= 1
    colon_out[0] = colon
    va[0] = a
    vz[0] = z
    return 0


def head_end(bytes buf, Py_ssize_t start, Py_ssize_t limit, *, Py_ssize_t line_limit=0,
             Py_ssize_t resume=0):
    """Offset just past the CRLFCRLF that ends the head beginning at `start`, or -1
    (see _http1_py.head_end: bare LF/CR rejected at the first offender; 431/414 limits)."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t s = _skip_empty_lines(b, start, n)
    cdef Py_ssize_t p = s if s > resume - 3 else resume - 3
    cdef unsigned char c
    while p < n:
        c = b[p]
        if c > 13:
            p += 1
            continue
        if c == 10:
            if p == s or b[p - 1] != 13:
                raise HeadError(400, "bare-lf")
            if p - 3 >= s and b[p - 2] == 10 and b[p - 3] == 13:
                return p + 1
        elif c == 13:
            if p + 1 < n and b[p + 1] != 10:
                raise HeadError(400, "bare-cr")
        p += 1
    if line_limit > 0 and n - s > line_limit + 1 and _find(b, s, s + line_limit + 2, 10) < 0:
        raise HeadError(414, "uri-too-long")
    if n - start > limit:
        raise HeadError(431, "headers-too-large")
    return -1


def parse_request(bytes buf, Py_ssize_t start, Py_ssize_t end, *, Py_ssize_t max_line,
                  Py_ssize_t max_header_bytes):
    """Validate the request head buf[start:end] in one pass (rules and order as the twin's)."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t s, le, sp1, sp2, a, stop, j, p, e, colon, va, vz, ta, tz, q
    cdef int ver, kind, count = 0
    cdef int64_t content_length = -1, v
    cdef bint has_host = False, has_te = False, close = False, ka = False, conn_upgrade = False
    cdef bint expect = False, absolute = False
    cdef Codings te
    cdef char* out
    cdef Py_ssize_t olen = 0
    cdef object named = None, upgrade = None, xff = None, request_id = None, via = None
    cdef bytes host = b"", method, target
    if end > n or start < 0 or end < start:
        raise HeadError(400, "incomplete-head")
    s = _skip_empty_lines(b, start, end)
    le = _find_crlf(b, s, end)
    if (le < 0 or end < le + 4 or b[end - 4] != 13 or b[end - 3] != 10 or b[end - 2] != 13
            or b[end - 1] != 10):
        raise HeadError(400, "incomplete-head")
    if le - s > max_line:
        raise HeadError(414, "uri-too-long")
    if end - 2 - (le + 2) > max_header_bytes:
        raise HeadError(431, "headers-too-large")
    sp1 = _find(b, s, le, 32)
    if sp1 <= s or not _all_in(T_METHOD, b + s, sp1 - s):
        raise HeadError(400, "bad-method")
    method = _b(b + s, sp1 - s)
    ta = sp1 + 1
    while ta < le and b[ta] == 32:
        ta += 1
    sp2 = _find(b, ta, le, 32)
    if sp2 < 0:
        raise HeadError(400, "bad-request-line")
    tz = sp2
    if tz == ta or not _all_in(T_TARGET, b + ta, tz - ta):
        raise HeadError(400, "bad-request-target")
    if sp1 - s == 7 and method == b"CONNECT":
        if not _valid_host(b + ta, tz - ta, True):
            raise HeadError(400, "bad-request-target")
        target = _b(b + ta, tz - ta)
    elif b[ta] == 47:
        target = _b(b + ta, tz - ta)
    elif tz - ta == 1 and b[ta] == 42:
        if method != b"OPTIONS":
            raise HeadError(400, "bad-request-target")
        target = b"*"
    else:
        if tz - ta >= 7 and _ieq(b + ta, b"http://", 7):
            a = ta + 7
        elif tz - ta >= 8 and _ieq(b + ta, b"https://", 8):
            a = ta + 8
        else:
            raise HeadError(400, "bad-request-target")
        stop = tz
        for j in range(a, tz):
            if b[j] == 47 or b[j] == 63:
                stop = j
                break
        if (stop == a or _find(b, a, stop, 64) >= 0 or not _valid_host(b + a, stop - a, False)
                or b[a] == 58):
            raise HeadError(400, "bad-request-target")
        host = _b(b + a, stop - a)
        absolute = True
        if stop < tz and b[stop] == 47:
            target = _b(b + stop, tz - stop)
        else:
            target = b"/" + _b(b + stop, tz - stop)
    if (le - sp2 - 1 != 8 or not _ieq_exact(b + sp2 + 1, b"HTTP/", 5) or b[sp2 + 7] != 46
            or not 48 <= b[sp2 + 6] <= 57 or not 48 <= b[sp2 + 8] <= 57):
        raise HeadError(400, "bad-version")
    if b[sp2 + 6] == 49 and b[sp2 + 8] == 49:
        ver = 11
    elif b[sp2 + 6] == 49 and b[sp2 + 8] == 48:
        ver = 10
    else:
        raise HeadError(505, "version-not-supported")

    te.n_chunked = 0
    te.last_chunked = False
    te.other = False
    out = <char*>malloc(2 * (end - le) + 16)
    if out == NULL:
        raise MemoryError()
    try:
        p = le + 2
        stop = end - 2
        while p < stop:
            e = _find_crlf(b, p, end)
            _field(b, p, e, 400, &colon, &va, &vz)
            count += 1
            kind = _classify(b + p, colon - p, False)
            if kind == K_FORWARD:
                memcpy(out + olen, b + p, colon - p)
                olen += colon - p
                out[olen] = 58
                out[olen + 1] = 32
                olen += 2
                memcpy(out + olen, b + va, vz - va)
                olen += vz - va
                out[olen] = 13
                out[olen + 1] = 10
                olen += 2
            elif kind == K_HOST:
                if has_host:
                    raise HeadError(400, "duplicate-host")
                if (vz > va and not _valid_host(b + va, vz - va, False)) or (vz > va and b[va] == 58):
                    raise HeadError(400, "invalid-host")
                has_host = True
                if not absolute:
                    host = _b(b + va, vz - va)
            elif kind == K_CL:
                if content_length >= 0:
                    raise HeadError(400, "duplicate-content-length")
                v = _digits(b + va, vz - va)
                if v < 0:
                    raise HeadError(400, "bad-content-length")
                content_length = v
            elif kind == K_TE:
                has_te = True
                _codings(b + va, vz - va, &te)
            elif kind == K_CONNECTION:
                q = va
                while q <= vz:
                    j = _find(b, q, vz, 44)
                    if j < 0:
                        j = vz
                    a = q
                    e = j
                    while a < e and _is_ws(b[a]):
                        a += 1
                    while e > a and _is_ws(b[e - 1]):
                        e -= 1
                    if e - a == 5 and _ieq(b + a, b"close", 5):
                        close = True
                    elif e - a == 10 and _ieq(b + a, b"keep-alive", 10):
                        ka = True
                    elif e - a == 7 and _ieq(b + a, b"upgrade", 7):
                        conn_upgrade = True
                    elif e > a:
                        if named is None:
                            named = set()
                        named.add(_b(b + a, e - a).lower())
                    q = j + 1
            elif kind == K_UPGRADE:
                upgrade = _b(b + va, vz - va) if upgrade is None else upgrade + b", " + _b(b + va, vz - va)
            elif kind == K_EXPECT:
                if vz == va:
                    pass  # an empty list carries no expectation
                elif not (vz - va == 12 and _ieq(b + va, b"100-continue", 12)):
                    raise HeadError(417, "expectation-failed")
                expect = True
            elif kind == K_XFF:
                xff = _b(b + va, vz - va) if xff is None else xff + b", " + _b(b + va, vz - va)
            elif kind == K_RID:
                request_id = _b(b + va, vz - va)
            elif kind == K_VIA:
                via = _b(b + va, vz - va) if via is None else via + b", " + _b(b + va, vz - va)
            p = e + 2
        fields = PyBytes_FromStringAndSize(out, olen)
    finally:
        free(out)
    if not has_host and ver == 11:
        raise HeadError(400, "missing-host")
    if has_te:
        if ver == 10:
            raise HeadError(400, "te-on-http10")
        if content_length >= 0:
            raise HeadError(400, "te-and-content-length")
        if te.n_chunked != 1 or not te.last_chunked:
            raise HeadError(400, "bad-transfer-encoding")
        if te.other:
            raise HeadError(501, "unsupported-transfer-encoding")
    if named is not None:
        fields = drop_named_lines(fields, named)
    return RequestHead(method, target, ver, host, content_length, has_te,
                       (not close) if ver == 11 else (ka and not close),
                       upgrade if conn_upgrade else None, expect, xff, request_id, via, fields, count)


def upstream_head(head, *, bytes target, bytes host, bytes peer, bytes scheme, bytes request_id,
                  bytes extra=b""):
    """The upstream request head, in one format call (the bytes downstream.py wrote)."""
    cdef bytes framing
    cdef object xff = head.xff, via = head.via, upgrade = head.upgrade
    if head.chunked:
        framing = b"transfer-encoding: chunked\r\n"
    elif head.content_length >= 0:
        framing = b"content-length: %d\r\n" % head.content_length
    else:
        framing = b""
    if upgrade is not None:
        framing += b"connection: upgrade\r\nupgrade: " + upgrade + b"\r\n"
    return (b"%s %s HTTP/1.1\r\nhost: %s\r\n%sx-forwarded-for: %s\r\nx-forwarded-proto: %s\r\n"
            b"x-forwarded-host: %s\r\nx-request-id: %s\r\nvia: %s\r\n%s%s\r\n") % (
        head.method, target, host, head.fields, xff + b", " + peer if xff else peer,
        scheme, head.host, request_id, via + b", 1.1 fleetgate" if via else b"1.1 fleetgate",
        framing, extra)


def parse_response(bytes buf, Py_ssize_t start, Py_ssize_t end, *, bint head_request):
    """Validate the response head buf[start:end] and write the downstream head in one pass."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t s, le, p, e, stop, colon, va, vz, q, j, a, z, first
    cdef int ver, status, kind, cl_count = 0
    cdef int64_t cl = -1, v, content_length
    cdef bint has_te = False, close = False, ka = False, chunked = False, close_delimited = False
    cdef bint keep_alive
    cdef Codings te
    cdef char* out
    cdef Py_ssize_t olen
    cdef object named = None
    if end > n or start < 0 or end < start:
        raise HeadError(502, "incomplete-head")
    s = _skip_empty_lines(b, start, end)
    le = _find_crlf(b, s, end)
    if (le < 0 or end < le + 4 or b[end - 4] != 13 or b[end - 3] != 10 or b[end - 2] != 13
            or b[end - 1] != 10):
        raise HeadError(502, "incomplete-head")
    if (le - s < 12 or not _ieq_exact(b + s, b"HTTP/", 5) or b[s + 6] != 46 or not 48 <= b[s + 5] <= 57
            or not 48 <= b[s + 7] <= 57 or b[s + 8] != 32):
        raise HeadError(502, "bad-status-line")
    if b[s + 5] == 49 and b[s + 7] == 49:
        ver = 11
    elif b[s + 5] == 49 and b[s + 7] == 48:
        ver = 10
    else:
        raise HeadError(502, "bad-version")
    if (not 49 <= b[s + 9] <= 57 or not 48 <= b[s + 10] <= 57 or not 48 <= b[s + 11] <= 57
            or (le - s > 12 and b[s + 12] != 32)):
        raise HeadError(502, "bad-status-line")
    status = (b[s + 9] - 48) * 100 + (b[s + 10] - 48) * 10 + (b[s + 11] - 48)
    if le - s > 13:
        if not _all_in(T_VCHAR, b + s + 13, le - s - 13):
            raise HeadError(502, "bad-status-line")
        reason = _b(b + s + 13, le - s - 13)
    else:
        reason = b""
    te.n_chunked = 0
    te.last_chunked = False
    te.other = False
    out = <char*>malloc(end - s + 16)
    if out == NULL:
        raise MemoryError()
    try:
        memcpy(out, b"HTTP/1.1", 8)
        memcpy(out + 8, b + s + 8, le + 2 - s - 8)
        olen = le + 2 - s
        p = le + 2
        stop = end - 2
        while p < stop:
            e = _find_crlf(b, p, end)
            _field(b, p, e, 502, &colon, &va, &vz)
            kind = _classify(b + p, colon - p, True)
            if kind == K_FORWARD or kind == K_CL or (kind == K_UPGRADE and status == 101):
                if kind == K_CL:
                    v = _digits(b + va, vz - va)
                    if v < 0:
                        raise HeadError(502, "bad-content-length")
                    if cl >= 0 and v != cl:
                        raise HeadError(502, "conflicting-content-length")
                    cl = v
                    cl_count += 1
                memcpy(out + olen, b + p, e + 2 - p)
                olen += e + 2 - p
            elif kind == K_TE:
                has_te = True
                _codings(b + va, vz - va, &te)
            elif kind == K_CONNECTION:
                q = va
                while q <= vz:
                    j = _find(b, q, vz, 44)
                    if j < 0:
                        j = vz
                    a = q
                    z = j
                    while a < z and _is_ws(b[a]):
                        a += 1
                    while z > a and _is_ws(b[z - 1]):
                        z -= 1
                    if z - a == 5 and _ieq(b + a, b"close", 5):
                        close = True
                    elif z - a == 10 and _ieq(b + a, b"keep-alive", 10):
                        ka = True
                    elif z - a == 7 and _ieq(b + a, b"upgrade", 7):
                        pass
                    elif z > a:
                        if named is None:
                            named = set()
                        named.add(_b(b + a, z - a).lower())
                    q = j + 1
            p = e + 2
        head = PyBytes_FromStringAndSize(out, olen)
    finally:
        free(out)
    if has_te:
        if te.n_chunked > 1 or (te.n_chunked == 1 and not te.last_chunked):
            raise HeadError(502, "bad-transfer-encoding")
        chunked = te.last_chunked
        if chunked and cl_count:
            named = {b"content-length"} if named is None else named | {b"content-length"}
        if ver == 10:
            close = True
    if head_request or status < 200 or status == 204 or status == 304:
        content_length = 0
        chunked = False
    elif chunked:
        content_length = -1
    elif has_te or cl < 0:
        content_length = -1
        close_delimited = True
    else:
        content_length = cl
    keep_alive = ((not close) if ver == 11 else (ka and not close)) and not close_delimited
    if named is not None:
        first = le + 2 - s
        head = head[:first] + drop_named_lines(head[first:], named)
    return ResponseHead(status, reason, ver, keep_alive, content_length, chunked, close_delimited, head)


cdef enum:  # ChunkedDecoder states
    S_SIZE, S_DATA, S_DATA_CR, S_DATA_LF, S_TRAILER, S_DONE


cdef int64_t _chunk_size(const unsigned char* line, Py_ssize_t n, int status) except -2:
    """chunk-size [ chunk-ext ] (RFC 9112 7.1, 7.1.1): the size; extensions validated, dropped."""
    cdef Py_ssize_t i = 0, j, k
    cdef int64_t size = 0
    cdef int d
    cdef unsigned char c
    while i < n:
        c = line[i]
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        else:
            break
        if size > (INT64_MAX >> 4):
            raise HeadError(status, "chunk-size-overflow")
        size = size * 16 + d
        i += 1
    if i == 0:
        raise HeadError(status, "bad-chunk-size")
    while i < n:
        while i < n and _is_ws(line[i]):
            i += 1
        if i == n or line[i] != 59:
            raise HeadError(status, "bad-chunk-extension")
        i += 1
        while i < n and _is_ws(line[i]):
            i += 1
        j = i
        while i < n and T_TOKEN[line[i]]:
            i += 1
        if i == j:
            raise HeadError(status, "bad-chunk-extension")
        k = i
        while k < n and _is_ws(line[k]):
            k += 1
        if k < n and line[k] == 61:
            i = k + 1
            while i < n and _is_ws(line[i]):
                i += 1
            if i < n and line[i] == 34:
                i += 1
                while True:
                    if i >= n:
                        raise HeadError(status, "bad-chunk-extension")
                    c = line[i]
                    if c == 34:
                        i += 1
                        break
                    if c == 92:
                        i += 1
                        if i >= n or not T_VCHAR[line[i]]:
                            raise HeadError(status, "bad-chunk-extension")
                    elif not T_QDTEXT[c]:
                        raise HeadError(status, "bad-chunk-extension")
                    i += 1
            else:
                j = i
                while i < n and T_TOKEN[line[i]]:
                    i += 1
                if i == j:
                    raise HeadError(status, "bad-chunk-extension")
    return size


def chunk_size(bytes line, int status):
    """The chunk size of a chunk-size line without its CRLF (exposed for the tests)."""
    return _chunk_size(<const unsigned char*>PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line), status)


cdef class ChunkedDecoder:
    """Incremental, strict decoder of a chunked body (RFC 9112 7.1): see the twin's
    docstring (_http1_py.ChunkedDecoder); same rules, same errors, same split-invariance."""

    cdef public bint done
    cdef public bytes leftover
    cdef public int error_status
    cdef public Py_ssize_t max_line
    cdef public Py_ssize_t max_trailers
    cdef int _state
    cdef int64_t _remaining
    cdef bytes _line
    cdef Py_ssize_t _trailer_bytes

    def __init__(self, *, int error_status=400, Py_ssize_t max_line=4096, Py_ssize_t max_trailers=16384):
        self.done = False
        self.leftover = b""
        self.error_status = error_status
        self.max_line = max_line
        self.max_trailers = max_trailers
        self._state = S_SIZE
        self._remaining = 0
        self._line = b""
        self._trailer_bytes = 0

    def feed(self, bytes data, list out=None):
        cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t i = 0, take, lf
        cdef int status = self.error_status
        cdef bytes line
        if out is None:
            out = []
        if self._state == S_DONE:
            self.leftover += data
            return out
        while i < n:
            if self._state == S_DATA:
                take = n - i if self._remaining > n - i else <Py_ssize_t>self._remaining
                out.append(data if take == n else data[i:i + take])
                i += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = S_DATA_CR
            elif self._state == S_DATA_CR:
                if b[i] != 13:
                    raise HeadError(status, "bad-chunk-end")
                i += 1
                self._state = S_DATA_LF
            elif self._state == S_DATA_LF:
                if b[i] != 10:
                    raise HeadError(status, "bad-chunk-end")
                i += 1
                self._state = S_SIZE
            else:
                lf = _find(b, i, n, 10)
                if lf < 0:
                    self._line += data[i:]
                    self._check_partial()
                    break
                line = self._line + data[i:lf] if self._line else data[i:lf]
                self._line = b""
                i = lf + 1
                if self._line_done(line):
                    self.leftover = data[i:]
                    break
        return out

    cdef int _check_partial(self) except -1:
        if self._state == S_SIZE:
            if PyBytes_GET_SIZE(self._line) > self.max_line + 1:
                raise HeadError(self.error_status, "chunk-line-too-long")
        elif self._trailer_bytes + PyBytes_GET_SIZE(self._line) + 1 > self.max_trailers:
            raise HeadError(self.error_status, "trailers-too-large")
        return 0

    cdef bint _line_done(self, bytes line) except -1:
        cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(line)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(line), colon, va, vz
        cdef int status = self.error_status
        cdef int64_t size
        if self._state == S_SIZE:
            if n > self.max_line + 1:
                raise HeadError(status, "chunk-line-too-long")
            if n == 0 or b[n - 1] != 13:
                raise HeadError(status, "bare-lf")
            size = _chunk_size(b, n - 1, status)
            if size:
                self._remaining = size
                self._state = S_DATA
            else:
                self._state = S_TRAILER
            return False
        self._trailer_bytes += n + 1
        if self._trailer_bytes > self.max_trailers:
            raise HeadError(status, "trailers-too-large")
        if n == 0 or b[n - 1] != 13:
            raise HeadError(status, "bare-lf")
        if n == 1:
            self._state = S_DONE
            self.done = True
            return True
        _field(b, 0, n - 1, status, &colon, &va, &vz)
        if (colon == 14 and _ieq(b, b"content-length", 14)) or (colon == 17 and _ieq(b, b"transfer-encoding", 17)):
            raise HeadError(status, "framing-in-trailers")
        return False
