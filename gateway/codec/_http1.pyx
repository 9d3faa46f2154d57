# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The HTTP/1 codec, compiled: typed scans over the raw head buffer.

The twin `_http1_py.py` states every rule in plain Python in the same order; this module
does the same work over `const unsigned char*` with C tables, eight bytes at a time where
it looks for the end of a line, and no Python object per header line (a head's forwarded
fields, the upstream head and the downstream head are each written into one C buffer and
become one bytes object). The results are the shared NamedTuples of `types.py`, filled in
C (no Python-level call), so both implementations' results compare equal. Rare paths
(Connection-named headers, Content-Length next to a chunked Transfer-Encoding in a
response) reuse the shared Python helper: they are correctness paths, not hot ones. The
hot calls take positional arguments (keywords work too, at the cost of parsing them).
"""
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from libc.stdlib cimport free, malloc

from .types import RequestHead, ResponseHead, drop_named_lines

include "_scan.pxi"
include "_heads.pxi"

__all__ = ["head_end", "parse_request", "upstream_head", "parse_response"]

cdef extern from *:
    """
    /* An empty instance of a tuple subclass (the NamedTuples of types.py), as
       tuple.__new__ allocates one; the caller fills every item before anyone sees it. */
    static PyObject* fg_alloc(PyObject* type, Py_ssize_t n) {
        return ((PyTypeObject*)type)->tp_alloc((PyTypeObject*)type, n);
    }
    """
    object fg_alloc(object type, Py_ssize_t n)

cdef object T_REQUEST = RequestHead
cdef object T_RESPONSE = ResponseHead
cdef bytes B_GET = b"GET"
cdef bytes B_POST = b"POST"
cdef bytes B_HEAD = b"HEAD"
cdef bytes B_EMPTY = b""
cdef bytes B_OK = b"OK"

# Write buffers on the C stack for heads up to this size (malloc beyond).
cdef enum:
    STACK_BUF = 8192


cdef inline void _set(tuple t, Py_ssize_t i, object o) noexcept:
    Py_INCREF(o)
    PyTuple_SET_ITEM(t, i, o)


def head_end(bytes buf, Py_ssize_t start, Py_ssize_t limit, Py_ssize_t line_limit=0, Py_ssize_t resume=0):
    """Offset just past the CRLFCRLF that ends the head beginning at `start`, or -1
    (see _http1_py.head_end: bare LF/CR rejected at the first offender; 431/414 limits)."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t s = _skip_empty_lines(b, start, n)
    cdef Py_ssize_t p = s if s > resume - 3 else resume - 3
    cdef unsigned char c
    while True:
        p = fg_low(b, p, n)
        if p >= n:
            break
        c = b[p]
        if c == 13 and p + 1 < n and b[p + 1] == 10:  # a CRLF: its LF checked here too
            if p - 2 >= s and b[p - 1] == 10 and b[p - 2] == 13:
                return p + 2
            p += 2
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


cdef inline Py_ssize_t _request_line_end(const unsigned char* b, Py_ssize_t s, Py_ssize_t end, int status) except -1:
    """The CR of the start line's CRLF, after checking that b[start:end] ends the head."""
    cdef Py_ssize_t le = _find_crlf(b, s, end)
    if (le < 0 or end < le + 4 or b[end - 4] != 13 or b[end - 3] != 10 or b[end - 2] != 13
            or b[end - 1] != 10):
        raise HeadError(status, "incomplete-head")
    return le


