"""fleetgate tests: the command, the demo and `up` end to end (live fixtures: tests/live_support.py)."""
from tests.live_support import api_servers, kube  # noqa: F401  (fixtures)
