"""Live-fleet fixtures; the helpers live in livekit.py (importable by the tests)."""
from livekit import api_servers, echo_backends, kube, run_gateway  # noqa: F401  (fixtures)
