"""The codec against its corpus: each implementation gives the expected outcome, the
compiled module and the twin give identical results (every field, the bytes, the error),
and both agree with llhttp (httptools) except where a named RFC rule makes us stricter or
different (DELIBERATE: the difference must really exist, so the list stays honest)."""
from __future__ import annotations

from types import ModuleType

import pytest

from corpus.heads import REQUESTS, RESPONSES
from h1codec_support import (HeadError, llhttp_request, llhttp_response, request, response, same, walk,
                           walk_same)
from corpus import REQUESTS as STREAMS
from gateway.codec.types import REQUEST_DROP, RequestHead, ResponseHead

# Where we refuse what llhttp accepts (or accept what it refuses), and the rule why.
DELIBERATE_REQUESTS = {
    "method-unregistered": "RFC 9110 9.1: methods are an open set of tokens (nginx forwards them); "
                           "llhttp only knows its registry",
    "two-spaces-before-version": "RFC 9112 3: request-line = method SP request-target SP HTTP-version",
    "fragment-in-target": "RFC 9112 3.2.1: origin-form = absolute-path [ '?' query ], no fragment",
    "http09": "RFC 9112 2.3 / 3: HTTP/0.9 request lines are not served",
    "version-2.0": "RFC 9110 15.6.6: 505 for a major version we do not support on this connection",
    "version-0.9": "RFC 9110 15.6.6: 505 for an unsupported version",
    "star-on-get": "RFC 9112 3.2.4: asterisk-form only for OPTIONS",
    "custom-method-token": "RFC 9112 3.2.4: asterisk-form only for OPTIONS (SSDP's M-SEARCH * is not HTTP)",
    "connect-origin-form": "RFC 9112 3.2.3: CONNECT takes authority-form",
    "connect-no-port": "RFC 9110 9.3.6: CONNECT's target is host and port",
    "absolute-ftp": "RFC 9112 3.2.2: a gateway serves http(s) targets only",
    "absolute-userinfo": "RFC 9110 4.2.4: userinfo in an http(s) URI is an error",
    "absolute-empty-authority": "RFC 9110 4.2.1: an http URI with an empty host is invalid",
    "request-line-too-long": "RFC 9112 3: 414 for a request-line over our limit",
    "headers-too-large": "RFC 6585 5: 431 for a header section over our limit",
    "missing-host": "RFC 9112 3.2: 400 for an HTTP/1.1 request without Host",
    "duplicate-host": "RFC 9112 3.2: 400 for more than one Host field",
    "duplicate-host-different": "RFC 9112 3.2: 400 for more than one Host field",
    "host-with-path": "RFC 9112 3.2: 400 for a Host that is not uri-host [ ':' port ]",
    "host-with-space": "RFC 9112 3.2: invalid Host",
    "host-with-at": "RFC 9112 3.2: invalid Host",
    "host-bad-port": "RFC 9112 3.2 / RFC 3986 3.2.3: port = *DIGIT",
    "host-only-port": "RFC 9112 3.2: invalid Host (no host before the port)",
    "host-bad-ipv6": "RFC 3986 3.2.2: IP-literal",
    "host-absolute-form-still-validated": "RFC 9112 3.2: an invalid Host is refused even when ignored",
    "cl-overflow": "RFC 9110 8.6: guard integer overflow; we bound Content-Length at int64",
    "te-http10": "RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing",
    "te-http10-keep-alive": "RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing",
    "te-gzip-chunked": "RFC 9112 6.1 / RFC 9110 15.6.2: 501 for a transfer coding we do not implement",
    "te-gzip-field-then-chunked": "RFC 9112 6.1: 501 for a transfer coding we do not implement",
    "expect-other": "RFC 9110 10.1.1: 417 for an expectation we cannot meet",
    "expect-100-with-params": "RFC 9110 10.1.1: 417 for an expectation we cannot meet",
}
DELIBERATE_RESPONSES = {
    "chunked-drops-cl": "RFC 9112 6.3 item 3: an intermediary may forward after removing Content-Length",
    "cl-duplicate-same": "RFC 9110 8.6: identical Content-Length values may be accepted as one",
    "te-chunked-twice": "RFC 9112 7: chunked is applied at most once",
    "te-chunked-not-last": "RFC 9112 6.3 item 4: chunked not last -> 502 rather than read to close",
    "status-leading-zero": "RFC 9110 15: status codes are 100-599 (three digits, first 1-5)",
    "version-2": "RFC 9112 2.3: an HTTP/1 connection carries HTTP/1.x responses",
    "reason-ctl": "RFC 9112 4: reason-phrase = *( HTAB / SP / VCHAR / obs-text )",
}
# Helper F's end-to-end corpus, where the codec's part ends before the expected status:
# CONNECT parses (authority-form); the protocol answers it 405.
STREAM_EXEMPT = {"authority-form-connect": "CONNECT is parsed; the protocol refuses it with 405"}

