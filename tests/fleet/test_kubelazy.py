"""fleet/kubelazy.py: a process that imports fleet.kube gets kubeconfig auth without the
generated API classes and models, and anyone asking for them later gets the library whole.

Each case runs in a fresh interpreter: this test process has the library imported already.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_fleet_kube_loads_no_generated_api_class_or_model() -> None:
    got = run("""
        import json, sys
        import fleet.kube
        loaded = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.")]
        print(json.dumps({"models": [m for m in loaded if m.startswith("kubernetes_asyncio.client.models.")],
                          "apis": [m for m in loaded if m.startswith("kubernetes_asyncio.client.api.")],
                          "config": "kubernetes_asyncio.config.kube_config" in sys.modules,
                          "loader": callable(fleet.kube.k8s_config.new_client_from_config)}))
    """)
    assert got == {"models": [], "apis": [], "config": True, "loader": True}


def test_asking_for_the_rest_loads_the_library_as_a_plain_import_would() -> None:
    got = run("""
        import json, sys
        import fleet.kube
        from kubernetes_asyncio import client, watch
        from kubernetes_asyncio.client.models import V1Pod
        import kubernetes_asyncio
        import kubernetes_asyncio.client.api_client as api_client
        print(json.dumps({
            "api": client.CoreV1Api.__module__, "pod": V1Pod.__module__,
            "same_pod": kubernetes_asyncio.client.models.V1Pod is V1Pod,
            "same_client": client.ApiClient is api_client.ApiClient and fleet.kube.k8s_client is client,
            "version": kubernetes_asyncio.__version__ == client.__version__,
            "watch": watch.Watch.__name__,
            "missing": not hasattr(client, "NoSuchThing"),
        }))
    """)
    assert got == {"api": "kubernetes_asyncio.client.api.core_v1_api", "pod": "kubernetes_asyncio.client.models.v1_pod",
                   "same_pod": True, "same_client": True, "version": True, "watch": "Watch", "missing": True}


def test_a_library_imported_first_is_left_as_it_is() -> None:
    got = run("""
        import json, sys
        import kubernetes_asyncio.client
        from fleet.kubelazy import light
        client, config = light()
        print(json.dumps({"same": client is sys.modules["kubernetes_asyncio.client"],
                          "whole": "kubernetes_asyncio.client.api.core_v1_api" in sys.modules,
                          "getattr": "__getattr__" in vars(client)}))
    """)
    assert got == {"same": True, "whole": True, "getattr": False}
