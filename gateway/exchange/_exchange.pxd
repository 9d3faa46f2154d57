# Augments _exchange_py.py when setup.py compiles it as gateway.exchange._exchange (Cython's
# pure Python mode): Exchange an extension type with typed fields (no class-level defaults:
# its __cinit__ sets EXCHANGE_DEFAULTS). _core.pxd cimports it (its field reads are C).
# A field here must not be repeated in a subclass's __slots__ (it would shadow this one).

cdef class Exchange:
    cdef dict __dict__
    cdef public int phase
    cdef public object ds, req, method, keep_alive, request_done, body, body_size, replayable
    cdef public object request_id, start, route, backend, label, answer, extra_resp, view, headers
    cdef public object mirror, mirror_head, hard_deadline, head, upstream, endpoint, attempt, tried
    cdef public object free_tries, counted, sent, deadline, timer_attempt, status, cluster
    cdef public object chunked_response

cpdef reset_exchange(Exchange ex)
