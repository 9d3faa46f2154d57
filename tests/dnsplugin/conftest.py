"""DNS tests run on uvloop, like the responder in production; `dns` is a responder for
zone-a of the two-cluster fixture fleet on an ephemeral port."""
from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
import uvloop

from dnsplugin.service import DnsService, serve
from tests.dnsplugin.dnsclient_support import feed, StubFleet
from tests.dnsplugin.fleets_support import two_cluster_fleet


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
    return {"uvloop": uvloop.new_event_loop}



@pytest.fixture
async def dns() -> AsyncIterator[DnsService]:
    service = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", cluster="zone-a")
    try:
        yield service
    finally:
        await service.close()
