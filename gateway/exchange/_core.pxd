# Augments _core_py.py when setup.py compiles it as gateway.exchange._core (Cython's pure
# Python mode): the three hot classes become extension types with typed fields, and the
# hot methods cpdef (C calls between them; Python subclasses may still call them).
# A field here must not be repeated in a subclass's __slots__ (it would shadow this one).
cimport cython

cdef dict _package
cdef object _MISS, log, _TARGET, _HOST, _FIELDS, _random, _STATUS, _KEEP, _CLEN, _CHUNKED, _RHEAD
cdef Py_ssize_t _MAX_HEAD, _SUM, _RECV, _SENT
cdef tuple _BOUNDS
cdef int _HEAD
cdef bint _COMPILED

@cython.locals(rr=dict, n=Py_ssize_t)
cpdef object round_robin(object endpoints, object state, object key)
cpdef double wait_until(double now, object policy, bint connected) except? -1.0

@cython.locals(acc=double, share=double, i=Py_ssize_t, outcome=int, total=double, target=double, cum=double,
               mirror_pct=double, canary=tuple, cluster=tuple, row=tuple, crow=tuple, drawn=tuple, src=bytes,
               low=bytes, clusters=tuple)
cpdef tuple resolve_warm(tuple plan, bytes fields, double rand, double rand_cluster, double rand_mirror)

@cython.locals(n=Py_ssize_t, k=Py_ssize_t, found=Py_ssize_t, i=Py_ssize_t, j=Py_ssize_t, end=Py_ssize_t,
               c=int, p=cython.p_uchar, kp=cython.p_uchar)
cdef object _header_value(bytes fields, bytes key)


cdef class Exchange:
    cdef dict __dict__
    cdef public int phase
    cdef public object ds, req, method, keep_alive, request_done, body, body_size, replayable
    cdef public object request_id, start, route, backend, label, answer, extra_resp, view, headers
    cdef public object mirror, mirror_head, hard_deadline, head, upstream, endpoint, attempt, tried
    cdef public object free_tries, counted, sent, deadline, timer_attempt, status, cluster
    cdef public object chunked_response


cdef class DownstreamCore:
    cdef public object ctx, scheme, transport, peer, buf, cur, active, tunnel, held, final, now
    cdef public object max_line, max_headers, head_limit, health, balancer
    cdef public dict pools
    cdef public list out
    cdef public bint tls, http11, close_after, paused
    cdef public double began, deadline, header_timeout, idle_timeout
    cdef public Py_ssize_t sent, logged  # response bytes flushed, and accounted by the metrics
    cdef object __weakref__

    cpdef flush(self)

    @cython.locals(end=Py_ssize_t, ex=Exchange)
    cpdef data_received(self, data)

    @cython.locals(ex=Exchange, has_body=bint, memo=dict)
    cpdef _on_head(self, head, double began)

    @cython.locals(rr=dict, n=Py_ssize_t)
    cdef _warm_head(self, Exchange ex, head, r, tuple warm)

    cpdef bint _fast_send(self, Exchange ex, r, bint plain) except -1

    @cython.locals(conn=UpstreamCore, idle=list, pool=PoolCore)
    cdef _send_on(self, Exchange ex, r, ep)

    @cython.locals(now=double, idle=list, counts=RequestCounts, pool=PoolCore)
    cpdef response_complete(self, Exchange ex, bint reusable, UpstreamCore upstream)


@cython.final
cdef class RequestCounts:
    cdef public object owner, log
    cdef public dict rows
    cdef object c_route, c_backend, c_label, c_cluster, c_method, c_status
    cdef list c_row

    @cython.locals(c=DownstreamCore, n=Py_ssize_t, sent=Py_ssize_t, received=Py_ssize_t, row=list,
                   start=double, seconds=double, i=Py_ssize_t, acc=double, body=Py_ssize_t)
    cpdef done(self, Exchange ex, double now)

    cdef list _row(self, Exchange ex, r)


@cython.locals(lo=Py_ssize_t, hi=Py_ssize_t, mid=Py_ssize_t, bound=double)
cdef Py_ssize_t _bucket(tuple bounds, double seconds)


cdef class PoolCore:
    cdef public list idle
    cdef public Py_ssize_t max_idle


cdef class UpstreamCore:
    cdef public object pool, transport, buf, tunnel, cluster, cline
    cdef public Exchange ex
    cdef public double idle_since
    cdef public int state
    cdef public bint reused

    cpdef send(self, Exchange ex, data)

    @cython.locals(ex=Exchange, end=Py_ssize_t, code=Py_ssize_t, clen=Py_ssize_t, reusable=bint,
                   dc=DownstreamCore, client_ok=bint, keep_alive=bint, chunked=bint, whole=bint)
    cpdef data_received(self, data)


@cython.locals(out=list)
cdef _whole_response(DownstreamCore ds, Exchange ex, piece, bint reusable, UpstreamCore up)
