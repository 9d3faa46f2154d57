"""Both codec implementations as one fixture: every codec test runs against each.

The compiled one is skipped (with the reason) when it is not built, unless
FLEETGATE_REQUIRE_COMPILED=1 (CI sets it): then a missing build fails the test.
"""
from __future__ import annotations

from types import ModuleType, SimpleNamespace

import pytest

from gateway.codec import _chunked_py, _http1_py
from tests.tools import compiled_or_skip as require_compiled

NAMES = ("head_end", "parse_request", "upstream_head", "parse_response", "ChunkedDecoder", "chunk_size")


def interface(http1: ModuleType, chunked: ModuleType) -> ModuleType:
    """One implementation's interface (head functions and the chunked decoder) as one object."""
    both = SimpleNamespace(**{n: getattr(http1 if hasattr(http1, n) else chunked, n) for n in NAMES})
    return both  # type: ignore[return-value]


PURE = interface(_http1_py, _chunked_py)
try:
    from gateway.codec import _chunked as _chunked_c
    from gateway.codec import _http1 as _http1_c
    COMPILED: ModuleType | None = interface(_http1_c, _chunked_c)
    WHY = ""
except ImportError as err:  # not built
    COMPILED = None
    WHY = ("the compiled codec is not built (%s); build it with "
           "`/work/venv/bin/pip install -e .` or `python setup.py build_ext --inplace`" % err)


def compiled_or_skip() -> ModuleType:
    return require_compiled(COMPILED, WHY)


@pytest.fixture(params=["compiled", "pure"])
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """One implementation of the codec interface."""
    return compiled_or_skip() if request.param == "compiled" else PURE


@pytest.fixture
def both() -> tuple[ModuleType, ModuleType]:
    """(compiled, twin), for differential tests."""
    return compiled_or_skip(), PURE
