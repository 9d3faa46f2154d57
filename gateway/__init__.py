"""The multi-cluster ingress gateway."""
from __future__ import annotations


def build_info() -> dict[str, str]:
    """Which implementation serves each of the gateway's hot-path codecs, chosen at import
    (compiled where built, the pure-Python twin otherwise or under FLEETGATE_PURE_PYTHON=1):
    the answer to "is this build using the compiled code?" for `fleetgate --version` and
    the `fleetgate_build_info` metric."""
    from . import codec, exchange, h2codec, tlscodec

    return {"http1_codec": codec.IMPLEMENTATION, "request_path": exchange.IMPLEMENTATION,
            "http2": h2codec.IMPLEMENTATION, "tls": tlscodec.IMPLEMENTATION}
