# Augments _core_py.py when setup.py compiles it as gateway.exchange._core (Cython's pure
# Python mode): the hot classes become extension types with typed fields, and the
# hot methods cpdef (C calls between them; Python subclasses may still call them).
# A field here must not be repeated in a subclass's __slots__ (it would shadow this one).
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcmp, memcpy
from cpython.ref cimport Py_REFCNT
from posix.uio cimport iovec

from gateway.exchange._exchange cimport Exchange, reset_exchange
from gateway.exchange._route cimport ContextCore, RouteHot, _hot_miss, _next_index, resolve_warm, round_robin

cdef class RequestCounts

cdef extern from *:
    """
    /* the number of an object's instance-dict entries (-1: no dict to be had) */
    static Py_ssize_t _fg_dict_size(PyObject *o) {
        Py_ssize_t n;
        PyObject *d = PyObject_GenericGetDict(o, NULL);
        if (d == NULL) { PyErr_Clear(); return -1; }
        n = PyDict_Check(d) ? PyDict_GET_SIZE(d) : -1;
        Py_DECREF(d);
        return n;
    }
    """
    Py_ssize_t _dict_size "_fg_dict_size"(object o)

cdef dict _package
cdef object _MISS, log, _TARGET, _HOST, _FIELDS, _random
cdef Py_ssize_t _MAX_HEAD, _SUM, _RECV, _SENT
cdef tuple _BOUNDS
cdef int _HEAD
cdef bint _COMPILED


cdef inline bint _spare_free(Exchange ex, object cls) except -1:
    """A connection's last exchange may serve its next request: the caller's is the only
    reference left (no access-log line, timer or mirror holds it), it is of the class in
    use and has no ad hoc attributes."""
    return Py_REFCNT(ex) == 1 and type(ex) is cls and _dict_size(ex) == 0


cdef class DownstreamCore:
    cdef public ContextCore ctx
    cdef public object scheme, transport, peer, buf, cur, active, tunnel, held, final, now
    cdef public object max_line, max_headers, head_limit, health, balancer
    cdef public dict pools
    cdef public list out
    cdef public bint tls, http11, close_after, paused
    cdef public double began, deadline, header_timeout, idle_timeout
    cdef public Py_ssize_t sent, logged  # response bytes flushed, and accounted by the metrics
    cdef public Exchange spare  # the last exchange, kept for the next request (compiled build)
    cdef public int wfd  # the socket for direct writes, -1: none (gateway/exchange/sockets.py)
    cdef object __weakref__
    # the last routed request on this connection: its table, Host and target, and their
    # route snapshot (a request with the same three skips the memo)
    cdef public object last_table
    cdef public bytes last_host, last_target
    cdef public RouteHot last_hot

    cpdef flush(self)

    @cython.locals(end=Py_ssize_t, ex=Exchange)
    cpdef data_received(self, data)

    @cython.locals(ex=Exchange, has_body=bint, ctx=ContextCore, hot=RouteHot, eps=tuple, i=Py_ssize_t,
                   host=bytes, target=bytes)
    cpdef _on_head(self, head, double began)

    @cython.locals(eps=tuple)
    cdef _warm_head(self, Exchange ex, head, RouteHot hot, bytes target, bytes host, fields)

    cpdef bint _fast_send(self, Exchange ex, r, bint plain) except -1

    @cython.locals(conn=UpstreamCore, idle=list, pool=PoolCore)
    cdef _send_on(self, Exchange ex, ep, key, double read_timeout)

    @cython.locals(now=double, idle=list, counts=RequestCounts, pool=PoolCore, ctx=ContextCore)
    cpdef response_complete(self, Exchange ex, bint reusable, UpstreamCore upstream)


