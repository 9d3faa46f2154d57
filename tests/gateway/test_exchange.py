"""The explicit exchange (gateway/exchange/): the transition table, the checked
subclass the tests run with, and the phases real requests go through over sockets."""
from __future__ import annotations

import aiohttp
import pytest

from gateway import exchange
from gateway.exchange import TRANSITIONS, CheckedExchange, Exchange, Phase, PhaseError
from gateway_support import endpoint_slice, ingress, rule, service


def test_the_table_covers_every_phase_and_done_is_final() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.DONE] == frozenset()
    for phase, nxt in TRANSITIONS.items():
        assert Phase.RECEIVED not in nxt  # nothing goes back to the start


@pytest.mark.parametrize("cls", [Exchange, CheckedExchange])
def test_advance_allows_exactly_the_table(cls: type[Exchange]) -> None:
    for old in Phase:
        for new in Phase:
            ex = cls()
            # walk to `old` along allowed moves
            path = {Phase.RECEIVED: [], Phase.SENT: [Phase.SENT], Phase.RESPONDING: [Phase.SENT, Phase.RESPONDING],
                    Phase.TUNNEL: [Phase.SENT, Phase.TUNNEL], Phase.DONE: [Phase.DONE]}[old]
            for p in path:
                ex.advance(p)
            if new in TRANSITIONS[old]:
                ex.advance(new)
                assert ex.phase == new
            else:
                with pytest.raises(PhaseError):
                    ex.advance(new)


def test_the_checked_exchange_checks_plain_assignments() -> None:
    ex = CheckedExchange()
    ex.phase = Phase.SENT
    ex.phase = Phase.RESPONDING
    assert ex.response_started and not ex.finished
    with pytest.raises(PhaseError):
        ex.phase = Phase.SENT  # the hot path's direct assignment is held to the table too
    ex.phase = Phase.DONE
    assert ex.finished


class Recording(CheckedExchange):
    """Records every phase an exchange takes."""
    log: list[list[int]] = []

    @property  # type: ignore[override]
    def phase(self) -> int:
        return CheckedExchange.phase.fget(self)  # type: ignore[attr-defined]

    @phase.setter
    def phase(self, new: int) -> None:
        CheckedExchange.phase.fset(self, new)  # type: ignore[attr-defined]
        if "_seen" not in self.__dict__:
            self.__dict__["_seen"] = []
            Recording.log.append(self.__dict__["_seen"])
        self.__dict__["_seen"].append(int(new))


