"""The explicit exchange (gateway/exchange.py): the transition table, the checked
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