@cython.final
cdef class RequestCounts:
    cdef public object owner, log
    cdef public dict rows
    cdef object c_route, c_backend, c_label, c_cluster, c_method, c_status
    cdef list c_row

    @cython.locals(c=DownstreamCore, n=Py_ssize_t, sent=Py_ssize_t, received=Py_ssize_t, row=list,
                   start=double, seconds=double, i=Py_ssize_t, acc=double, body=Py_ssize_t, t=tuple)
    cpdef done(self, Exchange ex, double now)

    cdef list _remember(self, Exchange ex, r)


cdef class PoolCore:
    cdef public list idle
    cdef public Py_ssize_t max_idle


cdef class UpstreamCore:
    cdef public object pool, transport, buf, tunnel, cluster, cline
    cdef public Exchange ex
    cdef public double idle_since
    cdef public int state
    cdef public bint reused
    cdef public int wfd  # the socket for direct writes, -1: none (gateway/exchange/sockets.py)

    cpdef send(self, Exchange ex, data)

    @cython.locals(ex=Exchange, end=Py_ssize_t, code=Py_ssize_t, clen=Py_ssize_t, reusable=bint,
                   dc=DownstreamCore, client_ok=bint, keep_alive=bint, chunked=bint, whole=bint, out=list)
    cpdef data_received(self, data)



cdef inline RequestCounts _counts(ContextCore ctx):
    """ctx's RequestCounts (_route.pxd types the field as an object: _route cannot cimport
    _core), without a second type check: response_complete checks it when it sets it."""
    return <RequestCounts>ctx.counts


cdef inline bytes _next_rid(ContextCore ctx):
    """ctx's next x-request-id: b"%s%x" % (ctx.rid_prefix, ctx.rid + 1), written by a C
    loop (the compiled build's; the twin formats it)."""
    cdef const char* hexdigits = b"0123456789abcdef"
    cdef bytes prefix = ctx.rid_prefix
    cdef unsigned long long n, m
    cdef Py_ssize_t plen = len(prefix), digits = 1, i
    cdef char* p
    ctx.rid += 1
    n = ctx.rid
    m = n >> 4
    while m:
        m >>= 4
        digits += 1
    out = PyBytes_FromStringAndSize(NULL, plen + digits)
    p = PyBytes_AS_STRING(out)
    memcpy(p, <const char*>prefix, plen)
    i = plen + digits
    while i > plen:
        i -= 1
        p[i] = hexdigits[n & 15]
        n >>= 4
    return out


cdef inline tuple _as_tuple(object o):
    """o (a NamedTuple: RequestHead, ResponseHead) as its tuple, unchecked (the caller knows
    it is one): Cython then unpacks and indexes it with C reads of the tuple's items."""
    return <tuple>o


cdef inline bytes _join_piece(object head, object cline, object extra, object data, Py_ssize_t end):
    """head + cline + extra + CRLF + data[end:] as one new bytes, copied once (any piece
    not bytes: the join)."""
    cdef Py_ssize_t hl, cl, xl, dl, n
    cdef char* p
    if type(head) is not bytes or type(cline) is not bytes or type(extra) is not bytes or type(data) is not bytes:
        return b"".join((head, cline, extra, b"\r\n", data[end:]))
    hl = len(<bytes>head)
    cl = len(<bytes>cline)
    xl = len(<bytes>extra)
    dl = len(<bytes>data) - end
    if dl < 0:
        dl = 0
    out = PyBytes_FromStringAndSize(NULL, hl + cl + xl + 2 + dl)
    p = PyBytes_AS_STRING(out)
    memcpy(p, <const char*><bytes>head, hl)
    n = hl
    memcpy(p + n, <const char*><bytes>cline, cl)
    n += cl
    memcpy(p + n, <const char*><bytes>extra, xl)
    n += xl
    p[n] = 13
    p[n + 1] = 10
    n += 2
    if dl:
        memcpy(p + n, (<const char*><bytes>data) + end, dl)
    return out


