"""The multi-cluster ingress gateway."""
from __future__ import annotations


def build_info() -> dict[str, str]:
    """Which implementation serves each hot-path codec, for `fleetgate --version` (the
    answer to "is this build using the compiled code?"). One entry per codec; a codec with
    a compiled module and a pure twin reports the one chosen at import."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        httptools = f"httptools {version('httptools')} (llhttp)"
    except PackageNotFoundError:  # pragma: no cover - a dependency
        httptools = "httptools (llhttp)"
    return {"HTTP/1 codec": httptools}
