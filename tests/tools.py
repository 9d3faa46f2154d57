"""System clients some tests drive as a user would (dig, kubectl, curl, h2load, nginx).

They are not Python packages, so `pip install -e '.[test]'` cannot bring them: a test that
needs one finds it on PATH or skips, and the skip names the tool and the Debian command
that installs it (pytest runs with -rs, so every skip is listed with its reason). `.ci/run`
installs them all, so CI runs every test.
"""
from __future__ import annotations

import os
import shutil
from typing import TypeVar

import pytest

T = TypeVar("T")

# The Debian package of each client, as .ci/run installs them.
INSTALL: dict[str, str] = {
    "dig": "apt-get install dnsutils",
    "kubectl": "apt-get install kubernetes-client",
    "curl": "apt-get install curl",
    "h2load": "apt-get install nghttp2-client",
    "nginx": "apt-get install nginx-light",
}


def require_tool(name: str, install: str | None = None) -> str:
    """The tool's path on PATH, or skip the calling test saying how to install it.

    `install` defaults to the command in INSTALL; a tool missing from that table must
    bring its own, so no skip ever lacks the way to un-skip it.
    """
    __tracebackhide__ = True  # the skip is reported at the caller's line, not here
    path = shutil.which(name)
    if path is None:
        how = install if install is not None else INSTALL[name]
        pytest.skip(f"{name} not installed: {how}")
    return path


def compiled_or_skip(module: T | None, why: str) -> T:
    """A compiled module the test parametrises over, or skip saying why it is not built.
    Under FLEETGATE_REQUIRE_COMPILED=1 (CI, which built it) a missing build fails instead."""
    __tracebackhide__ = True
    if module is None:
        if os.environ.get("FLEETGATE_REQUIRE_COMPILED") == "1":
            pytest.fail("FLEETGATE_REQUIRE_COMPILED=1 but " + why)
        pytest.skip(why)
    return module
