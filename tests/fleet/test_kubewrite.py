"""fleet/kubewrite.py: KubeClient's one-object requests on its own kept-alive HTTP/1.1
connections. Whatever the ApiClient gives must still hold over real sockets: the same
request as through aiohttp, TLS with the kubeconfig's CA, client certificate and server
name, the bearer token read per request, proxies (then aiohttp is used), answers framed by
length, chunks or the connection's close, failures and timeouts mapped as before."""
from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import ssl
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
import yaml
import yarl
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet.kube import ENDPOINT_SLICES, SERVICES, KubeClient, KubeError, Unreachable
from fleet.kubewrite import DISABLE_ENV, WritePool

# --- servers ------------------------------------------------------------------------------


class Recorder:
    """An aiohttp API server stand-in that records what it is sent and echoes bodies back."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        self.seen.append({"method": request.method, "path": request.path, "raw_path": request.raw_path,
                          "headers": dict(request.headers), "body": json.loads(body) if body else None,
                          "client_cn": subject.get("commonName", "")})
        doc = json.loads(body) if body and request.method != "DELETE" else \
            {"metadata": {"name": "web", "namespace": "demo"}}
        doc.setdefault("metadata", {})["resourceVersion"] = str(len(self.seen))
        return web.json_response(doc)


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[int, Recorder]]:
    rec = Recorder()
    runner, port = await serve(rec.handle)
    try:
        yield port, rec
    finally:
        await runner.cleanup()


class Scripted:
    """A raw HTTP/1.1 server answering each request with the next scripted bytes (b"" closes
    the connection unanswered, None never answers); records the requests and connections."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> "Scripted":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is None:
                    await reader.read()  # hold the connection until the client drops it
                    return
                if not answer:
                    return
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def kubeconfig(path: Path, server: str, user: dict[str, Any], **cluster: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"".join(e + b"\r\n" for e in extra) \
        + b"Content-Length: %d\r\n\r\n" % len(body) + body


SVC: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
                      "spec": {"ports": [{"port": 80}]}}


async def exchange(client: KubeClient) -> list[Any]:
    made = await client.create(SERVICES, "v1", SVC)
    patched = await client.merge_patch(SERVICES, "v1", "demo", "web", {"metadata": {"labels": {"a": "b"}}})
    status = await client.merge_patch_status(SERVICES, "v1", "demo", "web", {"status": {}})
    got = await client.get(SERVICES, "v1", "demo", "web")
    replaced = await client.replace(SERVICES, "v1", {**SVC, "metadata": {**SVC["metadata"], "resourceVersion": "1"}})
    await client.delete(SERVICES, "v1", "demo", "web", uid="u1", resource_version="5")
    return [made, patched, status, got, replaced]


# --- the same request as through aiohttp ------------------------------------------------------


