"""The compiled fast path and its twin give the resolver's bytes, or step aside (None).

Every datagram of the corpus (valid, odd and malformed), and random ones, through both
implementations: byte-identical answers, each equal to what resolve returns for it, and
no exception for malformed input.
"""
from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsplugin.resolver import resolve
from tests.dnsplugin.codec_support import COMPILED, PURE, compiled_or_skip, corpus, learned_zone, valid_queries

ZONE = learned_zone()
CORPUS = corpus()
LEARNED = [q for q in valid_queries() if q[2:].lower() in ZONE.fast]


@pytest.fixture(params=["compiled", "pure"])
def fastpath(request: pytest.FixtureRequest) -> ModuleType:
    return compiled_or_skip() if request.param == "compiled" else PURE


def test_the_corpus_has_learned_answers_and_misses() -> None:
    assert len(LEARNED) > 200 and len(ZONE.fast) == len({q[2:].lower() for q in LEARNED})
    assert len(CORPUS) > len(LEARNED) + 500


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_every_corpus_answer_is_the_resolvers(fastpath: ModuleType, tcp: bool) -> None:
    counts = [0] * 256
    hits = 0
    for data in CORPUS:
        got = fastpath.answer(ZONE.fast, data, counts, tcp)
        if got is not None:
            hits += 1
            assert got == resolve(ZONE, data, tcp=tcp), data
    assert hits >= len(LEARNED) and sum(counts) == hits


def test_both_implementations_agree_on_the_corpus() -> None:
    compiled = compiled_or_skip()
    for tcp in (False, True):
        c_counts, p_counts = [0] * 256, [0] * 256
        for data in CORPUS:
            assert compiled.answer(ZONE.fast, data, c_counts, tcp) == PURE.answer(ZONE.fast, data, p_counts, tcp)
        assert c_counts == p_counts


def test_case_and_id_are_the_requests() -> None:
    """A learned query asked with another ID and name case is answered with those."""
    compiled = compiled_or_skip()
    base = next(q for q in LEARNED if b"web" in q)
    name_end = base.index(b"\x00", 12)
    asked = b"\xbe\xef" + base[2:12] + base[12:name_end].upper() + base[name_end:]
    for impl in (compiled, PURE):
        reply = impl.answer(ZONE.fast, asked, [0] * 256)
        assert reply is not None and reply[:2] == b"\xbe\xef" and asked[12:name_end] in reply
        assert reply == resolve(ZONE, asked)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80))
def test_random_datagrams_never_raise_and_agree(data: bytes) -> None:
    impls = [PURE] + ([COMPILED] if COMPILED is not None else [])
    answers = [impl.answer(ZONE.fast, data, [0] * 256) for impl in impls]
    assert all(a == answers[0] for a in answers)
    if answers[0] is not None:
        assert answers[0] == resolve(ZONE, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LEARNED), st.integers(min_value=0, max_value=79), st.integers(min_value=0, max_value=255),
       st.binary(max_size=3))
def test_mutated_learned_queries_agree(base: bytes, at: int, value: int, tail: bytes) -> None:
    """One byte of a learned query changed (and maybe bytes added): both agree with resolve."""
    data = base[:at] + bytes((value,)) + base[at + 1:] + tail if at < len(base) else base + tail
    compiled = compiled_or_skip()
    for tcp in (False, True):
        got = compiled.answer(ZONE.fast, data, [0] * 256, tcp)
        assert got == PURE.answer(ZONE.fast, data, [0] * 256, tcp)
        if got is not None:
            assert got == resolve(ZONE, data, tcp=tcp)
