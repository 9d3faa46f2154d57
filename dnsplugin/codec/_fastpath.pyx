# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled DNS fast path: learned answers patched in C, datagrams read with recvmmsg
and answered with sendmmsg (Linux), a batch of up to 64 per system call.

Answer latency is timed per batch (two CLOCK_MONOTONIC reads around recvmmsg..sendmmsg)
and every reply of the batch is observed with that time, into a C row read by
pumped_latency() at scrape time (dnsplugin.metrics): no Python object per batch.

Same interface and the same bytes as _fastpath_py (tests/dnsplugin/test_codec_*.py hold
both to one corpus and to random datagrams). A learned answer is sent without building a
Python object for it: four iovecs point at the request's ID, the entry's flags+counts,
the request's question (its case) and the entry's body.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.string cimport memcpy, memset

from .types import LATENCY_BOUNDS as _LATENCY_BOUNDS
from .types import MAX_QUERY as _MAX_QUERY


cdef extern from "<errno.h>" nogil:
    int EWOULDBLOCK

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct iovec:
        void *iov_base
        size_t iov_len
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct timespec:
        long tv_sec
        long tv_nsec
    int recvmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags, timespec *timeout)
    int sendmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags)
    int MSG_DONTWAIT
    int MSG_TRUNC
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    unsigned short ntohs(unsigned short)
    unsigned int ntohl(unsigned int)

cdef extern from "<time.h>" nogil:
    int clock_gettime(int clk_id, timespec *tp)
    int CLOCK_MONOTONIC

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)

cdef enum:
    BATCH = 64
    QBUF = 4097          # MAX_QUERY + 1: a longer datagram is seen as truncated and dropped
    IOV_PER_REPLY = 4

assert _MAX_QUERY + 1 == QBUF

# fleetgate_dns_answer_seconds bucket bounds as C doubles, and pump's latency row (answers
# per bucket, +Inf, sum of seconds) since import
cdef double BOUNDS[32]
cdef double LATENCY[34]
cdef int NBOUNDS = len(_LATENCY_BOUNDS)
assert NBOUNDS < 32
for _i, _b in enumerate(_LATENCY_BOUNDS):
    BOUNDS[_i] = _b
memset(LATENCY, 0, sizeof(LATENCY))

# Receive and send state for one batch. Module-level: one event loop thread drives pump.
cdef unsigned char rbuf[BATCH][QBUF]
cdef sockaddr_storage rname[BATCH]
cdef iovec riov[BATCH]
cdef mmsghdr rmsg[BATCH]
cdef iovec siov[BATCH * IOV_PER_REPLY]
cdef mmsghdr smsg[BATCH]


cdef inline object _lookup(dict fast, const unsigned char *p, Py_ssize_t n):
    """The learned entry (a borrowed 5-tuple) for the query at p, or None."""
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef bytes key
    cdef unsigned char *k
    cdef PyObject *found
    if n < 17:
        return None
    key = PyBytes_FromStringAndSize(NULL, n - 2)
    k = <unsigned char *>PyBytes_AS_STRING(key)
    for i in range(n - 2):
        c = p[i + 2]
        k[i] = c | 0x20 if 65 <= c <= 90 else c
    found = PyDict_GetItem(fast, key)
    if found == NULL:
        return None
    return <object>found


cdef inline Py_ssize_t _qend(object entry, Py_ssize_t n):
    cut = <object>PyTuple_GET_ITEM(entry, 2)
    return n if cut is None else n + <Py_ssize_t>cut


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline void _observe(double seconds, int n) noexcept nogil:
    """n replies that took `seconds` each, into LATENCY (bisect_left over BOUNDS)."""
    cdef int i = 0
    while i < NBOUNDS and seconds > BOUNDS[i]:
        i += 1
    LATENCY[i] += n
    LATENCY[NBOUNDS + 1] += seconds * n


def pumped_latency():
    """The answer-latency row of every reply pump sent in this process (a copy)."""
    return [LATENCY[i] for i in range(NBOUNDS + 2)]


cdef inline void _count(list counts, object entry):
    cdef Py_ssize_t qtype = <Py_ssize_t><object>PyTuple_GET_ITEM(entry, 3)
    counts[qtype] += 1


