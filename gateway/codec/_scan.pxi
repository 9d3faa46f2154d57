# Shared by the compiled codec modules (_http1.pyx, _chunked.pyx): C tables built from
# types.py's definitions, and the scans over `const unsigned char*` both use.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t
from libc.string cimport memchr, memcpy

from .types import FIELD_VCHAR, HOST_CHARS, METHOD, TARGET, TOKEN, HeadError

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #define FG_ONES 0x0101010101010101ULL
    #define FG_HIGHS 0x8080808080808080ULL
    /* The first offset in p[i:n] of a byte < 0x20 or == 0x7F (a CTL; HTAB included), or n.
       Eight bytes per step (the word tests are exact for presence, and for the lowest
       flagged byte: a borrow only starts at a byte that matches), then byte by byte. */
    #if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* the lowest flagged byte of a word test is exact: its offset straight from the mask */
    #define FG_FIRST(m) (__builtin_ctzll(m) >> 3)
    #define FG_HAVE_FIRST 1
    #endif
    static inline Py_ssize_t fg_ctl(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) {
        uint64_t x, y, m;
        while (i + 8 <= n) {
            memcpy(&x, p + i, 8);
            y = x ^ (FG_ONES * 0x7F);
            m = (((x - FG_ONES * 0x20) & ~x) | ((y - FG_ONES) & ~y)) & FG_HIGHS;
            if (m) {
    #ifdef FG_HAVE_FIRST
                return i + FG_FIRST(m);
    #else
                break;
    #endif
            }
            i += 8;
        }
        while (i < n && p[i] >= 0x20 && p[i] != 0x7F) i++;
        return i;
    }
    /* The first offset in p[i:n] of a byte <= 13 (CR, LF and lower), or n. */
    static inline Py_ssize_t fg_low(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) {
        uint64_t x, m;
        while (i + 8 <= n) {
            memcpy(&x, p + i, 8);
            m = (x - FG_ONES * 14) & ~x & FG_HIGHS;
            if (m) {
    #ifdef FG_HAVE_FIRST
                return i + FG_FIRST(m);
    #else
                break;
    #endif
            }
            i += 8;
        }
        while (i < n && p[i] > 13) i++;
        return i;
    }
    """
    Py_ssize_t fg_ctl(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil
    Py_ssize_t fg_low(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil

cdef int64_t INT64_MAX = 0x7FFFFFFFFFFFFFFF

cdef unsigned char T_TOKEN[256]
cdef unsigned char T_METHOD[256]
cdef unsigned char T_VCHAR[256]
cdef unsigned char T_TARGET[256]
cdef unsigned char T_HOST[256]
cdef unsigned char T_LOWER[256]


cdef void _fill(unsigned char* t, bytes src) noexcept:
    cdef int i
    for i in range(256):
        t[i] = src[i]


_fill(T_TOKEN, TOKEN)
_fill(T_METHOD, METHOD)
_fill(T_VCHAR, FIELD_VCHAR)
_fill(T_TARGET, TARGET)
_fill(T_HOST, HOST_CHARS)
for _c in range(256):
    T_LOWER[_c] = _c + 32 if 65 <= _c <= 90 else _c


cdef inline bint _ieq(const unsigned char* p, const char* lit, Py_ssize_t n) noexcept:
    """p[0:n] equals the lowercase literal, ignoring ASCII case."""
    cdef Py_ssize_t i
    for i in range(n):
        if T_LOWER[p[i]] != <unsigned char>lit[i]:
            return False
    return True


cdef inline Py_ssize_t _find(const unsigned char* b, Py_ssize_t i, Py_ssize_t stop, unsigned char c) noexcept:
    cdef const unsigned char* q
    if i >= stop:
        return -1
    q = <const unsigned char*>memchr(b + i, c, stop - i)
    return -1 if q == NULL else q - b


cdef inline bint _is_ws(unsigned char c) noexcept:
    return c == 32 or c == 9


cdef inline bint _all_in(const unsigned char* t, const unsigned char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if not t[p[i]]:
            return False
    return True


cdef inline bytes _b(const unsigned char* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef inline Py_ssize_t _field(const unsigned char* b, Py_ssize_t p, Py_ssize_t end, int status,
                              Py_ssize_t* colon_out, Py_ssize_t* va, Py_ssize_t* vz) except -2:
    """Validate the header line starting at b[p] (ending at the first CRLF before `end`)
    in one scan, and return the offset of its CR; the name is b[p:colon], the value
    b[va:vz] with OWS trimmed. The errors are the twin's for the same line: a leading
    SP/HTAB is obs-fold, anything wrong before the first ':' bad-header-name (the name
    scan stops at the first non-token byte, which must be that ':'), then any CTL but
    HTAB, or a CR without its LF, in the value bad-header-value."""
    cdef Py_ssize_t q = p, a, z
    cdef unsigned char c
    if p < end and (b[p] == 32 or b[p] == 9):
        raise HeadError(status, "obs-fold")
    while q < end and T_TOKEN[b[q]]:
        q += 1
    if q == p or q >= end or b[q] != 58:
        raise HeadError(status, "bad-header-name")
    colon_out[0] = q
    z = q + 1
    while True:
        z = fg_ctl(b, z, end)
        if z >= end:
            raise HeadError(status, "bad-header-value")
        c = b[z]
        if c == 9:
            z += 1
            continue
        if c == 13 and z + 1 < end and b[z + 1] == 10:
            break
        raise HeadError(status, "bad-header-value")
    a = q + 1
    while a < z and _is_ws(b[a]):
        a += 1
    q = z
    while q > a and _is_ws(b[q - 1]):
        q -= 1
    va[0] = a
    vz[0] = q
    return z