# Direct writes (the compiled build only): a plain TCP transport's socket is written to
# here when the transport has nothing buffered, as the loop's own write would first try;
# what the socket does not take goes to transport.write (gateway/exchange/sockets.py).
cdef extern from "<sys/socket.h>" nogil:
    ctypedef struct _msghdr "struct msghdr":
        iovec *msg_iov
        size_t msg_iovlen
    ssize_t _c_send "send"(int fd, const void *buf, size_t n, int flags)
    ssize_t _c_sendmsg "sendmsg"(int fd, const _msghdr *msg, int flags)
    enum: MSG_NOSIGNAL
    enum: MSG_DONTWAIT

cdef extern from "<string.h>" nogil:
    void *_c_memset "memset"(void *s, int c, size_t n)


cdef inline bint _direct(object t, int fd) except -1:
    """The socket may be written now: a plain TCP transport, open, nothing buffered."""
    return fd >= 0 and not t.is_closing() and not t.get_write_buffer_size()


cdef inline object _write(object t, int fd, object data):
    """transport.write(data), the socket first when _direct (bytes only)."""
    cdef Py_ssize_t n, sent
    if type(data) is bytes and _direct(t, fd):
        n = len(<bytes>data)
        sent = _c_send(fd, PyBytes_AS_STRING(data), n, MSG_NOSIGNAL | MSG_DONTWAIT)
        if sent == n:
            return None
        if sent > 0:
            data = data[sent:]
    t.write(data)


cdef inline Py_ssize_t _write_response(object t, int fd, object rhead, object cline, object extra, object data,
                                       Py_ssize_t end) except -1:
    """rhead + cline + extra + CRLF + data[end:] to the transport: one sendmsg of the
    pieces when _direct (no joined copy), else (or for what the socket did not take) the
    one-copy _join_piece through transport.write; its length."""
    cdef iovec iov[5]
    cdef _msghdr msg
    cdef Py_ssize_t total, sent
    if (type(rhead) is not bytes or type(cline) is not bytes or type(extra) is not bytes
            or type(data) is not bytes or not _direct(t, fd)):
        piece = _join_piece(rhead, cline, extra, data, end)
        t.write(piece)
        return len(piece)
    iov[0].iov_base = PyBytes_AS_STRING(rhead)
    iov[0].iov_len = len(<bytes>rhead)
    iov[1].iov_base = PyBytes_AS_STRING(cline)
    iov[1].iov_len = len(<bytes>cline)
    iov[2].iov_base = PyBytes_AS_STRING(extra)
    iov[2].iov_len = len(<bytes>extra)
    iov[3].iov_base = <char*>b"\r\n"
    iov[3].iov_len = 2
    iov[4].iov_base = PyBytes_AS_STRING(data) + end
    iov[4].iov_len = len(<bytes>data) - end
    total = iov[0].iov_len + iov[1].iov_len + iov[2].iov_len + 2 + iov[4].iov_len
    _c_memset(&msg, 0, sizeof(msg))
    msg.msg_iov = iov
    msg.msg_iovlen = 5
    sent = _c_sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT)
    if sent == total:
        return total
    # the rest (or all) through the transport, which buffers it or reports the error
    piece = _join_piece(rhead, cline, extra, data, end)
    t.write(piece[sent:] if sent > 0 else piece)
    return total


cdef enum:
    _NBOUNDS = 18  # len(BUCKETS) (checked at import)
cdef double _BOUNDS_C[_NBOUNDS]  # BUCKETS, filled at import


cdef inline Py_ssize_t _bucket(double seconds) noexcept:
    """bisect_left(BUCKETS, seconds), over _BOUNDS_C (the twin calls bisect_left)."""
    cdef Py_ssize_t lo = 0, hi = _NBOUNDS, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if _BOUNDS_C[mid] < seconds:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline bint _is_preface(object data) except -1:
    """data begins with h2c's connection preface ("PRI *"): not an HTTP/1 request."""
    if type(data) is bytes:
        return len(<bytes>data) >= 5 and memcmp(<const char*><bytes>data, b"PRI *", 5) == 0
    return bytes(data[:5]) == b"PRI *"