def answer(dict fast, bytes data, list counts, bint tcp=False):
    """The learned answer to `data` (bytes the resolver gave for the same query), else None."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), qend, size
    cdef bytes head, body, out
    cdef char *o
    entry = _lookup(fast, p, n)
    if entry is None or PyTuple_GET_SIZE(entry) != 5:
        return None
    if tcp and not <object>PyTuple_GET_ITEM(entry, 4):
        return None
    head = <bytes>PyTuple_GET_ITEM(entry, 0)
    body = <bytes>PyTuple_GET_ITEM(entry, 1)
    qend = _qend(entry, n)
    if PyBytes_GET_SIZE(head) != 10 or qend < 12 or qend > n:
        return None
    size = 12 + (qend - 12) + PyBytes_GET_SIZE(body)
    out = PyBytes_FromStringAndSize(NULL, size)
    o = PyBytes_AS_STRING(out)
    memcpy(o, p, 2)
    memcpy(o + 2, PyBytes_AS_STRING(head), 10)
    memcpy(o + 12, p + 12, qend - 12)
    memcpy(o + qend, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
    _count(counts, entry)
    return out


cdef object _address(sockaddr_storage *sa):
    """The peer as asyncio gives it: (host, port) or (host, port, flowinfo, scope_id)."""
    cdef char text[64]
    cdef sockaddr_in *a4
    cdef sockaddr_in6 *a6
    if sa.ss_family == AF_INET:
        a4 = <sockaddr_in *>sa
        inet_ntop(AF_INET, &a4.sin_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(a4.sin_port))
    if sa.ss_family == AF_INET6:
        a6 = <sockaddr_in6 *>sa
        inet_ntop(AF_INET6, &a6.sin6_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(a6.sin6_port), ntohl(a6.sin6_flowinfo), a6.sin6_scope_id)
    return None


cdef int _send(int fd, int count):
    """sendmmsg the first `count` prepared replies; a send that would block drops the rest."""
    cdef int sent = 0, r
    while sent < count:
        r = sendmmsg(fd, &smsg[sent], count - sent, 0)
        if r < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN or errno == EWOULDBLOCK:
                break
            sent += 1  # this reply's peer is unreachable: skip it, send the others
            continue
        sent += r
    return sent


def pump(sock, holder, list counts, slow, int limit):
    """Answer up to `limit` waiting datagrams; returns how many were read (0: none waiting).

    Datagrams the learned answers do not cover go to slow(data, addr), which returns the
    reply or None (dropped, or answered later). A send that would block drops the reply.
    Each batch's replies are observed with its time (pumped_latency).
    """
    cdef int fd = sock.fileno()
    cdef int done = 0, got, i, out, want
    cdef Py_ssize_t n, qend
    cdef unsigned char *p
    cdef dict fast
    cdef list keep
    cdef bytes head, body, reply
    cdef iovec *v
    cdef double started
    while done < limit:
        want = limit - done
        if want > BATCH:
            want = BATCH
        for i in range(want):
            riov[i].iov_base = rbuf[i]
            riov[i].iov_len = QBUF
            memset(&rmsg[i].msg_hdr, 0, sizeof(msghdr))
            rmsg[i].msg_hdr.msg_name = &rname[i]
            rmsg[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            rmsg[i].msg_hdr.msg_iov = &riov[i]
            rmsg[i].msg_hdr.msg_iovlen = 1
        started = _now()
        got = recvmmsg(fd, rmsg, want, MSG_DONTWAIT, NULL)
        if got < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN or errno == EWOULDBLOCK:
                break
            done += 1  # an ICMP error queued on the socket: consumed, nothing to answer
            continue
        if got == 0:
            break
        done += got
        fast = holder.fast
        keep = []  # every object an iovec points into, alive until sendmmsg returns
        out = 0
        for i in range(got):
            n = rmsg[i].msg_len
            p = rbuf[i]
            if rmsg[i].msg_hdr.msg_flags & MSG_TRUNC or n > QBUF - 1:
                continue
            v = &siov[out * IOV_PER_REPLY]
            entry = _lookup(fast, p, n)
            if entry is not None and PyTuple_GET_SIZE(entry) == 5:
                head = <bytes>PyTuple_GET_ITEM(entry, 0)
                body = <bytes>PyTuple_GET_ITEM(entry, 1)
                qend = _qend(entry, n)
                if PyBytes_GET_SIZE(head) == 10 and 12 <= qend <= n:
                    keep.append(entry)
                    v[0].iov_base = p
                    v[0].iov_len = 2
                    v[1].iov_base = PyBytes_AS_STRING(head)
                    v[1].iov_len = 10
                    v[2].iov_base = p + 12
                    v[2].iov_len = qend - 12
                    v[3].iov_base = PyBytes_AS_STRING(body)
                    v[3].iov_len = PyBytes_GET_SIZE(body)
                    _count(counts, entry)
                    memset(&smsg[out].msg_hdr, 0, sizeof(msghdr))
                    smsg[out].msg_hdr.msg_name = &rname[i]
                    smsg[out].msg_hdr.msg_namelen = rmsg[i].msg_hdr.msg_namelen
                    smsg[out].msg_hdr.msg_iov = v
                    smsg[out].msg_hdr.msg_iovlen = 4
                    out += 1
                    continue
            reply = slow(PyBytes_FromStringAndSize(<char *>p, n), _address(&rname[i]))
            if reply is None:
                continue
            keep.append(reply)
            v[0].iov_base = PyBytes_AS_STRING(reply)
            v[0].iov_len = PyBytes_GET_SIZE(reply)
            memset(&smsg[out].msg_hdr, 0, sizeof(msghdr))
            smsg[out].msg_hdr.msg_name = &rname[i]
            smsg[out].msg_hdr.msg_namelen = rmsg[i].msg_hdr.msg_namelen
            smsg[out].msg_hdr.msg_iov = v
            smsg[out].msg_hdr.msg_iovlen = 1
            out += 1
        if out:
            _send(fd, out)
            _observe(_now() - started, out)
        if got < want:
            break  # the socket is drained
    return done