async def test_lean_writes_send_what_aiohttp_sends_on_one_kept_alive_connection(
        recorder: tuple[int, Recorder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, rec = recorder
    config = kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}", {"token": "s3cret"})
    answers, seen = {}, {}
    for mode in ("1", "0"):  # aiohttp first, then the lean pool
        monkeypatch.setenv(DISABLE_ENV, mode)
        rec.seen.clear()
        client = KubeClient(config)
        try:
            answers[mode] = await exchange(client)
            pool = client._pool
            assert (pool is None) == (mode == "1")
            if pool is not None:
                assert pool.connections_made == 1  # six requests, one connection
        finally:
            await client.close()
        seen[mode] = [{k: r[k] for k in ("method", "path", "body")} | {
            "headers": {h: r["headers"].get(h) for h in ("Authorization", "Accept", "User-Agent", "Content-Type")}}
            for r in rec.seen]
    assert answers["0"] == answers["1"]
    assert seen["0"] == seen["1"]
    assert [r["method"] for r in seen["0"]] == ["POST", "PATCH", "PATCH", "GET", "PUT", "DELETE"]
    assert seen["0"][2]["path"] == "/api/v1/namespaces/demo/services/web/status"
    assert seen["0"][1]["headers"]["Content-Type"] == "application/merge-patch+json"
    assert all(r["headers"]["Authorization"] == "Bearer s3cret" for r in seen["0"])
    assert seen["0"][5]["body"]["preconditions"] == {"uid": "u1", "resourceVersion": "5"}
    assert answers["0"][0]["kind"] == "Service" and answers["0"][0]["metadata"]["resourceVersion"] == "1"


async def test_a_server_url_with_a_path_keeps_it(recorder: tuple[int, Recorder], tmp_path: Path) -> None:
    port, rec = recorder
    client = KubeClient(kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}/k8s/clusters/c-1", {"token": "t"}))
    try:
        await client.get(ENDPOINT_SLICES, "v1", "demo", "web")
        assert client._pool is not None
    finally:
        await client.close()
    assert [r["path"] for r in rec.seen] == ["/k8s/clusters/c-1/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices/web"]


async def test_the_bearer_token_is_read_per_request(recorder: tuple[int, Recorder], tmp_path: Path) -> None:
    """A refresh hook (as an in-cluster token file or a plugin sets one) runs per request."""
    port, rec = recorder
    client = KubeClient(kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}", {"token": "t0"}))
    calls = 0

    def refresh(configuration: Any) -> None:
        nonlocal calls
        calls += 1
        configuration.api_key["BearerToken"] = f"Bearer t{calls}"
    try:
        api = await client._client()
        api.configuration.refresh_api_key_hook = refresh
        await client.get(SERVICES, "v1", "demo", "web")
        await client.create(SERVICES, "v1", SVC)
        assert client._pool is not None
    finally:
        await client.close()
    assert [r["headers"]["Authorization"] for r in rec.seen] == ["Bearer t1", "Bearer t2"]


# --- TLS -------------------------------------------------------------------------------------


class CA:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubewrite test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cn: str, names: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
async def tls_api(tmp_path: Path) -> AsyncIterator[tuple[int, Recorder, CA, CA]]:
    """An HTTPS server whose certificate names only `kube.internal` and 127.0.0.1, and
    which demands a client certificate from the client CA."""
    server_ca, client_ca = CA(), CA()
    cert, key = server_ca.issue("kube.internal", [x509.DNSName("kube.internal"),
                                                  x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (tmp_path / "srv.crt").write_bytes(cert)
    (tmp_path / "srv.key").write_bytes(key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=client_ca.pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    rec = Recorder()
    runner, port = await serve(rec.handle, ctx)
    try:
        yield port, rec, server_ca, client_ca
    finally:
        await runner.cleanup()


async def test_tls_with_the_kubeconfigs_ca_client_certificate_and_token(
        tls_api: tuple[int, Recorder, CA, CA], tmp_path: Path) -> None:
    port, rec, server_ca, client_ca = tls_api
    cert, key = client_ca.issue("fleetgate-controller", [])
    user = {"token": "tls-token", "client-certificate-data": b64(cert), "client-key-data": b64(key)}
    client = KubeClient(kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}", user,
                                   **{"certificate-authority-data": b64(server_ca.pem)}))
    try:
        answers = await exchange(client)
        pool = client._pool
        assert pool is not None and pool.ssl is not None and pool.connections_made == 1
    finally:
        await client.close()
    assert answers[0]["metadata"]["name"] == "web"
    assert len(rec.seen) == 6
    assert all(r["client_cn"] == "fleetgate-controller" for r in rec.seen)
    assert all(r["headers"]["Authorization"] == "Bearer tls-token" for r in rec.seen)


async def test_tls_server_name_is_the_name_verified(tls_api: tuple[int, Recorder, CA, CA], tmp_path: Path) -> None:
    """The kubeconfig's tls-server-name is what the certificate must name, not the URL's
    host: `localhost` is not in the certificate, `kube.internal` is."""
    port, rec, server_ca, client_ca = tls_api
    cert, key = client_ca.issue("c", [])
    user = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    cluster = {"certificate-authority-data": b64(server_ca.pem)}
    named = KubeClient(kubeconfig(tmp_path / "named", f"https://localhost:{port}", user,
                                  **cluster, **{"tls-server-name": "kube.internal"}))
    unnamed = KubeClient(kubeconfig(tmp_path / "unnamed", f"https://localhost:{port}", user, **cluster))
    try:
        await named.get(SERVICES, "v1", "demo", "web")
        with pytest.raises(Unreachable, match="certificate"):
            await unnamed.get(SERVICES, "v1", "demo", "web")
        assert named._pool is not None and unnamed._pool is not None
    finally:
        await named.close()
        await unnamed.close()
    assert len(rec.seen) == 1


async def test_a_server_certificate_from_another_ca_is_refused(
        tls_api: tuple[int, Recorder, CA, CA], tmp_path: Path) -> None:
    port, rec, _, client_ca = tls_api
    cert, key = client_ca.issue("c", [])
    client = KubeClient(kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}",
                                   {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
                                   **{"certificate-authority-data": b64(CA().pem)}))
    try:
        with pytest.raises(Unreachable, match="certificate verify failed"):
            await client.create(SERVICES, "v1", SVC)
    finally:
        await client.close()
    assert rec.seen == []


# --- proxies: aiohttp, as before -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["environment", "kubeconfig"])
async def test_with_a_proxy_writes_go_through_aiohttp_and_the_proxy(
        how: str, recorder: tuple[int, Recorder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy_port, proxied = recorder
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    closed = Scripted([])  # the API server's address: nothing answers there directly
    await closed.start()
    await closed.close()
    cluster: dict[str, Any] = {}
    if how == "environment":
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    else:
        monkeypatch.delenv("HTTP_PROXY", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        cluster["proxy-url"] = f"http://127.0.0.1:{proxy_port}"
    client = KubeClient(kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{closed.port}", {"token": "p"}, **cluster))
    try:
        made = await client.create(SERVICES, "v1", SVC)
        assert client._pool is None
    finally:
        await client.close()
    assert made["metadata"]["name"] == "web"
    assert [(r["method"], yarl.URL(r["raw_path"]).port) for r in proxied.seen] == [("POST", closed.port)]
    assert proxied.seen[0]["headers"]["Authorization"] == "Bearer p"


# --- answers and failures on raw sockets -------------------------------------------------------


async def scripted_client(tmp_path: Path, answers: list[bytes | None]) -> tuple[Scripted, KubeClient]:
    server = await Scripted(answers).start()
    return server, KubeClient(kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{server.port}", {"token": "x"}))


async def test_answers_framed_by_length_by_chunks_and_by_the_close(tmp_path: Path) -> None:
    one, two, three = (json.dumps({"metadata": {"name": n}}).encode() for n in ("one", "two", "three"))
    chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (two[:5], two[5:])) + b"0\r\n\r\n")
    by_close = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + three
    server, client = await scripted_client(tmp_path, [ok(one), chunked, by_close])  # then it closes
    try:
        names = [(await client.get(SERVICES, "v1", "demo", n))["metadata"]["name"] for n in ("a", "b", "c")]
    finally:
        await client.close()
        await server.close()
    assert names == ["one", "two", "three"]
    assert server.connections == 1  # kept alive across length and chunks; closed after the third


async def test_failed_answers_keep_status_reason_and_retry_after(tmp_path: Path) -> None:
    status = json.dumps({"kind": "Status", "reason": "Conflict", "message": "the object has been modified",
                         "code": 409}).encode()
    conflict = b"HTTP/1.1 409 Conflict\r\nContent-Length: %d\r\n\r\n%s" % (len(status), status)
    slow = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\n{}"
    server, client = await scripted_client(tmp_path, [conflict, slow, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
                                                      b"nonsense\r\n\r\n"])
    try:
        with pytest.raises(KubeError) as first:
            await client.merge_patch(SERVICES, "v1", "demo", "web", {})
        with pytest.raises(KubeError) as second:
            await client.create(SERVICES, "v1", SVC)
        with pytest.raises(KubeError, match="expected a JSON object"):
            await client.get(SERVICES, "v1", "demo", "web")
        with pytest.raises(Unreachable, match="malformed answer"):
            await client.get(SERVICES, "v1", "demo", "web")
    finally:
        await client.close()
        await server.close()
    assert first.value.conflict and first.value.reason == "Conflict" and "modified" in first.value.message
    assert second.value.status == 429 and second.value.retry_after == 3.0


async def test_a_kept_alive_connection_closed_under_a_request(tmp_path: Path) -> None:
    """Closed unanswered on a reused connection: a GET (idempotent) is sent again on a new
    connection; a POST is not (aiohttp's rule), the caller sees Unreachable."""
    body = json.dumps({"metadata": {"name": "web"}}).encode()
    server, client = await scripted_client(tmp_path, [ok(body), b"", ok(body), b""])
    try:
        await client.get(SERVICES, "v1", "demo", "web")
        got = await client.get(SERVICES, "v1", "demo", "web")  # reused, closed, sent again
        assert server.connections == 2
        with pytest.raises(Unreachable, match="connection lost"):
            await client.create(SERVICES, "v1", SVC)  # reused, closed: not sent again
        posts = [r for r in server.requests if r.startswith(b"POST ")]
    finally:
        await client.close()
        await server.close()
    assert got["metadata"]["name"] == "web"
    assert len(posts) == 1 and server.connections == 2


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped() -> None:
    server = await Scripted([None]).start()
    pool = WritePool(yarl.URL(f"http://127.0.0.1:{server.port}"), None)
    try:
        with pytest.raises(TimeoutError):
            await pool.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"", 0.2)
        assert not pool._idle and not pool._open
    finally:
        pool.close()
        await server.close()


async def test_a_refused_connection_is_unreachable(tmp_path: Path) -> None:
    server, client = await scripted_client(tmp_path, [])
    await server.close()
    try:
        with pytest.raises(Unreachable):
            await client.create(SERVICES, "v1", SVC)
    finally:
        await client.close()
