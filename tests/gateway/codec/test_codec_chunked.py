"""ChunkedDecoder (RFC 9112 7.1) in both implementations: valid bodies decode, every
malformed form is refused, and the outcome never depends on how the bytes were split."""
from __future__ import annotations

from types import ModuleType

import pytest

from h1codec_support import chunked

VALID = [
    ("one-chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello", b""),
    ("two-chunks", b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde", b""),
    ("uppercase-hex", b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", b""),
    ("leading-zeros", b"0003\r\nabc\r\n000\r\n\r\n", b"abc", b""),
    ("extensions", b"3;a=b\r\nabc\r\n2;flag\r\nde\r\n0;last=1\r\n\r\n", b"abcde", b""),
    ("extension-bws", b"3 ; a = b\r\nabc\r\n0\r\n\r\n", b"abc", b""),
    ("extension-quoted", b'3;a="x;y\\"z"\r\nabc\r\n0\r\n\r\n', b"abc", b""),
    ("trailers-dropped", b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-B:2\r\n\r\n", b"abc", b""),
    ("host-in-trailers", b"3\r\nabc\r\n0\r\nHost: other\r\n\r\n", b"abc", b""),
    ("leftover-pipelined", b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n", b"a", b"GET / HTTP/1.1\r\n"),
    ("crlf-in-data", b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n", b""),
]
INVALID = [
    ("not-hex", b"zz\r\nab\r\n0\r\n\r\n", "bad-chunk-size"),
    ("empty-size", b"\r\nab\r\n0\r\n\r\n", "bad-chunk-size"),
    ("hex-prefix", b"0x5\r\nhello\r\n0\r\n\r\n", "bad-chunk-extension"),
    ("negative", b"-5\r\nhello\r\n0\r\n\r\n", "bad-chunk-size"),
    ("space-after-size", b"5 \r\nhello\r\n0\r\n\r\n", "bad-chunk-extension"),
    ("space-before-size", b" 5\r\nhello\r\n0\r\n\r\n", "bad-chunk-size"),
    ("overflow", b"f" * 17 + b"\r\n", "chunk-size-overflow"),
    ("overflow-int64", b"8000000000000000\r\n", "chunk-size-overflow"),
    ("semicolon-no-name", b"5;\r\nhello\r\n0\r\n\r\n", "bad-chunk-extension"),
    ("ext-empty-value", b"5;a=\r\nhello\r\n0\r\n\r\n", "bad-chunk-extension"),
    ("ext-unclosed-quote", b'5;a="x\r\nhello\r\n0\r\n\r\n', "bad-chunk-extension"),
    ("ext-ctl", b"5;a\x01\r\nhello\r\n0\r\n\r\n", "bad-chunk-extension"),
    ("size-bare-lf", b"5\nhello\r\n0\r\n\r\n", "bare-lf"),
    ("size-bare-cr", b"5\rhello\r\n0\r\n\r\n", "bad-chunk-extension"),
    ("data-too-long", b"2\r\nokXX0\r\n\r\n", "bad-chunk-end"),
    ("data-lf-only", b"2\r\nok\n0\r\n\r\n", "bad-chunk-end"),
    ("last-bare-lf", b"0\r\n\n", "bare-lf"),
    ("trailer-obs-fold", b"0\r\nX-A: 1\r\n 2\r\n\r\n", "obs-fold"),
    ("trailer-no-colon", b"0\r\nX-A\r\n\r\n", "bad-header-name"),
    ("trailer-space-before-colon", b"0\r\nX-A : 1\r\n\r\n", "bad-header-name"),
    ("trailer-content-length", b"3\r\nabc\r\n0\r\nContent-Length: 40\r\n\r\n", "framing-in-trailers"),
    ("trailer-transfer-encoding", b"0\r\nTransfer-Encoding: chunked\r\n\r\n", "framing-in-trailers"),
    ("size-line-too-long", b"1;" + b"a" * 5000 + b"\r\n", "chunk-line-too-long"),
    ("trailers-too-large", b"0\r\n" + b"X-Pad: " + b"v" * 20000 + b"\r\n\r\n", "trailers-too-large"),
]


def splits(raw: bytes) -> list[list[bytes]]:
    """Whole, byte by byte, and every split in two."""
    out = [[raw], [raw[i:i + 1] for i in range(len(raw))]]
    out += [[raw[:i], raw[i:]] for i in range(1, len(raw))] if len(raw) < 400 else []
    return out


@pytest.mark.parametrize("name,raw,payload,leftover", VALID, ids=[v[0] for v in VALID])
def test_valid(codec: ModuleType, name: str, raw: bytes, payload: bytes, leftover: bytes) -> None:
    for pieces in splits(raw):
        assert chunked(codec, pieces) == (payload, True, leftover, None), pieces


@pytest.mark.parametrize("name,raw,reason", INVALID, ids=[v[0] for v in INVALID])
def test_invalid(codec: ModuleType, name: str, raw: bytes, reason: str) -> None:
    results = {chunked(codec, pieces, error_status=502)[3] for pieces in splits(raw)}
    assert results == {(502, reason)}


def test_feed_after_done_goes_to_leftover(codec: ModuleType) -> None:
    dec = codec.ChunkedDecoder()
    assert dec.feed(b"0\r\n\r\nAB") == []
    assert dec.done and dec.leftover == b"AB"
    dec.feed(b"CD")
    assert dec.leftover == b"ABCD"


def test_incomplete_is_not_done(codec: ModuleType) -> None:
    assert chunked(codec, [b"5\r\nhel"]) == (b"hel", False, b"", None)
