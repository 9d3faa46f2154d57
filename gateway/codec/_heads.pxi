# Included by _http1.pyx only: the head rules below the scans of _scan.pxi (header classes,
# uri-host, Content-Length digits, Transfer-Encoding codings, Connection tokens).


cdef enum:  # header classes
    K_FORWARD, K_HOST, K_CL, K_TE, K_CONNECTION, K_UPGRADE, K_EXPECT, K_XFF, K_RID, K_VIA, K_DROP


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




cdef set _connection(const unsigned char* b, Py_ssize_t q, Py_ssize_t vz, int* flags, set named):
    """Connection's comma-separated tokens in b[q:vz]: close (1), keep-alive (2), upgrade (4)
    set bits of `flags`; any other token is a header name to remove, added lowercased to
    `named` (created when None): the set is returned."""
    cdef Py_ssize_t j, a, z
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
            flags[0] |= 1
        elif z - a == 10 and _ieq(b + a, b"keep-alive", 10):
            flags[0] |= 2
        elif z - a == 7 and _ieq(b + a, b"upgrade", 7):
            flags[0] |= 4
        elif z > a:
            if named is None:
                named = set()
            named.add(_b(b + a, z - a).lower())
        q = j + 1
    return named
