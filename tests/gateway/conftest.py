"""Gateway test fixtures, for every subfolder (routing/, upstream/, protocol/, codec/) and the
top-level tests. The helpers live beside this file as *_support.py modules (gateway_support:
fleets as files, echo backends, a gateway on port 0; h1_support: raw HTTP/1.1 pieces;
tls_support: a throwaway CA; h1codec_support: the codec run through either implementation)
and corpus/ (the request-smuggling and head corpora); the live-fleet fixtures (test API
servers, kube clients, a gateway following them) come from tests/live_support.py.

Every exchange the gateway creates in these tests is a CheckedExchange: each phase
move, including the hot path's direct assignments, is checked against
gateway.exchange.TRANSITIONS (a bad move raises PhaseError and the test fails or hangs
on the missing answer)."""
from gateway_support import echo_backends, fleet_dir, start_gateway  # noqa: F401  (fixtures)
from tests.live_support import api_servers, kube, run_gateway  # noqa: F401  (fixtures)

from gateway import exchange

exchange.EXCHANGE_CLASS = exchange.CheckedExchange
