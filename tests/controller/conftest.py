"""Controller tests: the live writer's run against test API servers (tests/live_support.py)."""
from tests.live_support import api_servers, kube  # noqa: F401  (fixtures)