def parse_request(bytes buf, Py_ssize_t start, Py_ssize_t end, Py_ssize_t max_line, Py_ssize_t max_header_bytes):
    """Validate the request head buf[start:end] in one pass (rules and order as the twin's)."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t s, le, sp1, sp2, a, stop, j, p, e, colon, va, vz, ta, tz
    cdef int ver, kind, count = 0, conn = 0
    cdef int64_t content_length = -1, v
    cdef bint has_host = False, has_te = False, expect = False, absolute = False
    cdef Codings te
    cdef char sbuf[STACK_BUF]
    cdef char* out = sbuf
    cdef Py_ssize_t olen = 0
    cdef set named = None
    cdef object upgrade = None, xff = None, request_id = None, via = None, fields
    cdef bytes host = B_EMPTY, method, target
    cdef tuple r
    if end > n or start < 0 or end < start:
        raise HeadError(400, "incomplete-head")
    s = _skip_empty_lines(b, start, end)
    le = _request_line_end(b, s, end, 400)
    if le - s > max_line:
        raise HeadError(414, "uri-too-long")
    if end - 2 - (le + 2) > max_header_bytes:
        raise HeadError(431, "headers-too-large")
    sp1 = _find(b, s, le, 32)
    if sp1 <= s or not _all_in(T_METHOD, b + s, sp1 - s):
        raise HeadError(400, "bad-method")
    if sp1 - s == 3 and b[s] == 71 and b[s + 1] == 69 and b[s + 2] == 84:
        method = B_GET
    elif sp1 - s == 4 and _ieq_exact(b + s, b"POST", 4):
        method = B_POST
    elif sp1 - s == 4 and _ieq_exact(b + s, b"HEAD", 4):
        method = B_HEAD
    else:
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
    if sp1 - s == 7 and _ieq_exact(b + s, b"CONNECT", 7):
        if not _valid_host(b + ta, tz - ta, True):
            raise HeadError(400, "bad-request-target")
        target = _b(b + ta, tz - ta)
    elif b[ta] == 47:
        target = _b(b + ta, tz - ta)
    elif tz - ta == 1 and b[ta] == 42:
        if not (sp1 - s == 7 and _ieq_exact(b + s, b"OPTIONS", 7)):
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
    if 2 * (end - le) + 16 > STACK_BUF:
        out = <char*>malloc(2 * (end - le) + 16)
        if out == NULL:
            raise MemoryError()
    try:
        p = le + 2
        stop = end - 2
        while p < stop:
            e = _field(b, p, end, 400, &colon, &va, &vz)
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
                named = _connection(b, va, vz, &conn, named)
            elif kind == K_UPGRADE:
                upgrade = _b(b + va, vz - va) if upgrade is None else upgrade + b", " + _b(b + va, vz - va)
            elif kind == K_EXPECT:
                if vz == va:
                    pass  # an empty list carries no expectation
                elif not (vz - va == 12 and _ieq(b + va, b"100-continue", 12)):
                    raise HeadError(417, "expectation-failed")
                else:
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
        if out != sbuf:
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
    if (conn & 4) == 0:
        upgrade = None
    cl = content_length
    hc = count
    r = <tuple>fg_alloc(T_REQUEST, 14)
    _set(r, 0, method)
    _set(r, 1, target)
    _set(r, 2, 11 if ver == 11 else 10)
    _set(r, 3, host)
    _set(r, 4, cl)
    _set(r, 5, True if has_te else False)
    _set(r, 6, ((conn & 1) == 0) if ver == 11 else ((conn & 3) == 2))
    _set(r, 7, upgrade)
    _set(r, 8, True if expect else False)
    _set(r, 9, xff)
    _set(r, 10, request_id)
    _set(r, 11, via)
    _set(r, 12, fields)
    _set(r, 13, hc)
    return r


cdef inline Py_ssize_t _put(char* o, Py_ssize_t at, bytes s) noexcept:
    cdef Py_ssize_t k = PyBytes_GET_SIZE(s)
    memcpy(o + at, PyBytes_AS_STRING(s), k)
    return at + k


cdef inline Py_ssize_t _lit(char* o, Py_ssize_t at, const char* s, Py_ssize_t k) noexcept:
    memcpy(o + at, s, k)
    return at + k


def upstream_head(object head, bytes target, bytes host, bytes peer, bytes scheme, bytes request_id,
                  bytes extra=b""):
    """The upstream request head (the bytes downstream.py wrote), written into one bytes
    object sized first: no format call, no intermediate pieces."""
    cdef bytes method, fields, hhost, xff, via, upgrade
    cdef object o_xff, o_via, o_up, o_cl
    cdef int64_t cl
    cdef bint chunked
    cdef char digits[24]
    cdef int nd = 0
    cdef Py_ssize_t size, at = 0
    cdef char* w
    cdef bytes res
    cdef tuple h
    if type(head) is not T_REQUEST:
        raise TypeError("upstream_head needs a RequestHead, not %s" % type(head).__name__)
    h = <tuple>head
    method = <bytes?>h[0]
    hhost = <bytes?>h[3]
    o_cl = h[4]
    chunked = h[5]
    o_up = h[7]
    o_xff = h[9]
    o_via = h[11]
    fields = <bytes?>h[12]
    xff = <bytes?>o_xff if o_xff else None
    via = <bytes?>o_via if o_via else None
    upgrade = <bytes?>o_up if o_up is not None else None
    cl = o_cl
    size = (PyBytes_GET_SIZE(method) + PyBytes_GET_SIZE(target) + PyBytes_GET_SIZE(host)
            + PyBytes_GET_SIZE(fields) + PyBytes_GET_SIZE(peer) + PyBytes_GET_SIZE(scheme)
            + PyBytes_GET_SIZE(hhost) + PyBytes_GET_SIZE(request_id) + PyBytes_GET_SIZE(extra)
            + 146)  # the fixed text below, with the chunked framing line (28)
    if xff is not None:
        size += PyBytes_GET_SIZE(xff) + 2
    if via is not None:
        size += PyBytes_GET_SIZE(via) + 2
    if not chunked and cl >= 0:
        while True:
            digits[nd] = <char>(48 + cl % 10)
            nd += 1
            cl //= 10
            if cl == 0:
                break
        size += nd + 18 - 28
    elif not chunked:
        size -= 28
    if upgrade is not None:
        size += PyBytes_GET_SIZE(upgrade) + 32
    res = PyBytes_FromStringAndSize(NULL, size)
    w = PyBytes_AS_STRING(res)
    at = _put(w, at, method)
    w[at] = 32
    at = _put(w, at + 1, target)
    at = _lit(w, at, b" HTTP/1.1\r\nhost: ", 17)
    at = _put(w, at, host)
    at = _lit(w, at, b"\r\n", 2)
    at = _put(w, at, fields)
    at = _lit(w, at, b"x-forwarded-for: ", 17)
    if xff is not None:
        at = _put(w, at, xff)
        at = _lit(w, at, b", ", 2)
    at = _put(w, at, peer)
    at = _lit(w, at, b"\r\nx-forwarded-proto: ", 21)
    at = _put(w, at, scheme)
    at = _lit(w, at, b"\r\nx-forwarded-host: ", 20)
    at = _put(w, at, hhost)
    at = _lit(w, at, b"\r\nx-request-id: ", 16)
    at = _put(w, at, request_id)
    at = _lit(w, at, b"\r\nvia: ", 7)
    if via is not None:
        at = _put(w, at, via)
        at = _lit(w, at, b", ", 2)
    at = _lit(w, at, b"1.1 fleetgate\r\n", 15)
    if chunked:
        at = _lit(w, at, b"transfer-encoding: chunked\r\n", 28)
    elif nd:
        at = _lit(w, at, b"content-length: ", 16)
        while nd:
            nd -= 1
            w[at] = digits[nd]
            at += 1
        at = _lit(w, at, b"\r\n", 2)
    if upgrade is not None:
        at = _lit(w, at, b"connection: upgrade\r\nupgrade: ", 30)
        at = _put(w, at, upgrade)
        at = _lit(w, at, b"\r\n", 2)
    at = _put(w, at, extra)
    at = _lit(w, at, b"\r\n", 2)
    if at != size:
        raise AssertionError("upstream_head sized %d, wrote %d" % (size, at))
    return res


def parse_response(bytes buf, Py_ssize_t start, Py_ssize_t end, bint head_request):
    """Validate the response head buf[start:end] and write the downstream head in one pass."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t s, le, p, e, stop, colon, va, vz, first
    cdef int ver, status, kind, cl_count = 0, conn = 0
    cdef int64_t cl = -1, v, content_length
    cdef bint has_te = False, chunked = False, close_delimited = False, keep_alive
    cdef Codings te
    cdef char sbuf[STACK_BUF]
    cdef char* out = sbuf
    cdef Py_ssize_t olen
    cdef set named = None
    cdef bytes reason, head
    cdef tuple r
    if end > n or start < 0 or end < start:
        raise HeadError(502, "incomplete-head")
    s = _skip_empty_lines(b, start, end)
    le = _request_line_end(b, s, end, 502)
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
        if le - s == 15 and b[s + 13] == 79 and b[s + 14] == 75:
            reason = B_OK
        else:
            reason = _b(b + s + 13, le - s - 13)
    else:
        reason = B_EMPTY
    te.n_chunked = 0
    te.last_chunked = False
    te.other = False
    if end - s + 16 > STACK_BUF:
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
            e = _field(b, p, end, 502, &colon, &va, &vz)
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
                named = _connection(b, va, vz, &conn, named)
            p = e + 2
        head = PyBytes_FromStringAndSize(out, olen)
    finally:
        if out != sbuf:
            free(out)
    if has_te:
        if te.n_chunked > 1 or (te.n_chunked == 1 and not te.last_chunked):
            raise HeadError(502, "bad-transfer-encoding")
        chunked = te.last_chunked
        if chunked and cl_count:
            named = {b"content-length"} if named is None else named | {b"content-length"}
        if ver == 10:
            conn |= 1
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
    keep_alive = (((conn & 1) == 0) if ver == 11 else ((conn & 3) == 2)) and not close_delimited
    if named is not None:
        first = le + 2 - s
        head = head[:first] + drop_named_lines(head[first:], named)
    o_status = status
    o_cl = content_length
    r = <tuple>fg_alloc(T_RESPONSE, 8)
    _set(r, 0, o_status)
    _set(r, 1, reason)
    _set(r, 2, 11 if ver == 11 else 10)
    _set(r, 3, True if keep_alive else False)
    _set(r, 4, o_cl)
    _set(r, 5, True if chunked else False)
    _set(r, 6, True if close_delimited else False)
    _set(r, 7, head)
    return r
