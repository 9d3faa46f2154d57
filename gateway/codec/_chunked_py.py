"""The chunked body decoder (RFC 9112 7.1) in plain Python: the twin of `_chunked.pyx`,
with the same rules, errors and split-invariance (tests/gateway/codec holds both to them)."""
from __future__ import annotations

from ._http1_py import INT64_MAX, _WS, _field
from .types import FIELD_VCHAR, TOKEN, TRAILER_FORBIDDEN, HeadError

__all__ = ["ChunkedDecoder", "chunk_size"]

# ChunkedDecoder states
_SIZE, _DATA, _DATA_CR, _DATA_LF, _TRAILER, _DONE = range(6)
_QDTEXT = bytes(1 if c in (9, 32, 0x21) or 0x23 <= c <= 0x5B or 0x5D <= c <= 0x7E or c >= 0x80 else 0
                for c in range(256))


def chunk_size(line: bytes, status: int) -> int:
    """chunk-size [ chunk-ext ] (RFC 9112 7.1, 7.1.1): the size; extensions validated, dropped."""
    n = len(line)
    i = 0
    size = 0
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
        if size > INT64_MAX >> 4:
            raise HeadError(status, "chunk-size-overflow")
        size = size * 16 + d
        i += 1
    if i == 0:
        raise HeadError(status, "bad-chunk-size")
    while i < n:  # *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
        while i < n and line[i] in _WS:
            i += 1
        if i == n or line[i] != 59:  # ';'
            raise HeadError(status, "bad-chunk-extension")
        i += 1
        while i < n and line[i] in _WS:
            i += 1
        j = i
        while i < n and TOKEN[line[i]]:
            i += 1
        if i == j:
            raise HeadError(status, "bad-chunk-extension")
        k = i
        while k < n and line[k] in _WS:
            k += 1
        if k < n and line[k] == 61:  # '='
            i = k + 1
            while i < n and line[i] in _WS:
                i += 1
            if i < n and line[i] == 34:  # quoted-string
                i += 1
                while True:
                    if i >= n:
                        raise HeadError(status, "bad-chunk-extension")
                    c = line[i]
                    if c == 34:
                        i += 1
                        break
                    if c == 92:  # quoted-pair
                        i += 1
                        if i >= n or not FIELD_VCHAR[line[i]]:
                            raise HeadError(status, "bad-chunk-extension")
                    elif not _QDTEXT[c]:
                        raise HeadError(status, "bad-chunk-extension")
                    i += 1
            else:
                j = i
                while i < n and TOKEN[line[i]]:
                    i += 1
                if i == j:
                    raise HeadError(status, "bad-chunk-extension")
    return size


class ChunkedDecoder:
    """Incremental, strict decoder of a chunked body (RFC 9112 7.1).

    feed(data) returns the payload pieces found in data (or appends them to `out`).
    Chunk extensions are validated and dropped; the trailer section is validated like
    header fields, bounded by `max_trailers` bytes, and dropped (the gateway forwards no
    trailers: a recipient may discard them, RFC 9110 6.5.1). After the last chunk `done`
    is True and `leftover` holds the bytes after the body (a pipelined request). Errors
    raise HeadError(error_status, ...): 400 for a request body, 502 for a response's.
    The result never depends on how the body was split into reads."""

    __slots__ = ("done", "leftover", "error_status", "max_line", "max_trailers", "_state",
                 "_remaining", "_line", "_trailer_bytes")

    def __init__(self, *, error_status: int = 400, max_line: int = 4096, max_trailers: int = 16384) -> None:
        self.done = False
        self.leftover = b""
        self.error_status = error_status
        self.max_line = max_line
        self.max_trailers = max_trailers
        self._state = _SIZE
        self._remaining = 0
        self._line = b""
        self._trailer_bytes = 0

    def feed(self, data: bytes, out: list[bytes] | None = None) -> list[bytes]:
        if out is None:
            out = []
        if self._state == _DONE:
            self.leftover += data
            return out
        n = len(data)
        i = 0
        status = self.error_status
        while i < n:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - i)
                out.append(data if take == n else data[i:i + take])
                i += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _DATA_CR
            elif state == _DATA_CR:
                if data[i] != 13:
                    raise HeadError(status, "bad-chunk-end")
                i += 1
                self._state = _DATA_LF
            elif state == _DATA_LF:
                if data[i] != 10:
                    raise HeadError(status, "bad-chunk-end")
                i += 1
                self._state = _SIZE
            else:  # a line: the chunk-size line or a trailer line
                lf = data.find(b"\n", i)
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

    def _check_partial(self) -> None:
        if self._state == _SIZE:
            if len(self._line) > self.max_line + 1:
                raise HeadError(self.error_status, "chunk-line-too-long")
        elif self._trailer_bytes + len(self._line) + 1 > self.max_trailers:
            raise HeadError(self.error_status, "trailers-too-large")

    def _line_done(self, line: bytes) -> bool:
        """Handle one complete line (without its LF); True when the body has ended."""
        status = self.error_status
        if self._state == _SIZE:
            if len(line) > self.max_line + 1:
                raise HeadError(status, "chunk-line-too-long")
            if line[-1:] != b"\r":
                raise HeadError(status, "bare-lf")
            size = chunk_size(line[:-1], status)
            if size:
                self._remaining = size
                self._state = _DATA
            else:
                self._state = _TRAILER
            return False
        self._trailer_bytes += len(line) + 1
        if self._trailer_bytes > self.max_trailers:
            raise HeadError(status, "trailers-too-large")
        if line[-1:] != b"\r":
            raise HeadError(status, "bare-lf")
        if len(line) == 1:
            self._state = _DONE
            self.done = True
            return True
        name, _ = _field(line, 0, len(line) - 1, status)
        if name.lower() in TRAILER_FORBIDDEN:
            raise HeadError(status, "framing-in-trailers")
        return False
