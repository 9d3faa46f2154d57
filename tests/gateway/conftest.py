"""Gateway test fixtures; the helpers live in gwharness.py (importable by the tests).

Every exchange the gateway creates in these tests is a CheckedExchange: each phase
move, including the hot path's direct assignments, is checked against
gateway.exchange.TRANSITIONS (a bad move raises PhaseError and the test fails or hangs
on the missing answer)."""
from gwharness import echo_backends, fleet_dir, start_gateway  # noqa: F401  (fixtures)

from gateway import exchange

exchange.EXCHANGE_CLASS = exchange.CheckedExchange
