"""The gateway over live clusters; these move under tests/gateway/ with its reorganisation."""
from tests.live_support import api_servers, echo_backends, kube, run_gateway  # noqa: F401  (fixtures)
