"""Every async test runs on uvloop, the loop fleetgate runs on in production."""
from typing import Any, Mapping

import uvloop


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Any]:
    return {"uvloop": uvloop.new_event_loop}