REQ_IDS = [c[0] for c in REQUESTS]
RESP_IDS = [c[0] for c in RESPONSES]


def test_corpus_size() -> None:
    assert len(REQUESTS) >= 100 and len(RESPONSES) >= 20
    assert len(set(REQ_IDS)) == len(REQ_IDS) and len(set(RESP_IDS)) == len(RESP_IDS)


def _check_expected(result: object, expect: object) -> None:
    if isinstance(expect, int):
        assert isinstance(result, HeadError), result
        assert result.status == expect, result
    else:
        assert not isinstance(result, (HeadError, str)), result
        for key, value in expect.items():  # type: ignore[attr-defined]
            assert getattr(result, key) == value, (key, result)


@pytest.mark.parametrize("name,raw,expect", REQUESTS, ids=REQ_IDS)
def test_request_outcome(codec: ModuleType, name: str, raw: bytes, expect: object) -> None:
    _check_expected(request(codec, raw), expect)


@pytest.mark.parametrize("name,raw,head_request,expect", RESPONSES, ids=RESP_IDS)
def test_response_outcome(codec: ModuleType, name: str, raw: bytes, head_request: bool, expect: object) -> None:
    _check_expected(response(codec, raw, head_request), expect)


@pytest.mark.parametrize("name,raw,expect", REQUESTS, ids=REQ_IDS)
def test_request_twins_agree(both: tuple[ModuleType, ModuleType], name: str, raw: bytes, expect: object) -> None:
    compiled, twin = both
    a, b = request(compiled, raw), request(twin, raw)
    assert same(a, b), (a, b)
    # and byte for byte on the upstream head
    if not isinstance(a, (HeadError, str)):
        kw = dict(target=a.target, host=a.host, peer=b"10.0.0.9", scheme=b"https", request_id=b"rid-1",
                  extra=b"x-extra: 1\r\n")
        assert compiled.upstream_head(a, **kw) == twin.upstream_head(b, **kw)


@pytest.mark.parametrize("name,raw,head_request,expect", RESPONSES, ids=RESP_IDS)
def test_response_twins_agree(both: tuple[ModuleType, ModuleType], name: str, raw: bytes, head_request: bool,
                              expect: object) -> None:
    a, b = (response(m, raw, head_request) for m in both)
    assert same(a, b), (a, b)


