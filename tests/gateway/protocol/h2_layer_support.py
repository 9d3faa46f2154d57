"""Run HTTP/2 tests on both layers (gateway/h2codec): libnghttp2 (compiled) and the `h2`
library (pure). The compiled one skips when not built, or fails under FLEETGATE_REQUIRE_COMPILED=1."""
from __future__ import annotations

import os
from typing import Iterator

import pytest

from gateway import h2codec


@pytest.fixture(params=["compiled", "pure"])
def h2_layer(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "compiled" and h2codec.NgH2Connection is None:
        why = "the libnghttp2 HTTP/2 layer is not built (apt-get install libnghttp2-dev; pip install -e .)"
        forced_pure = os.environ.get("FLEETGATE_PURE_PYTHON") == "1" or os.environ.get("FLEETGATE_HTTP2_PURE") == "1"
        if os.environ.get("FLEETGATE_REQUIRE_COMPILED") == "1" and not forced_pure:
            pytest.fail(why)
        if forced_pure:
            why = "FLEETGATE_PURE_PYTHON=1 forces the h2 library"
        pytest.skip(why)
    before = h2codec.ACTIVE
    h2codec.use(request.param)
    yield request.param
    h2codec.ACTIVE = before
