"""Test doubles that fleetgate's tests (and its users' tests) run against.

`KubeAPIServer` is an in-process Kubernetes API server on a loopback port, faithful
enough for kubernetes_asyncio and kubectl; see `kubefake.apiserver`.
"""
from .apiserver import KubeAPIServer, RecordedRequest, write_kubeconfig
from .errors import ApiError

__all__ = ["ApiError", "KubeAPIServer", "RecordedRequest", "write_kubeconfig"]
