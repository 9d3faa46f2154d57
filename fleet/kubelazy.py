"""kubernetes_asyncio without its ~30 MB of generated API classes and models, until asked for.

fleetgate uses kubernetes_asyncio for kubeconfig auth only (fleet/kube.py: its
Configuration, ApiClient and kubeconfig loader); requests are raw JSON on the client's own
session. Yet `import kubernetes_asyncio.config` runs the package's `__init__`, which
imports every generated API class and every model (~1,000 modules, ~30 MB of RSS, ~0.4 s),
and `api_client` imports the whole models package for a deserializer we never call.
That was a quarter of a controller's memory at 1,000 services (issue 18).

`light()` registers those three packages (`kubernetes_asyncio`, `.client`,
`.client.models`) as modules whose `__init__` runs on the first attribute that is not a
submodule: `client.CoreV1Api` or `models.V1Pod` loads them exactly as a plain import would
(same module objects, same classes), so any other user in the process (a test, a bench)
sees the library unchanged, only later. Submodules (`client.api_client`, `config`, `watch`)
import as usual. If the library is already imported, nothing changes.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

PACKAGE = "kubernetes_asyncio"
_DEFERRED = (PACKAGE, f"{PACKAGE}.client", f"{PACKAGE}.client.models")


def _deferred(name: str) -> ModuleType:
    """The package `name`, created but not run: its `__init__` runs on first need."""
    parent, _, leaf = name.rpartition(".")
    spec = importlib.machinery.PathFinder.find_spec(name, sys.modules[parent].__path__ if parent else None)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name}: not an importable package")
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    state = {"loading": False}

    def __getattr__(attr: str) -> Any:
        if state["loading"]:  # ran already (or running): a plain missing attribute
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        if importlib.machinery.PathFinder.find_spec(f"{name}.{attr}", module.__path__) is not None:
            return importlib.import_module(f"{name}.{attr}")  # a submodule needs not the rest
        state["loading"] = True
        loader.exec_module(module)
        return getattr(module, attr)

    setattr(module, "__getattr__", __getattr__)  # PEP 562: the module's missing attributes
    sys.modules[name] = module
    if parent:
        setattr(sys.modules[parent], leaf, module)
    return module


def light() -> tuple[ModuleType, ModuleType]:
    """(kubernetes_asyncio.client, kubernetes_asyncio.config), the generated classes deferred."""
    if PACKAGE not in sys.modules:
        try:
            for name in _DEFERRED:
                _deferred(name)
            from kubernetes_asyncio.client.api_client import ApiClient
            from kubernetes_asyncio.client.configuration import Configuration
        except BaseException:
            for name in _DEFERRED:  # leave a plain import to do it all
                sys.modules.pop(name, None)
            raise
        client = sys.modules[f"{PACKAGE}.client"]
        setattr(client, "ApiClient", ApiClient)  # what kubernetes_asyncio.config imports from it
        setattr(client, "Configuration", Configuration)
    import kubernetes_asyncio.client as client_module
    import kubernetes_asyncio.config as config_module
    return client_module, config_module
