"""The twin's fast paths (_h1fast_py) against its rules and the compiled codec.

The fast paths answer only heads they recognise and hand the rest to the rules; these tests
build them over spy rules, so each case also asserts which one answered: a common head
must not reach the rules (else the speed is lost without any test failing), and a head the
fast paths must not judge (a second Host, a CTL, trailing OWS, a Transfer-Encoding...)
must reach them. Either way the result equals the rules' and the compiled codec's."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.codec import _http1_py
from gateway.codec._h1fast_py import fast_paths
from h1codec_support import MAX_HEADERS, MAX_LINE, HeadError, same


class Spy:
    """The rules, counting the calls that reached them."""

    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, fn: Any) -> Any:
        def call(*args: Any) -> Any:
            self.calls += 1
            return fn(*args)
        return call


def fast() -> tuple[Any, Any, Any, Spy]:
    spy = Spy()
    he, pq, pr = fast_paths(_http1_py.head_end_rules, spy.wrap(_http1_py.parse_request_rules),
                            spy.wrap(_http1_py.parse_response_rules))
    return he, pq, pr, spy


def run_request(he: Any, pq: Any, raw: bytes, start: int = 0) -> Any:
    try:
        end = he(raw, start, MAX_LINE + MAX_HEADERS, MAX_LINE)
        return "incomplete" if end < 0 else pq(raw, start, end, MAX_LINE, MAX_HEADERS)
    except HeadError as err:
        return err


def run_response(he: Any, pr: Any, raw: bytes, head_request: bool, start: int = 0) -> Any:
    try:
        end = he(raw, start, MAX_HEADERS)
        return "incomplete" if end < 0 else pr(raw, start, end, head_request)
    except HeadError as err:
        return err


def rules_request(raw: bytes, start: int = 0) -> Any:
    return run_request(_http1_py.head_end_rules, _http1_py.parse_request_rules, raw, start)


def rules_response(raw: bytes, head_request: bool, start: int = 0) -> Any:
    return run_response(_http1_py.head_end_rules, _http1_py.parse_response_rules, raw, head_request, start)


FAST_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /index.html HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
    b"POST /x?y=1 HTTP/1.0\r\nUser-Agent: u\r\nHOST: Example.COM:8080\r\nAccept: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nhost: h\r\n\r\n",
    b"M-SEARCH_X /A/B HTTP/1.1\r\nHost: h\r\nX-Cafe: ok\r\nV: caf\xe9 \tau\r\n\r\n",
    b"GET /p HTTP/1.1\r\nHost: h\r\nTea: 1\r\nHosts: 2\r\nVia-X: 3\r\nContent-Lengthy: 4\r\n\r\n",
    b"GET /%7Euser HTTP/1.1\r\nHost: 10.0.0.1:80\r\nCookie: a=b; c=d\r\n\r\n",
]
RULES_REQUESTS = [  # valid or not, the fast paths must leave these to the rules
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: v \r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX:v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX:  v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: v\x01w\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: v\x7f\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX Y: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX\xe9: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a%41\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: 1\r\n\r\n",
    b"GET / HTTP/1.0\r\nX: 1\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"Get / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / http/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://h/x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n X: folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.0 p\r\nX-Request-Id: r\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
]
FAST_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nX: y\r\nContent-Length:  12 \r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nX-A:  v  \r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 204\r\nDate: x\r\n\r\n",
    b"HTTP/1.1 304 \r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    b"HTTP/1.1 200 caf\xe9\r\nContent-Length: 000123456789012345\r\nTea: 1\r\n\r\n",
]
RULES_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-a\r\nX-A: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX Y: a\r\n\r\n",
    b"HTTP/1.1 099 OK\r\n\r\n",
    b"HTTP/1.2 200 OK\r\n\r\n",
    b"http/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 200OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTE: x\r\nTrailer: y\r\nProxy-Authenticate: z\r\n\r\n",
]


def _check_request(compiled: Any, raw: bytes, start: int = 0) -> tuple[Any, int]:
    he, pq, _, spy = fast()
    got = run_request(he, pq, raw, start)
    want = rules_request(raw, start)
    assert same(got, want), (raw, got, want)
    assert same(got, run_request(compiled.head_end, compiled.parse_request, raw, start)), raw
    return got, spy.calls


def _check_response(compiled: Any, raw: bytes, head_request: bool, start: int = 0) -> tuple[Any, int]:
    he, _, pr, spy = fast()
    got = run_response(he, pr, raw, head_request, start)
    want = rules_response(raw, head_request, start)
    assert same(got, want), (raw, got, want)
    assert same(got, run_response(compiled.head_end, compiled.parse_response, raw, head_request, start)), raw
    return got, spy.calls


@pytest.mark.parametrize("raw", FAST_REQUESTS)
def test_common_requests_take_the_fast_path(both: Any, raw: bytes) -> None:
    got, calls = _check_request(both[0], raw)
    assert not isinstance(got, (HeadError, str)) and calls == 0, got
    got, calls = _check_request(both[0], b"\x00junk" + raw, start=5)  # a head further into the buffer
    assert not isinstance(got, (HeadError, str)) and calls == 0, got


@pytest.mark.parametrize("raw", RULES_REQUESTS)
def test_other_requests_go_to_the_rules(both: Any, raw: bytes) -> None:
    got, calls = _check_request(both[0], raw)
    if not isinstance(got, HeadError):  # (head_end itself refuses some before any parse)
        assert calls == 1, got


@pytest.mark.parametrize("head_request", [False, True])
@pytest.mark.parametrize("raw", FAST_RESPONSES)
def test_common_responses_take_the_fast_path(both: Any, raw: bytes, head_request: bool) -> None:
    got, calls = _check_response(both[0], raw, head_request)
    assert not isinstance(got, (HeadError, str)) and calls == 0, got
    got, calls = _check_response(both[0], b"xy" + raw, head_request, start=2)
    assert not isinstance(got, (HeadError, str)) and calls == 0, got


@pytest.mark.parametrize("raw", RULES_RESPONSES)
def test_other_responses_go_to_the_rules(both: Any, raw: bytes) -> None:
    got, calls = _check_response(both[0], raw, False)
    if not isinstance(got, HeadError) or calls:
        assert calls == 1, got


def test_a_parse_without_head_end_goes_to_the_rules() -> None:
    """The fast paths trust only head_end's proof for this very buffer and head: a bare LF
    parse_request is handed directly still gets the rules' answer."""
    he, pq, pr, spy = fast()
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: v\nY: w\r\n\r\n"
    other = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert he(other, 0, 1000) == len(other)
    try:
        got: Any = pq(raw, 0, len(raw), MAX_LINE, MAX_HEADERS)
    except HeadError as err:
        got = err
    want: Any
    try:
        want = _http1_py.parse_request_rules(raw, 0, len(raw), MAX_LINE, MAX_HEADERS)
    except HeadError as err:
        want = err
    assert same(got, want) and spy.calls == 1
    assert pq(bytes(other), 0, len(other), MAX_LINE, MAX_HEADERS) == pq(other, 0, len(other), MAX_LINE, MAX_HEADERS)


