"""The twin's one-call heads (_h1fast_py.request_whole / response_whole) against the codec.

The pure request path calls these instead of head_end + parse_request / parse_response on
an idle connection's read. Each may answer None for anything (the caller then takes the
general way, which parses again and names any error), but what it does answer must be
exactly what head_end + parse_* give in both implementations. A common head must be
answered (else the speed is lost with no test failing), and no head the rules refuse, nor
one with a CTL, a bare CR or a bare LF anywhere, may ever be answered."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corpus.heads import REQUESTS, RESPONSES
from gateway.codec import _http1_py
from gateway.codec._h1fast_py import request_whole, response_whole
from h1codec_support import MAX_HEADERS, MAX_LINE, HeadError, request, response, same
from test_codec_twin_fast import (FAST_REQUESTS, FAST_RESPONSES, RULES_REQUESTS, RULES_RESPONSES, SETTINGS,
                                  fast_shaped)

BENCH = b"GET /index.html HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
BROWSER = (BENCH[:-2] + b"Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n"
           b"Cache-Control: no-cache\r\nPragma: no-cache\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n"
           b"Sec-Fetch-Site: none\r\nUpgrade-Insecure-Requests: 1\r\nReferer: http://bench.local/\r\n\r\n")
NGINX = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 00:00:00 GMT\r\n"
         b"Content-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n")
PURE = _http1_py


def check_request(compiled: Any, raw: bytes) -> Any:
    """request_whole(raw): None, or the head both implementations give for the same bytes."""
    got = request_whole(raw, MAX_LINE, MAX_HEADERS)
    if got is not None:
        for mod in (compiled, PURE):
            want = request(mod, raw)
            assert not isinstance(want, (HeadError, str)) and same(got, want), (raw, got, want)
            assert mod.head_end(raw, 0, MAX_LINE + MAX_HEADERS) == len(raw), raw  # one whole head
    return got


def check_response(compiled: Any, data: bytes, head_request: bool) -> Any:
    """response_whole(data): None, or (status, end, head) of a whole reusable response as
    both implementations read it."""
    got = response_whole(data, head_request)
    if got is not None:
        status, end, head = got
        for mod in (compiled, PURE):
            assert mod.head_end(data, 0, MAX_HEADERS) == end, data
            rh = response(mod, data[:end], head_request)
            assert not isinstance(rh, (HeadError, str)), (data, rh)
            assert (rh.status, rh.head) == (status, head), (data, got, rh)
            assert rh.keep_alive and not rh.chunked and rh.content_length == len(data) - end, (data, rh)
    return got


@pytest.mark.parametrize("raw", FAST_REQUESTS + [BENCH, BROWSER])
def test_common_requests_are_answered(both: Any, raw: bytes) -> None:
    assert check_request(both[0], raw) is not None


@pytest.mark.parametrize("raw", RULES_REQUESTS + [BENCH + b"x", BENCH + BENCH, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                                                  BENCH[:-1], b"\r\n" + BENCH, b"", b"\n"])
def test_other_requests_are_left_to_the_general_way(both: Any, raw: bytes) -> None:
    assert check_request(both[0], raw) is None


@pytest.mark.parametrize("case", REQUESTS, ids=[c[0] for c in REQUESTS])
def test_request_corpus(both: Any, case: tuple[str, bytes, object]) -> None:
    _, raw, _ = case
    check_request(both[0], raw)
    assert request_whole(raw + b"x", MAX_LINE, MAX_HEADERS) is None  # a byte behind the head


@pytest.mark.parametrize("raw", FAST_REQUESTS + [BENCH])
def test_no_control_byte_is_ever_answered(both: Any, raw: bytes) -> None:
    """Every byte of a common head replaced in turn by LF, CR, NUL, SOH, ESC or DEL: never an
    answer the rules would not give (a bare LF, bare CR or CTL is never taken for valid)."""
    for i in range(len(raw) - 4):
        for c in b"\n\r\x00\x01\x1b\x7f":
            bad = raw[:i] + bytes((c,)) + raw[i + 1:]
            assert check_request(both[0], bad) is None or bad == raw, bad


def test_request_limits(both: Any) -> None:
    """max_line and max_header_bytes at and around their edges: an answer only within both."""
    line = len(BENCH.split(b"\r\n", 1)[0])
    headers = len(BENCH) - line - 4
    for max_line, max_headers in ((line, headers), (line - 1, headers), (line, headers - 1)):
        got = request_whole(BENCH, max_line, max_headers)
        try:
            want: Any = _http1_py.parse_request(BENCH, 0, len(BENCH), max_line, max_headers)
        except HeadError as err:
            want = err
        assert (got is None and isinstance(want, HeadError)) or same(got, want), (max_line, max_headers, got, want)
        assert (got is None) == ((max_line, max_headers) != (line, headers))


@pytest.mark.parametrize("head_request", [False, True])
@pytest.mark.parametrize("data", FAST_RESPONSES + RULES_RESPONSES + [NGINX, NGINX + b"x", NGINX[:-1]])
def test_responses(both: Any, data: bytes, head_request: bool) -> None:
    check_response(both[0], data, head_request)


@pytest.mark.parametrize("data,head_request", [
    (NGINX, False),
    (NGINX[:-6], True),  # the answer to HEAD: no body
    (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n", False),
    (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\nX: y\r\n\r\nhi", False),
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n", False),
    (b"HTTP/1.1 204\r\nDate: x\r\n\r\n", False),
    (b"HTTP/1.1 304 \r\nConnection: keep-alive\r\n\r\n", False),
])
def test_common_responses_are_answered(both: Any, data: bytes, head_request: bool) -> None:
    assert check_response(both[0], data, head_request) is not None


@pytest.mark.parametrize("data,head_request", [
    (NGINX + b"x", False),  # more than the body: pipelined junk
    (NGINX[:-1], False),  # less than the body
    (NGINX, True),  # a body after the answer to HEAD
    (NGINX.replace(b"keep-alive", b"close"), False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),  # HTTP/1.0: not kept alive
    (b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n", False),  # close-delimited
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx" + b"\r\n\r\n", False),
])
def test_other_responses_are_left_to_the_general_way(both: Any, data: bytes, head_request: bool) -> None:
    assert check_response(both[0], data, head_request) is None


@pytest.mark.parametrize("case", RESPONSES, ids=[c[0] for c in RESPONSES])
def test_response_corpus(both: Any, case: tuple[str, bytes, bool, object]) -> None:
    _, raw, head_request, _ = case
    check_response(both[0], raw, head_request)


def test_no_control_byte_is_ever_answered_in_a_response(both: Any) -> None:
    head = NGINX[:-6]
    for i in range(len(head) - 4):
        for c in b"\n\r\x00\x01\x1b\x7f":
            bad = head[:i] + bytes((c,)) + head[i + 1:]
            assert check_response(both[0], bad + b"hello\n", False) is None or bad == head, bad


@SETTINGS
@given(raw=fast_shaped(False))
def test_random_fast_shaped_requests(both: Any, raw: bytes) -> None:
    check_request(both[0], raw)


@SETTINGS
@given(raw=fast_shaped(True), head_request=st.booleans(), body=st.sampled_from([b"", b"x", b"hello\n", b"\r\n"]))
def test_random_fast_shaped_responses(both: Any, raw: bytes, head_request: bool, body: bytes) -> None:
    check_response(both[0], raw + body, head_request)