async def test_phases_of_real_requests(echo_backends, fleet_dir, start_gateway, monkeypatch) -> None:
    """A plain GET (the hot path), a POST with a body, a 404 and an unreachable endpoint's
    502 go through the phases the table allows, ending in DONE."""
    Recording.log = []
    monkeypatch.setattr(exchange, "EXCHANGE_CLASS", Recording)
    be = await echo_backends("ph", host="127.0.64.1")
    fd = fleet_dir("zone-a")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(be.host, be.port)]),
                         service("dead"), endpoint_slice("dead", [("127.0.64.2", 9)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "svc")),
                            rule("dead.example.com", ("/", "Prefix", "dead"))])])
    gw = await start_gateway(fd)
    async with aiohttp.ClientSession() as s:
        for _ in range(2):  # the second GET finds a pooled connection: the fast path
            async with s.get(gw.url + "/a", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
        async with s.post(gw.url + "/b", data=b"x" * 1000, headers={"Host": "web.example.com"}) as r:
            assert r.status == 200
        async with s.get(gw.url + "/", headers={"Host": "nowhere.example.com"}) as r:
            assert r.status == 404
        async with s.get(gw.url + "/", headers={"Host": "dead.example.com"}) as r:
            assert r.status == 502
    S, R, D = Phase.SENT, Phase.RESPONDING, Phase.DONE
    assert Recording.log[:4] == [[S, R, D], [S, R, D], [S, R, D], [D]]
    assert Recording.log[4][0] == S and Recording.log[4][-1] == D and R not in Recording.log[4]


# --- the request path's hot core: three sources (_core_py, _exchange_py, _route_py), used as is or compiled

def _core_modules() -> list:
    from gateway_support import exchange_build
    try:
        compiled = exchange_build("compiled")
    except ImportError:
        compiled = None
    return [pytest.param(exchange_build("pure"), id="pure"), pytest.param(compiled, id="compiled")]


@pytest.fixture(params=_core_modules())
def core(request):  # type: ignore[no-untyped-def]
    from tests.tools import compiled_or_skip
    return compiled_or_skip(request.param, "gateway/exchange/_core is not built (python setup.py build_ext --inplace)")


def test_both_builds_start_an_exchange_with_the_same_defaults(core) -> None:  # type: ignore[no-untyped-def]
    """The twin keeps its defaults on the class, the compiled build sets them in __cinit__:
    the same values, one list (EXCHANGE_DEFAULTS)."""
    ex = core.Exchange()
    assert {name: getattr(ex, name) for name in core.EXCHANGE_DEFAULTS} == core.EXCHANGE_DEFAULTS
    assert set(core.EXCHANGE_DEFAULTS) >= set(core.HOT_ATTRIBUTES)
    ex.advance(Phase.SENT)
    assert ex.phase == Phase.SENT and not ex.finished and not ex.response_started
    with pytest.raises(PhaseError):
        ex.advance(Phase.RECEIVED)
    ex.anything_else = 1  # an attribute the field list lacks still works (a __dict__)
    assert ex.anything_else == 1


def test_the_compiled_fields_are_the_twins_slots(core) -> None:  # type: ignore[no-untyped-def]
    """_core.pxd declares what _core_py's __slots__ list: a field only one build has would
    make the other fail (or a subclass slot shadow a compiled field)."""
    from gateway.exchange import _core_py
    for name in ("DownstreamCore", "UpstreamCore"):
        twin, cls = getattr(_core_py, name), getattr(core, name)
        for field in twin.__slots__:
            if field != "__weakref__":
                assert hasattr(cls, field), (name, field)
    from gateway.protocol.downstream import DownstreamH1
    from gateway.upstream.connection import UpstreamH1
    for sub, base in ((DownstreamH1, "DownstreamCore"), (UpstreamH1, "UpstreamCore")):
        own = {f for k in sub.__mro__ if "__slots__" in vars(k) and not k.__name__.endswith("Core")
               for f in vars(k)["__slots__"]}
        assert not own & set(getattr(_core_py, base).__slots__), (sub, own)


def test_the_checked_exchange_keeps_the_compiled_phase_field_in_step() -> None:
    """Under the compiled build the hot path reads the C field behind `phase`; the checked
    subclass's property must read and write that same field."""
    ex = CheckedExchange()
    ex.phase = Phase.SENT
    assert Exchange.advance is not None and ex.phase == Phase.SENT
    field = vars(Exchange).get("phase")
    if hasattr(field, "__get__") and hasattr(field, "__set__"):
        assert field.__get__(ex) == Phase.SENT


@pytest.mark.parametrize("pure", ["0", "1"])
def test_the_build_in_use_is_named(pure: str) -> None:
    """FLEETGATE_PURE_PYTHON=1 forces the twin; otherwise the compiled core when built."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "FLEETGATE_PURE_PYTHON": pure}
    out = subprocess.run([sys.executable, "-c", "import gateway, gateway.exchange as e;"
                          "print(e.IMPLEMENTATION, gateway.build_info()['request_path'], e.DownstreamCore.__module__,"
                          " e.Exchange.__module__, e.round_robin.__module__)"],
                         capture_output=True, text=True, timeout=60, env=env, check=True).stdout.split()
    twins = ["gateway.exchange._core_py", "gateway.exchange._exchange_py", "gateway.exchange._route_py"]
    if pure == "1":
        assert out == ["pure", "pure"] + twins
    else:
        assert out[0] in ("compiled", "pure") and out[1] == out[0]
        # all three modules of one build, never a mix
        assert out[2:] == ([m[:-3] for m in twins] if out[0] == "compiled" else twins)
        if os.environ.get("FLEETGATE_REQUIRE_COMPILED") == "1":
            assert out[0] == "compiled"