def test_limits_are_the_rules() -> None:
    """A head over max_line / max_header_bytes gets the rules' 414 / 431."""
    he, pq, _, _ = fast()
    raw = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 100 + b"\r\n\r\n"
    end = he(raw, 0, 10000)
    for max_line, max_headers in ((50, 10000), (10000, 50), (115, 10000), (114, 10000), (10000, 120), (10000, 121)):
        results = []
        for parse in (pq, _http1_py.parse_request_rules):
            try:
                results.append(parse(raw, 0, end, max_line, max_headers))
            except HeadError as err:
                results.append(err)
        assert same(results[0], results[1]), (max_line, max_headers, results)


NAMES = [b"Host", b"HOST", b"host", b"User-Agent", b"Accept", b"Content-Length", b"Connection", b"X-A", b"Te",
         b"Tea", b"Via", b"Expect", b"Upgrade", b"Keep-Alive", b"Transfer-Encoding", b"X Y", b"X\xe9", b""]
VALUES = [b"h", b"h.example:8080", b"EXAMPLE.com", b"5", b"007", b"close", b"Keep-Alive", b"keep-alive, x",
          b"chunked", b"a b", b" lead", b"trail ", b"caf\xe9", b"a\tb", b"", b"\x01", b"%41", b"[::1]"]


@st.composite
def fast_shaped(draw: st.DrawFn, response: bool) -> bytes:
    """Heads close to the fast paths' shapes (and just outside them)."""
    if response:
        line = draw(st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 204", b"HTTP/1.1 304 ",
                                     b"HTTP/1.1 101 S", b"HTTP/1.1 404 N\xe9", b"http/1.1 200 OK"]))
    else:
        line = draw(st.sampled_from([b"GET / HTTP/1.1", b"POST /a?b HTTP/1.0", b"get / HTTP/1.1",
                                     b"GET / HTTP/1.1x", b"GE_T /A HTTP/1.1", b"GET / Http/1.1"]))
    lines = [line]
    for _ in range(draw(st.integers(0, 6))):
        lines.append(draw(st.sampled_from(NAMES)) + draw(st.sampled_from([b": ", b":", b":  "]))
                     + draw(st.sampled_from(VALUES)))
    return b"".join(x + b"\r\n" for x in lines) + b"\r\n"


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(raw=fast_shaped(False))
def test_random_fast_shaped_requests(both: Any, raw: bytes) -> None:
    _check_request(both[0], raw)


@SETTINGS
@given(raw=fast_shaped(True), head_request=st.booleans())
def test_random_fast_shaped_responses(both: Any, raw: bytes, head_request: bool) -> None:
    _check_response(both[0], raw, head_request)
