"""Property-based differential tests (hypothesis): heads built from the HTTP/1 grammar with
random corruptions, and chunked bodies fed in random splits. The compiled codec and its
twin must agree on every result and error; nothing but HeadError may ever be raised; a
head fed a piece at a time (head_end with `resume`) ends where the whole head ends; a
chunked body decodes the same whatever the split."""
from __future__ import annotations

from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from h1codec_support import MAX_HEADERS, MAX_LINE, HeadError, chunked, request, response, same

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

METHODS = [b"GET", b"POST", b"HEAD", b"OPTIONS", b"CONNECT", b"PUT", b"get", b"G T", b""]
TARGETS = [b"/", b"/a?b=c", b"*", b"http://h.example/x", b"https://h.example", b"h.example:443", b"/a#f",
           b"//x", b"http://u@h/", b""]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"http/1.1", b"HTTP/1", b""]
NAMES = [b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Upgrade", b"Expect",
         b"X-Forwarded-For", b"X-Request-Id", b"Via", b"Keep-Alive", b"TE", b"X-A", b"Accept", b"Cookie",
         b"Transfer_Encoding", b"X A", b""]
VALUES = [b"h.example", b"h.example:80", b"[::1]", b"5", b"0", b"-1", b"chunked", b"gzip, chunked",
          b"chunked, chunked", b"close", b"keep-alive", b"upgrade, x-a", b"websocket", b"100-continue",
          b"1.2.3.4", b"", b" padded ", b"caf\xe9", b"a\tb"]
SEPS = [b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\n "]


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    line = draw(st.sampled_from(METHODS)) + draw(st.sampled_from([b" ", b"  ", b"\t"])) + \
        draw(st.sampled_from(TARGETS)) + b" " + draw(st.sampled_from(VERSIONS))
    parts = [line]
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.one_of(st.sampled_from(NAMES), st.binary(min_size=1, max_size=6)))
        value = draw(st.one_of(st.sampled_from(VALUES), st.binary(max_size=10)))
        parts.append(name + draw(st.sampled_from([b": ", b":", b" : ", b":\t"])) + value)
    sep = [draw(st.sampled_from(SEPS)) for _ in parts]
    raw = b"".join(p + s for p, s in zip(parts, sep)) + b"\r\n"
    return _corrupt(draw, raw)


@st.composite
def response_heads(draw: st.DrawFn) -> bytes:
    line = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x"])) + b" " + \
        draw(st.sampled_from([b"200", b"101", b"204", b"304", b"099", b"2000", b"abc"])) + \
        draw(st.sampled_from([b" OK", b"", b" ", b" O\x01K"]))
    parts = [line]
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.sampled_from(NAMES), st.binary(min_size=1, max_size=6)))
        value = draw(st.one_of(st.sampled_from(VALUES), st.binary(max_size=10)))
        parts.append(name + b": " + value)
    raw = b"".join(p + b"\r\n" for p in parts) + b"\r\n"
    return _corrupt(draw, raw)


def _corrupt(draw: st.DrawFn, raw: bytes) -> bytes:
    """Sometimes replace, insert or delete a byte anywhere."""
    for _ in range(draw(st.integers(0, 2))):
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        kind = draw(st.integers(0, 2))
        byte = bytes([draw(st.integers(0, 255))])
        raw = raw[:at] + byte + raw[at + 1:] if kind == 0 else raw[:at] + byte + raw[at:] if kind == 1 \
            else raw[:at] + raw[at + 1:]
    return raw


@SETTINGS
@given(raw=request_heads(), head_request=st.booleans())
def test_random_requests_agree(both: tuple[ModuleType, ModuleType], raw: bytes, head_request: bool) -> None:
    compiled, twin = both
    a, b = request(compiled, raw), request(twin, raw)
    assert same(a, b), (raw, a, b)
    if not isinstance(a, (HeadError, str)):
        kw = dict(target=a.target, host=a.host, peer=b"1.2.3.4", scheme=b"http", request_id=b"r")
        assert compiled.upstream_head(a, **kw) == twin.upstream_head(b, **kw)


@SETTINGS
@given(raw=response_heads(), head_request=st.booleans())
def test_random_responses_agree(both: tuple[ModuleType, ModuleType], raw: bytes, head_request: bool) -> None:
    a, b = (response(m, raw, head_request) for m in both)
    assert same(a, b), (raw, a, b)


@SETTINGS
@given(raw=request_heads(), cuts=st.lists(st.integers(1, 400), max_size=6))
def test_head_end_resume_is_split_invariant(codec: ModuleType, raw: bytes, cuts: list[int]) -> None:
    """Feeding a head in pieces (one growing buffer, `resume` = the previous length) ends
    at the same offset, or fails the same way, as scanning it whole."""
    limit = MAX_LINE + MAX_HEADERS

    def scan(buf: bytes, resume: int) -> object:
        try:
            return codec.head_end(buf, 0, limit, line_limit=MAX_LINE, resume=resume)
        except HeadError as err:
            return (err.status, err.reason)

    whole = scan(raw, 0)
    prev = 0
    got: object = -1
    for cut in sorted({c for c in cuts if c < len(raw)}) + [len(raw)]:
        got = scan(raw[:cut], prev)
        if got != -1:
            break
        prev = cut
    if isinstance(whole, int) and whole >= 0 or isinstance(whole, tuple):
        assert got == whole, (raw, cuts)
    else:
        assert got == -1


@st.composite
def chunked_bodies(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        data = draw(st.binary(max_size=20))
        ext = draw(st.sampled_from([b"", b";a=b", b";a", b' ; q="x\\"y"', b";", b" "]))
        parts.append(b"%x%s\r\n%s\r\n" % (len(data), ext, data))
    trailers = draw(st.sampled_from([b"", b"X-T: 1\r\n", b"Content-Length: 1\r\n", b"X-T\r\n"]))
    raw = b"".join(parts) + b"0\r\n" + trailers + b"\r\n" + draw(st.sampled_from([b"", b"GET / HTTP/1.1\r\n"]))
    return _corrupt(draw, raw)


@SETTINGS
@given(raw=chunked_bodies(), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_chunked_agree_and_split_invariant(both: tuple[ModuleType, ModuleType], raw: bytes, cuts: list[int]) -> None:
    points = sorted({c for c in cuts if 0 < c < len(raw)})
    pieces = [raw[a:b] for a, b in zip([0] + points, points + [len(raw)])]
    compiled, twin = both
    whole = chunked(twin, [raw])
    assert chunked(compiled, [raw]) == whole
    for mod in both:
        split = chunked(mod, pieces)
        if whole[3] is not None:  # an error: the same error, whatever the split
            assert split[3] == whole[3], (raw, pieces)
        else:
            assert split == whole, (raw, pieces)
