"""The clusterset.local DNS responder."""
from __future__ import annotations


def build_info() -> dict[str, str]:
    """Which implementation serves the DNS fast path (compiled recvmmsg/sendmmsg batches or
    the pure-Python twin), for `fleetgate --version` and the `fleetgate_build_info` metric."""
    from . import codec

    return {"dns_fastpath": codec.IMPLEMENTATION}
