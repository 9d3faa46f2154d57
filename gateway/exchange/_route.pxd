# Augments _route_py.py when setup.py compiles it as gateway.exchange._route (Cython's pure
# Python mode): the route snapshot and the context extension types with typed fields, the
# warm plan's functions C functions. _core.pxd cimports them (its calls are C calls).
cimport cython

cdef bint _COMPILED
cdef object _MISS
cdef Py_ssize_t _HOT_MEMO_SIZE

cdef class RouteHot:
    cdef readonly object route, label, policy, backend, bkey, warm
    cdef readonly tuple endpoints, keys
    cdef readonly bint fast, fast_tls
    cdef readonly double read_timeout


@cython.locals(h=RouteHot)
cdef RouteHot _route_hot(r)


cpdef object round_robin(object endpoints, object state, object key)

@cython.locals(c=Py_ssize_t)
cdef Py_ssize_t _next_index(dict rr, object key, Py_ssize_t n) except -1
cpdef double wait_until(double now, object policy, bint connected) except? -1.0

@cython.locals(acc=double, share=double, i=Py_ssize_t, outcome=int, total=double, target=double, cum=double,
               mirror_pct=double, canary=tuple, cluster=tuple, row=tuple, crow=tuple, drawn=tuple, src=bytes,
               low=bytes, clusters=tuple)
cpdef tuple resolve_warm(tuple plan, bytes fields, double rand, double rand_cluster, double rand_mirror)

@cython.locals(n=Py_ssize_t, k=Py_ssize_t, found=Py_ssize_t, i=Py_ssize_t, j=Py_ssize_t, end=Py_ssize_t,
               c=int, p=cython.p_uchar, kp=cython.p_uchar)
cdef object _header_value(bytes fields, bytes key)


cdef class ContextCore:
    cdef public object table, metrics
    cdef public bint draining
    cdef public unsigned long long rid
    cdef public bytes rid_prefix
    cdef object hot_table, counts_of
    cdef dict hot_memo, hot_routes
    cdef object counts  # the metrics' RequestCounts (_core's: typed where it is called)


@cython.locals(routes=dict, memo=dict, hot=RouteHot)
cdef RouteHot _hot_miss(ContextCore ctx, object ds, object table, tuple key)