def _forwarded_pairs(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The `fields` llhttp's parse implies: forwarded names minus Connection-named ones."""
    named = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named |= {t.strip(b" \t").lower() for t in value.split(b",")}
    return b"".join(b"%s: %s\r\n" % (n, v.strip(b" \t")) for n, v in headers
                    if n.lower() not in REQUEST_DROP and n.lower() not in named)


@pytest.mark.parametrize("name,raw,expect", REQUESTS, ids=REQ_IDS)
def test_request_matches_llhttp(codec: ModuleType, name: str, raw: bytes, expect: object) -> None:
    ours = request(codec, raw)
    ref = llhttp_request(raw)
    accepted = not isinstance(ours, HeadError)
    if name in DELIBERATE_REQUESTS:
        assert accepted != ref.accepted, "no longer a difference: drop it from DELIBERATE_REQUESTS"
        return
    assert accepted == ref.accepted, (ours, ref.error)
    if accepted:
        assert ours.method == ref.method
        assert ours.version == (11 if ref.version == "1.1" else 10)
        assert ours.keep_alive == ref.keep_alive
        if ref.url[:1] in (b"/", b"*") or ours.method == b"CONNECT":
            assert ours.target == ref.url
        else:  # absolute form: the authority went to host
            assert ref.url.lower().endswith(ours.host.lower() + ours.target.lstrip(b"/").lower()) or \
                ours.target in ref.url
        assert ours.fields == _forwarded_pairs(ref.headers)
        assert ours.header_count == len(ref.headers)


@pytest.mark.parametrize("name,raw,head_request,expect", RESPONSES, ids=RESP_IDS)
def test_response_matches_llhttp(codec: ModuleType, name: str, raw: bytes, head_request: bool,
                                 expect: object) -> None:
    if head_request:
        pytest.skip("llhttp's response parser cannot be told the request was HEAD")
    ours = response(codec, raw, head_request)
    ref = llhttp_response(raw)
    accepted = not isinstance(ours, HeadError)
    if name in DELIBERATE_RESPONSES:
        assert accepted != ref.accepted, "no longer a difference: drop it from DELIBERATE_RESPONSES"
        return
    assert accepted == ref.accepted, (ours, ref.error)
    if accepted and ours.status >= 200:
        assert ours.keep_alive == ref.keep_alive


STREAM_IDS = [c.name for c in STREAMS]


@pytest.mark.parametrize("case", STREAMS, ids=STREAM_IDS)
def test_stream_corpus_twins_agree(both: tuple[ModuleType, ModuleType], case: object) -> None:
    a, b = (walk(m, case.raw) for m in both)  # type: ignore[attr-defined]
    assert walk_same(a, b), (a, b)


@pytest.mark.parametrize("case", STREAMS, ids=STREAM_IDS)
def test_stream_corpus_outcome(codec: ModuleType, case: object) -> None:
    """Helper F's end-to-end cases at the codec level: the requests it must forward parse,
    and the bad one is refused with an allowed status; nothing after it is parsed."""
    targets, end = walk(codec, case.raw)  # type: ignore[attr-defined]
    if case.name in STREAM_EXEMPT:  # type: ignore[attr-defined]
        assert not isinstance(end, HeadError)
        return
    assert tuple(targets) == case.forwarded  # type: ignore[attr-defined]
    if case.accepted:  # type: ignore[attr-defined]
        assert not isinstance(end, HeadError), end
    else:
        assert isinstance(end, HeadError) and end.status in case.reject, end  # type: ignore[attr-defined]


@pytest.mark.parametrize("name,raw,expect", [c for c in REQUESTS if not isinstance(c[2], int)],
                         ids=[c[0] for c in REQUESTS if not isinstance(c[2], int)])
def test_positional_calls_match_keyword_calls(codec: ModuleType, name: str, raw: bytes, expect: object) -> None:
    """The hot path passes arguments by position, other callers by name: same results, and
    the results are the shared, immutable RequestHead / ResponseHead of types.py."""
    end = codec.head_end(raw, 0, 73728, 8192)
    assert end == codec.head_end(raw, 0, 73728, line_limit=8192, resume=0)
    head = codec.parse_request(raw, 0, end, 8192, 65536)
    assert head == codec.parse_request(raw, 0, end, max_line=8192, max_header_bytes=65536)
    assert type(head) is RequestHead and isinstance(head, tuple)
    with pytest.raises(AttributeError):
        head.host = b"changed"  # type: ignore[misc]
    args = (head.target, head.host, b"10.0.0.9", b"https", b"rid-1", b"x-extra: 1\r\n")
    assert codec.upstream_head(head, *args) == codec.upstream_head(
        head, target=args[0], host=args[1], peer=args[2], scheme=args[3], request_id=args[4], extra=args[5])
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    rend = codec.head_end(resp, 0, 65536)
    r = codec.parse_response(resp, 0, rend, False)
    assert r == codec.parse_response(resp, 0, rend, head_request=False)
    assert type(r) is ResponseHead and (r.content_length, r.keep_alive) == (2, False)
