"""Fixtures: one KubeAPIServer per test, and real clients pointed at it."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest
from kubernetes_asyncio import client, config

from fleet.testing import KubeAPIServer


@pytest.fixture
async def server() -> AsyncIterator[KubeAPIServer]:
    async with KubeAPIServer(bookmark_interval=0.05, seed=7) as srv:
        yield srv


@pytest.fixture
def kubeconfig(server: KubeAPIServer, tmp_path: Path) -> Path:
    return server.kubeconfig(tmp_path / "kubeconfig.yaml", context="zone-a")


@pytest.fixture
async def api(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    async with client.ApiClient(configuration=cfg) as api_client:
        yield api_client
