"""The Kubernetes API as fleetgate uses it: which resources it reads, and a thin client
that lists, watches and patches them as raw JSON.

Raw JSON on purpose: objects become frozen views once, at the edge (fleet/objects.py), so
building kubernetes_asyncio's models first would only cost time (10,000 endpoints) and
hide fields. Kubeconfig auth (tokens, exec plugins, client certificates, proxies, the TLS
server name) is kubernetes_asyncio's: its ApiClient is made from the kubeconfig, and every
request is sent on that client's aiohttp session (its TLS context holds the client
certificate) with the bearer token its Configuration gives for that request (refreshed by
an exec plugin or OIDC when due). What is not used is ApiClient.call_api's generic path:
it walks every body recursively to sanitize model objects we never send, and sanitizes
and copies the headers, which cost ~30% of the controller's CPU per write at a cold start
(bench/controller_scale.py). One-object requests (the controller's writes, gets) go on
kept-alive connections of fleet/kubewrite.py instead of aiohttp's request path (same
headers, the session's TLS context; aiohttp still when a proxy applies); lists and
watches stay on aiohttp. This module and fleet/live.py are the only importers of
kubernetes_asyncio.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from urllib.parse import quote, urlencode

import aiohttp
import yarl

from .jsonwire import dumps as _dumps
from .jsonwire import loads as _loads
from .kubelazy import light
from .kubewrite import WritePool, open_pool
from .objects import MCS_GROUP

if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s_client
    from kubernetes_asyncio import config as k8s_config
else:  # kubeconfig auth without the generated API classes and models (fleet/kubelazy.py)
    k8s_client, k8s_config = light()

log = logging.getLogger(__name__)

Raw = dict[str, Any]

LIST_PAGE = 500  # items per list page, like client-go's reflector
CONNECT_TIMEOUT = 5.0
LIST_TIMEOUT = 60.0
_WRITE_TIMEOUT = aiohttp.ClientTimeout(total=LIST_TIMEOUT, sock_connect=CONNECT_TIMEOUT)  # one, not one per request
_PATH_SAFE = "/:@!$&'()*+,;=-._~"  # RFC 3986 pchar: object names pass unchanged


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource type fleetgate watches; `versions` are tried in order (MCS CRDs are
    served as v1beta1 by newer installs, v1alpha1 by older ones)."""
    kind: str
    group: str
    plural: str
    versions: tuple[str, ...] = ("v1",)
    namespaced: bool = True

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def path(self, version: str, *, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"
        parts = [base]
        if namespace is not None and self.namespaced:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource is not None:
                parts.append(subresource)
        return "/".join(parts)


NAMESPACES = Resource("Namespace", "", "namespaces", namespaced=False)
SERVICES = Resource("Service", "", "services")
SECRETS = Resource("Secret", "", "secrets")
ENDPOINT_SLICES = Resource("EndpointSlice", "discovery.k8s.io", "endpointslices")
INGRESSES = Resource("Ingress", "networking.k8s.io", "ingresses")
INGRESS_CLASSES = Resource("IngressClass", "networking.k8s.io", "ingressclasses", namespaced=False)
SERVICE_EXPORTS = Resource("ServiceExport", MCS_GROUP, "serviceexports", ("v1beta1", "v1alpha1"))
SERVICE_IMPORTS = Resource("ServiceImport", MCS_GROUP, "serviceimports", ("v1beta1", "v1alpha1"))
# written, never watched: the controller's Lease on the hub and the cluster ID (KEP-2149)
LEASES = Resource("Lease", "coordination.k8s.io", "leases")
CLUSTER_PROPERTIES = Resource("ClusterProperty", "about.k8s.io", "clusterproperties", ("v1alpha1",),
                              namespaced=False)

# The hub needs Ingresses, IngressClasses and Secrets; members need the rest. Every source
# watches all of them: a hub that is also a member needs both sets anyway.
RESOURCES: Mapping[str, Resource] = {r.kind: r for r in (
    NAMESPACES, SERVICES, ENDPOINT_SLICES, SERVICE_EXPORTS, SERVICE_IMPORTS,
    INGRESSES, INGRESS_CLASSES, SECRETS)}


class KubeError(Exception):
    """The API server answered with a failure (or not at all: status 0)."""

    def __init__(self, status: int, message: str, *, reason: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def gone(self) -> bool:
        """The resourceVersion (or continue token) is too old: list again."""
        return self.status == 410 or self.reason in ("Expired", "Gone")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: a stale resourceVersion or precondition, or (on create) AlreadyExists."""
        return self.status == 409

    @property
    def not_served(self) -> bool:
        """This resource is not there for us (no such API, or RBAC forbids reading it)."""
        return self.status in (403, 404)


class Unreachable(Exception):
    """No answer from the API server (connection refused, reset, timed out, bad kubeconfig)."""


def _status_error(status: int, body: bytes | str, headers: Mapping[str, str] | None = None) -> KubeError:
    message, reason = "", ""
    try:
        doc = _loads(body)
        if isinstance(doc, dict):
            message, reason = str(doc.get("message", "")), str(doc.get("reason", ""))
    except ValueError:
        message = (body.decode("utf-8", "replace") if isinstance(body, bytes) else body)[:200]
    retry_after = None
    if headers is not None and headers.get("Retry-After", "").isdigit():
        retry_after = float(headers["Retry-After"])
    return KubeError(status, message or "request failed", reason=reason, retry_after=retry_after)


def with_kind(raw: Raw, resource: Resource, version: str) -> Raw:
    """List items of built-in kinds come without apiVersion/kind; parse_object needs them."""
    if raw.get("kind") and raw.get("apiVersion"):
        return raw
    return {**raw, "apiVersion": raw.get("apiVersion") or resource.api_version(version),
            "kind": raw.get("kind") or resource.kind}


_RV = b'"resourceVersion":"'
_NO = object()
ECHOES_KEPT = 4096  # answers whose echo is awaited, per resource; older ones are forgotten


class Echoes(dict[str, None]):
    """resourceVersions of our own writes' answers already put into the store, by resource:
    a watch event carrying one is that write's echo, recognised before it is decoded. A
    resourceVersion names one write of one object (etcd's revision), so it cannot be another
    object's event. Bounded: an echo never seen (a watch that skipped it) is forgotten."""

    def add(self, rv: str) -> None:
        self[rv] = None
        if len(self) > ECHOES_KEPT:
            del self[next(iter(self))]


def _first_resource_version(line: bytes) -> str | None:
    """The first `"resourceVersion":"..."` of an event line: the object's own, as the API
    server writes metadata before the object's body (escaped quotes inside annotations do
    not match); only ever compared with versions we learned, so a miss just decodes."""
    at = line.find(_RV)
    if at < 0:
        return None
    start = at + len(_RV)
    end = line.find(b'"', start)
    return line[start:end].decode("ascii", "replace") if end > start else None




class WatchStream:
    """One open watch: iterate (type, object) events; ERROR events raise KubeError.

    A stream that ends (server timeout, dropped connection) just stops iterating; the
    caller decides whether that was a failure."""

    def __init__(self, response: aiohttp.ClientResponse, echoes: "Echoes | None" = None) -> None:
        self._response = response
        self._echoes = echoes

    def __aiter__(self) -> "WatchStream":
        return self

    async def __anext__(self) -> tuple[str, Raw]:
        while True:
            try:
                line = await self._response.content.readline()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.debug("watch stream ended: %r", exc)
                raise StopAsyncIteration from None
            if not line.endswith(b"\n"):  # end of stream, or a line cut off by a dropped connection
                raise StopAsyncIteration
            if not line.strip():
                continue
            echoes = self._echoes
            if echoes:
                rv = _first_resource_version(line)
                if rv is not None and echoes.pop(rv, _NO) is not _NO:
                    # the echo of a write whose answer the store already holds: only its
                    # resourceVersion matters (where to resume), as for a bookmark
                    return "BOOKMARK", {"metadata": {"resourceVersion": rv}}
            try:
                event = _loads(line)
            except ValueError:
                raise KubeError(500, "undecodable watch event: %r" % line[:100]) from None
            kind, obj = str(event.get("type", "")), event.get("object")
            if kind == "ERROR":
                status = obj if isinstance(obj, dict) else {}
                raise KubeError(int(status.get("code") or 500), str(status.get("message", "")),
                                reason=str(status.get("reason", "")))
            if isinstance(obj, dict):
                return kind, obj

    def close(self) -> None:
        self._response.close()


class KubeClient:
    """One cluster's API server, reached through a kubeconfig (+ context).

    The ApiClient is made on first use, so a kubeconfig whose credentials cannot be loaded
    yet (an exec plugin failing) is an unreachable cluster that is retried, not a crash."""

    def __init__(self, kubeconfig: Path, context: str | None = None) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.context = context
        self._api: k8s_client.ApiClient | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self.server = ""  # the API server URL, once the kubeconfig is loaded
        self._echoes: dict[str, Echoes] = {}  # group/plural -> awaited echoes (expect_echo)
        self._pool: WritePool | None = None  # one-object requests off aiohttp (fleet/kubewrite.py)

    async def _client(self) -> k8s_client.ApiClient:
        if self._api is not None:
            return self._api
        async with self._lock:
            if self._closed:
                raise Unreachable("client closed")
            if self._api is None:
                try:
                    api = await k8s_config.new_client_from_config(
                        config_file=str(self.kubeconfig), context=self.context, persist_config=False)
                except Exception as exc:  # any kubeconfig/credential problem
                    raise Unreachable(f"cannot load kubeconfig {self.kubeconfig}: {exc}") from exc
                self.server = str(api.configuration.host or "")
                _proxy_env_once(api, self.server)
                self._pool = open_pool(api, self.server, connect_timeout=CONNECT_TIMEOUT)
                self._api = api
        return self._api

    async def close(self) -> None:
        self._closed = True
        api, self._api = self._api, None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        if api is not None:
            await api.close()

    async def _headers(self, api: k8s_client.ApiClient) -> dict[str, str]:
        """The headers call_api would send: User-Agent, Accept, a Cookie, and the bearer
        token, refreshed by the kubeconfig's exec plugin or OIDC provider when due."""
        headers = dict(api.default_headers)  # User-Agent, as call_api sends it
        headers["Accept"] = "application/json"
        if api.cookie:
            headers["Cookie"] = api.cookie
        for setting in (await api.configuration.auth_settings()).values():
            if setting["in"] == "header":
                headers[setting["key"]] = setting["value"]
        return headers

    async def _request(self, method: str, path: str, query: Sequence[tuple[str, str]] = (), *,
                       body: Any = None, content_type: str | None = None,
                       timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """One request on the ApiClient's session, authenticated as call_api would (see the
        module docstring); the body is plain JSON, encoded once."""
        api = await self._client()
        headers = await self._headers(api)
        data = None
        if body is not None:
            data = _dumps(body)
            headers["Content-Type"] = content_type or "application/json"
        rest = api.rest_client
        options: dict[str, Any] = {}
        if rest.proxy:
            options["proxy"] = rest.proxy
            if rest.proxy_headers:
                options["proxy_headers"] = rest.proxy_headers
        if rest.server_hostname:
            options["server_hostname"] = rest.server_hostname
        url = self.server + path + ("?" + urlencode(query) if query else "")
        try:
            response: aiohttp.ClientResponse = await rest.pool_manager.request(
                method, url, data=data, headers=headers, timeout=timeout, **options)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise Unreachable(f"{method} {path}: {exc or type(exc).__name__}") from exc
        if response.status >= 300:
            try:
                data = await response.read()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                data = b""
            finally:
                response.release()
            raise _status_error(response.status, data, response.headers)
        return response

    async def _json(self, method: str, path: str, query: Sequence[tuple[str, str]] = (), **kw: Any) -> Raw:
        response = await self._request(method, path, query, **kw)
        try:
            data = await response.read()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise Unreachable(f"{method} {path}: {exc or type(exc).__name__}") from exc
        finally:
            response.release()
        doc = _loads(data)
        if not isinstance(doc, dict):
            raise KubeError(500, "expected a JSON object")
        return doc

    async def _object(self, method: str, path: str, *, body: Any = None,
                      content_type: str = "application/json") -> Raw:
        """One object's request (get, create, patch, replace, delete): on the lean pool
        (fleet/kubewrite.py) when there is one, else on aiohttp; the answer decoded."""
        return (await self._object_later(method, path, body=body, content_type=content_type))()

    async def _object_later(self, method: str, path: str, *, body: Any = None,
                            content_type: str = "application/json") -> Callable[[], Raw]:
        """_object, the answer decoded when the returned function is called: a writer whose
        store already holds a newer version (the watch brought the write's echo first)
        never decodes it."""
        api = await self._client()
        pool = self._pool
        if pool is None:
            doc = await self._json(method, path, body=body, content_type=content_type, timeout=_WRITE_TIMEOUT)
            return lambda: doc
        headers = await self._headers(api)
        data = b""
        if body is not None:
            data = _dumps(body)
            headers["Content-Type"] = content_type
        lines = [f"{method} {pool.prefix}{quote(path, safe=_PATH_SAFE)} HTTP/1.1\r\nHost: {pool.host_header}\r\n"]
        for name, value in headers.items():
            value = str(value)
            if "\n" in value or "\r" in value:
                raise Unreachable(f"{method} {path}: header {name} holds a line break")
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(data)}\r\n\r\n")
        try:
            answer = await pool.request(method, "".join(lines).encode(), data, LIST_TIMEOUT)
        except OSError as exc:  # refused, reset, TLS, timed out, a malformed answer
            raise Unreachable(f"{method} {path}: {exc or type(exc).__name__}") from exc
        if answer.status >= 300:
            raise _status_error(answer.status, answer.body,
                                {"Retry-After": answer.retry_after} if answer.retry_after else None)
        data = answer.body

        def decode() -> Raw:
            try:
                doc = _loads(data)
            except ValueError:
                raise KubeError(500, "undecodable answer: %r" % data[:100]) from None
            if not isinstance(doc, dict):
                raise KubeError(500, "expected a JSON object")
            return doc
        return decode

    async def list(self, resource: Resource, version: str) -> tuple[list[Raw], str]:
        """Every object (paged), each with apiVersion/kind, and the list's resourceVersion."""
        timeout = aiohttp.ClientTimeout(total=LIST_TIMEOUT, sock_connect=CONNECT_TIMEOUT)
        items: list[Raw] = []
        token = ""
        while True:
            query = [("limit", str(LIST_PAGE))] + ([("continue", token)] if token else [])
            doc = await self._json("GET", resource.path(version), query, timeout=timeout)
            meta = doc.get("metadata") or {}
            items += [with_kind(i, resource, version) for i in doc.get("items") or () if isinstance(i, dict)]
            token = str(meta.get("continue") or "")
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    async def watch(self, resource: Resource, version: str, resource_version: str, *,
                    timeout_seconds: int) -> WatchStream:
        """Open a watch from resource_version, with bookmarks; the server ends it after
        timeout_seconds (a few minutes), and the caller watches again."""
        query = [("watch", "true"), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(timeout_seconds))]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT,
                                        sock_read=timeout_seconds + 60)
        response = await self._request("GET", resource.path(version), query, timeout=timeout)
        return WatchStream(response, self._echoes.setdefault(f"{resource.group}/{resource.plural}", Echoes()))

    def expect_echo(self, resource: Resource, resource_version: str) -> None:
        """A write's answer (ADDED or MODIFIED at `resource_version`) is in the watcher's
        store already: its watch event is skipped undecoded, as a bookmark (its version
        still moves the watch on). Only for answers fed to the store that watch feeds."""
        if resource_version:
            self._echoes.setdefault(f"{resource.group}/{resource.plural}", Echoes()).add(resource_version)

    async def merge_patch_status(self, resource: Resource, version: str, namespace: str, name: str,
                                 patch: Raw) -> Raw:
        """JSON merge patch on the status subresource; returns the updated object."""
        return await self.merge_patch(resource, version, namespace, name, patch, subresource="status")

    async def merge_patch(self, resource: Resource, version: str, namespace: str, name: str, patch: Raw, *,
                          subresource: str | None = None) -> Raw:
        """JSON merge patch; a metadata.resourceVersion in the patch makes a stale base a 409."""
        return (await self.merge_patch_later(resource, version, namespace, name, patch, subresource=subresource))()

    async def merge_patch_later(self, resource: Resource, version: str, namespace: str, name: str, patch: Raw, *,
                                subresource: str | None = None) -> Callable[[], Raw]:
        """merge_patch, the answer decoded when the returned function is called (_object_later)."""
        later = await self._object_later(
            "PATCH", resource.path(version, namespace=namespace, name=name, subresource=subresource),
            body=patch, content_type="application/merge-patch+json")
        return lambda: with_kind(later(), resource, version)

    async def get(self, resource: Resource, version: str, namespace: str, name: str) -> Raw:
        """One object; KubeError 404 when it is not there."""
        return with_kind(await self._object("GET", resource.path(version, namespace=namespace, name=name)),
                         resource, version)

    async def create(self, resource: Resource, version: str, obj: Raw) -> Raw:
        """POST a new object (409 AlreadyExists when the name is taken); returns it as stored."""
        return (await self.create_later(resource, version, obj))()

    async def create_later(self, resource: Resource, version: str, obj: Raw) -> Callable[[], Raw]:
        """create, the answer decoded when the returned function is called (_object_later)."""
        namespace = (obj.get("metadata") or {}).get("namespace")
        later = await self._object_later("POST", resource.path(version, namespace=namespace), body=obj)
        return lambda: with_kind(later(), resource, version)

    async def replace(self, resource: Resource, version: str, obj: Raw) -> Raw:
        """PUT a whole object; its metadata.resourceVersion must be current, else 409."""
        meta = obj.get("metadata") or {}
        path = resource.path(version, namespace=meta.get("namespace"), name=str(meta.get("name")))
        return with_kind(await self._object("PUT", path, body=obj), resource, version)

    async def delete(self, resource: Resource, version: str, namespace: str, name: str, *,
                     uid: str = "", resource_version: str = "") -> None:
        """DELETE with optional uid/resourceVersion preconditions (a mismatch is a 409)."""
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        body: Raw = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if preconditions:
            body["preconditions"] = preconditions
        await self._object("DELETE", resource.path(version, namespace=namespace, name=name), body=body)


def _proxy_env_once(api: k8s_client.ApiClient, server: str) -> None:
    """Read the proxy environment once per client instead of once per request.

    kubernetes_asyncio opens its aiohttp session with trust_env=True, so every request
    looks HTTP(S)_PROXY/NO_PROXY up in a worker thread (a thread hop per write, ~10% of
    the controller's CPU at a cold start). The server is fixed per client: when no proxy
    applies to it, the per-request lookup is turned off; when one does, nothing changes."""
    rest = api.rest_client
    if rest.proxy or not server:
        return
    try:
        aiohttp.helpers.get_env_proxy_for_url(yarl.URL(server))
    except LookupError:  # no proxy for this server: nothing to look up per request
        session = rest.pool_manager
        session._trust_env = False  # aiohttp's attribute behind ClientSession(trust_env=...)
        return


def kubeconfig_contexts(path: Path) -> tuple[list[str], str | None]:
    """(context names, current-context) of a kubeconfig, for checking fleet.yaml early."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict):
        raise ValueError("not a kubeconfig (expected a mapping)")
    names = [str(c.get("name")) for c in doc.get("contexts") or () if isinstance(c, dict)]
    current = doc.get("current-context")
    return names, str(current) if current else None
