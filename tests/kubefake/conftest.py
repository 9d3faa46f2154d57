"""Fixtures: one KubeAPIServer per test, and real clients pointed at it."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest
from kubernetes_asyncio import client, config

from kubefake import KubeAPIServer

# kubernetes_asyncio builds an SSL context for every ApiClient, even for plain http, and
# loading the system CA store costs ~50 ms each time. Pointing it at this one throwaway
# certificate (no key exists; never used to verify anything) keeps the folder fast.
UNUSED_CA = """\
-----BEGIN CERTIFICATE-----
MIIBnTCCAUOgAwIBAgIUDOiJpOZYOhIdvCUyImqNYt/IUsUwCgYIKoZIzj0EAwIw
IzEhMB8GA1UEAwwYZmxlZXRnYXRlLXRlc3QtdW51c2VkLWNhMCAXDTI2MTEyMjAw
NDUwMVoYDzIxMjYxMDI5MDA0NTAxWjAjMSEwHwYDVQQDDBhmbGVldGdhdGUtdGVz
dC11bnVzZWQtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASTjd81xp+ZzXAC
KwQ1WiqmBmC6inTFE35HyXhfXl6Fq9PZ5TfXyiRxaBFSy4rk5QzbKvlqSPSq1Uzh
ED3gjwjso1MwUTAdBgNVHQ4EFgQUNkgdcyfUoznpcWtiHqEjzQOoBjkwHwYDVR0j
BBgwFoAUNkgdcyfUoznpcWtiHqEjzQOoBjkwDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNIADBFAiBYMx8NgfEk1VPOCW9OEVX3yvKT9iiOmW4j7Z/IDoAtFAIh
AKcw9burqck7r1ZLbllgZMppAj7jh2Y9GOqnB79aUqDM
-----END CERTIFICATE-----
"""


@pytest.fixture(scope="session")
def unused_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "unused-ca.pem"
    path.write_text(UNUSED_CA)
    return str(path)


@pytest.fixture
async def server() -> AsyncIterator[KubeAPIServer]:
    async with KubeAPIServer(bookmark_interval=0.05, random_seed=7) as srv:
        yield srv


@pytest.fixture
def kubeconfig(server: KubeAPIServer, tmp_path: Path) -> Path:
    return server.kubeconfig(tmp_path / "kubeconfig.yaml", context="zone-a")


@pytest.fixture
async def api(kubeconfig: Path, unused_ca: str) -> AsyncIterator[client.ApiClient]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.ssl_ca_cert = unused_ca
    # watch.Watch() makes its own ApiClient from the default configuration
    previous = client.Configuration._default
    client.Configuration.set_default(cfg)
    try:
        async with client.ApiClient(configuration=cfg) as api_client:
            yield api_client
    finally:
        client.Configuration._default = previous
