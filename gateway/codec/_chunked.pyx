# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The chunked body decoder (RFC 9112 7.1), compiled: the twin of `_chunked_py.py`, with
the same rules, errors and split-invariance, over the raw bytes of each read."""
include "_scan.pxi"

__all__ = ["ChunkedDecoder", "chunk_size"]

cdef unsigned char T_QDTEXT[256]
for _c in range(256):
    T_QDTEXT[_c] = 1 if (_c in (9, 32, 0x21) or 0x23 <= _c <= 0x5B or 0x5D <= _c <= 0x7E or _c >= 0x80) else 0


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
        line = line + b"\n"  # _field reads a line up to its CRLF (trailers are rare)
        b = <const unsigned char*>PyBytes_AS_STRING(line)
        _field(b, 0, n + 1, status, &colon, &va, &vz)
        if (colon == 14 and _ieq(b, b"content-length", 14)) or (colon == 17 and _ieq(b, b"transfer-encoding", 17)):
            raise HeadError(status, "framing-in-trailers")
        return False
