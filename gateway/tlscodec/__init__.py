"""The HTTPS listener's TLS layer: compiled over OpenSSL's memory BIOs (`_tls.pyx`) when it
was built (setup.py, where OpenSSL's headers exist: apt-get install libssl-dev), else, or
under FLEETGATE_PURE_PYTHON=1, the event loop's own TLS layer (uvloop's SSLProtocol over
ssl.SSLContext, gateway/tls.py's DirectSSLObject) as before.

IMPLEMENTATION ("compiled" | "uvloop") is what `fleetgate --version` reports as `tls`.
"""
from __future__ import annotations

import os

try:
    if os.environ.get("FLEETGATE_PURE_PYTHON") == "1" or os.environ.get("FLEETGATE_TLS_UVLOOP") == "1":
        raise ImportError("FLEETGATE_PURE_PYTHON=1 or FLEETGATE_TLS_UVLOOP=1")  # (the latter: TLS alone, for benchmarks)
    from ._tls import ServerContext, TLSError, TLSServer
except ImportError:  # not built (no compiler, no OpenSSL headers) or not wanted
    ServerContext = TLSError = TLSServer = None  # type: ignore[assignment,misc]

IMPLEMENTATION = "compiled" if TLSServer is not None else "uvloop"
