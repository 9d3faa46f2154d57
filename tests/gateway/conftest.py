"""Gateway test fixtures; the helpers live in gwharness.py (importable by the tests)."""
from gwharness import echo_backends, fleet_dir, start_gateway  # noqa: F401  (fixtures)
