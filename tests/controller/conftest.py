"""Controller tests: the live writer's run against test API servers (tests/live_support.py)."""
from tests.live_support import api_servers, kube  # noqa: F401  (fixtures)

import pytest

import controller.answers


@pytest.fixture(autouse=True)
def check_reused_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer the live writer does not parse is parsed as well and compared (answers.CHECK)."""
    monkeypatch.setattr(controller.answers, "CHECK", True)
