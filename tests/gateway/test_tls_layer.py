"""The HTTPS listener's two TLS layers side by side over real sockets: the compiled one over
OpenSSL's memory BIOs (gateway/tlscodec/_tls.pyx) and the event loop's (uvloop's
SSLProtocol, the fallback). Two gateways on the same fleet, one per layer; the same
requests from Python's ssl, curl and openssl s_client must get the same answers and the
same TLS facts (version, cipher, ALPN, the certificate SNI chose), and bad clients (junk,
plain HTTP, a stalled or partial hello, TLS 1.1, renegotiation) must be refused the same way.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
from typing import Any

import pytest
from cryptography import x509

from gateway_support import endpoint_slice, ingress, rule, service
from h1_support import read_response
from tls_support import common_name, make_ca, tls_entry, tls_secret

from gateway import tlscodec
from gateway.context import Limits
from gateway.tls import DEFAULT_COMMON_NAME
from tests.tools import compiled_or_skip, require_tool

HEADER_TIMEOUT = 1.0  # also the handshake's bound on both layers
BODY = 100_000


def _require_compiled() -> None:
    __tracebackhide__ = True
    if os.environ.get("FLEETGATE_PURE_PYTHON") == "1":
        pytest.skip("FLEETGATE_PURE_PYTHON=1: the compiled TLS layer is off")
    compiled_or_skip(tlscodec.TLSServer, "gateway.tlscodec._tls not built (apt-get install libssl-dev, "
                     "then pip install -e .)")


async def _gateways(fleet_dir, echo_backends, start_gateway, monkeypatch, layers=("compiled", "uvloop")):
    """One gateway per layer on one fleet: {layer: (gateway, port)}, the CA, the backend."""
    ca = make_ca()
    fd = fleet_dir("zone-a")
    b = await echo_backends("zone-a", host="127.0.0.2")
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(b.host, b.port)])])
    cert, key = ca.issue("a.example")
    fd.hub([tls_secret("a-tls", cert, key)], name="secrets.yaml")
    fd.hub([ingress("a", [rule("a.example", ("/", "Prefix", "web"))], tls=[tls_entry("a-tls", "a.example")]),
            ingress("plain", [rule("plain.example", ("/", "Prefix", "web"))])])
    out = {}
    compiled = tlscodec.TLSServer
    for layer in layers:
        # the listener reads tlscodec.TLSServer when it opens: None means uvloop's layer
        monkeypatch.setattr(tlscodec, "TLSServer", compiled if layer == "compiled" else None)
        gw = await start_gateway(fd, https=True, limits=Limits(header_timeout=HEADER_TIMEOUT))
        out[layer] = (gw, gw.gateway.https_address[1])
    monkeypatch.setattr(tlscodec, "TLSServer", compiled)
    return out, ca, b


def _client(ca=None, *, alpn=None, maximum=None) -> ssl.SSLContext:
    if ca is not None:
        ctx = ca.client_context()
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def _seen(raw) -> tuple[int, Any]:
    """What the backend saw (the fields both layers must agree on), with the status."""
    body = json.loads(raw.body)
    return raw.status, (body["method"], body["path"], body["body_len"], body["headers"]["x-forwarded-proto"],
                        body["headers"]["x-forwarded-host"])


async def _python_session(port: int, ca, server_name: str | None, **client) -> dict[str, Any]:
    """One Python ssl connection: the TLS facts, then kept-alive, body and pipelined requests."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=_client(ca, **client), server_hostname=server_name), 10)
    try:
        so = writer.get_extra_info("ssl_object")
        peer = x509.load_der_x509_certificate(so.getpeercert(binary_form=True))
        facts: dict[str, Any] = {"version": so.version(), "cipher": so.cipher()[0],
                                 "alpn": so.selected_alpn_protocol(), "cert": common_name(peer)}
        if facts["alpn"] == "h2":
            return facts
        host = (server_name or "a.example").encode()
        answers = []
        for i in range(3):
            writer.write(b"GET /k?i=%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, host))
            answers.append(_seen(await asyncio.wait_for(read_response(reader), 10)))
        writer.write(b"POST /up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (host, BODY) + b"b" * BODY)
        answers.append(_seen(await asyncio.wait_for(read_response(reader), 10)))
        writer.write(b"GET /p1 HTTP/1.1\r\nHost: %s\r\n\r\nGET /p2 HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host))
        answers.append(_seen(await asyncio.wait_for(read_response(reader), 10)))
        answers.append(_seen(await asyncio.wait_for(read_response(reader), 10)))
        facts["answers"] = answers
        return facts
    finally:
        writer.close()


def _run(argv: list[str], stdin: bytes = b"", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)


def _curl(port: int, cafile: str, version: str) -> tuple[int, str, Any]:
    out = _run(["curl", "-sS", version, "--cacert", cafile, "--resolve", f"a.example:{port}:127.0.0.1",
                "-H", "x-test: 1", "--data-binary", "@-", "-w", "\n%{http_version} %{http_code}",
                f"https://a.example:{port}/curl?q=1"], stdin=b"c" * 5000)
    body, _, tail = out.stdout.decode().rpartition("\n")
    seen = json.loads(body) if out.returncode == 0 else None
    return out.returncode, tail, seen and (seen["method"], seen["path"], seen["body_len"],
                                           seen["headers"]["x-forwarded-proto"])


def _s_client(port: int, *extra: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return _run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.example", *extra],
                stdin=stdin)


def _s_client_facts(out: subprocess.CompletedProcess) -> dict[str, Any]:
    """-brief's summary lines (protocol, cipher) and the HTTP status line, if any."""
    err = out.stderr.decode(errors="replace")
    facts = {k: line.split(":", 1)[1].strip() for line in err.splitlines()
             for k in ("Protocol version", "Ciphersuite") if line.startswith(k + ":")}
    text = out.stdout.decode(errors="replace")
    facts["status"] = next((line for line in text.splitlines() if line.startswith("HTTP/1.1 ")), None)
    facts["ok"] = out.returncode == 0
    return facts


def _layer_of(gw) -> str:
    """Which layer serves the gateway's open HTTPS connections (their transport's type)."""
    kinds = {type(ds.transport).__module__ for ds in gw.gateway.ctx.downstreams
             if getattr(ds, "scheme", b"") == b"https" and ds.transport is not None}
    assert len(kinds) == 1, kinds
    return "compiled" if kinds == {"gateway.tlscodec._tls"} else "uvloop"


async def test_the_same_clients_get_the_same_answers_and_tls_facts_on_both_layers(
        fleet_dir, echo_backends, start_gateway, monkeypatch, tmp_path):
    _require_compiled()
    require_tool("curl")
    require_tool("openssl", "apt-get install openssl")
    gws, ca, backend = await _gateways(fleet_dir, echo_backends, start_gateway, monkeypatch)
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(ca.pem)
    results: dict[str, dict[str, Any]] = {}
    for layer, (gw, port) in gws.items():
        # each gateway really runs the layer it is named for
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client(ca), server_hostname="a.example")
        for _ in range(100):
            if any(getattr(ds, "scheme", b"") == b"https" for ds in gw.gateway.ctx.downstreams):
                break
            await asyncio.sleep(0.01)
        assert _layer_of(gw) == layer
        writer.close()
        r: dict[str, Any] = {}
        r["sni"] = await _python_session(port, ca, "a.example")
        r["no-sni"] = await _python_session(port, None, None)
        r["default-cert"] = await _python_session(port, None, "plain.example")
        r["tls1.2"] = await _python_session(port, ca, "a.example", maximum=ssl.TLSVersion.TLSv1_2)
        r["alpn-h2"] = await _python_session(port, ca, "a.example", alpn=["h2", "http/1.1"])
        r["alpn-h1"] = await _python_session(port, ca, "a.example", alpn=["http/1.1"])
        r["alpn-other"] = await _python_session(port, ca, "a.example", alpn=["spdy/3"])
        r["curl-h1"] = await asyncio.to_thread(_curl, port, str(cafile), "--http1.1")
        r["curl-h2"] = await asyncio.to_thread(_curl, port, str(cafile), "--http2")
        get = b"GET /s HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
        for name, extra in (("s_client", ()), ("s_client-tls1.2", ("-tls1_2",))):
            out = await asyncio.to_thread(_s_client, port, "-brief", "-ign_eof", "-alpn", "http/1.1", *extra, stdin=get)
            r[name] = _s_client_facts(out)
        results[layer] = r

    compiled, uvloop = results["compiled"], results["uvloop"]
    assert compiled == uvloop
    # and what they agree on is right
    assert compiled["sni"]["version"] == "TLSv1.3" and compiled["sni"]["cert"] == "a.example"
    assert compiled["sni"]["answers"] == (
        [(200, ("GET", "/k?i=%d" % i, 0, "https", "a.example")) for i in range(3)]
        + [(200, ("POST", "/up", BODY, "https", "a.example"))]
        + [(200, ("GET", p, 0, "https", "a.example")) for p in ("/p1", "/p2")])
    assert compiled["no-sni"]["cert"] == compiled["default-cert"]["cert"] == DEFAULT_COMMON_NAME
    assert compiled["tls1.2"]["version"] == "TLSv1.2" and compiled["tls1.2"]["cipher"].startswith("ECDHE-")
    assert [compiled[k]["alpn"] for k in ("alpn-h2", "alpn-h1", "alpn-other")] == ["h2", "http/1.1", None]
    assert compiled["curl-h1"] == (0, "1.1 200", ("POST", "/curl?q=1", 5000, "https"))
    assert compiled["curl-h2"] == (0, "2 200", ("POST", "/curl?q=1", 5000, "https"))
    assert compiled["s_client"]["status"] == "HTTP/1.1 200 OK", compiled["s_client"]
    assert compiled["s_client"]["Protocol version"] == "TLSv1.3"
    assert compiled["s_client-tls1.2"]["Protocol version"] == "TLSv1.2"


async def _closed_within(port: int, data: bytes, bound: float) -> bytes:
    """Send data on a plain TCP connection to the TLS port; what comes back before the
    gateway closes it (EOF or reset), which must happen within bound seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = b""
    try:
        if data:
            writer.write(data)
            await writer.drain()
        async with asyncio.timeout(bound):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return got


def _hello() -> bytes:
    """The first bytes of a real ClientHello (Python's client, in memory)."""
    ctx = _client()
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="a.example")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
@pytest.mark.parametrize("layer", ["compiled", "uvloop"])
async def test_bad_handshakes_are_closed_and_the_listener_keeps_serving(
        layer, fleet_dir, echo_backends, start_gateway, monkeypatch):
    if layer == "compiled":
        _require_compiled()
    gws, ca, _ = await _gateways(fleet_dir, echo_backends, start_gateway, monkeypatch, layers=(layer,))
    gw, port = gws[layer]
    hello = _hello()
    bound = HEADER_TIMEOUT + 5  # the handshake timeout, with room for a loaded machine
    # junk and plain HTTP: refused at once (an alert at most); a ClientHello with garbage
    # after it: the server's first flight may leave before the garbage is read, then closed
    for junk, first in ((b"\x00" * 64, b"\x15"), (b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", b"\x15"),
                        (hello + b"\x17\x03\x03\x00\x05junk!", b"\x16")):
        got = await _closed_within(port, junk, bound)
        assert b"HTTP/1.1" not in got
        assert got == b"" or got[:1] in (b"\x15", first), got[:16]  # nothing, or TLS records
    # silence, and half a ClientHello: closed by the handshake timeout
    for partial in (b"", hello[:len(hello) // 2]):
        assert await _closed_within(port, partial, bound) == b""
    # TLS 1.1 is refused (TLS 1.2 is the minimum on both layers)
    old = _client(maximum=ssl.TLSVersion.TLSv1_1)
    old.minimum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=old, server_hostname="a.example"), 10)
    # and a good client is served after all that
    (facts) = await _python_session(port, ca, "a.example")
    assert [a[0] for a in facts["answers"]] == [200] * 6


def _close_notify_session(port: int, ca) -> tuple[bytes, bool]:
    """A blocking TLS 1.2 client (in a thread): a request, then close_notify (unwrap), which
    returns only once the gateway answers with its own close_notify."""
    ctx = _client(ca, maximum=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        tls = ctx.wrap_socket(raw, server_hostname="a.example")
        tls.sendall(b"GET /n HTTP/1.1\r\nHost: a.example\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        plain = tls.unwrap()  # sends close_notify, waits for the gateway's
        eof = plain.recv(1) == b""
        return data, eof


@pytest.mark.parametrize("layer", ["compiled", "uvloop"])
async def test_close_notify_is_answered_with_close_notify(layer, fleet_dir, echo_backends, start_gateway, monkeypatch):
    if layer == "compiled":
        _require_compiled()
    gws, ca, backend = await _gateways(fleet_dir, echo_backends, start_gateway, monkeypatch, layers=(layer,))
    _, port = gws[layer]
    data, eof = await asyncio.to_thread(_close_notify_session, port, ca)
    assert data.startswith(b"HTTP/1.1 200 ") and b'"/n"' in data
    assert eof  # after the close_notify exchange the gateway closed the socket
    assert backend.hits == 1


@pytest.mark.parametrize("layer", ["compiled", "uvloop"])
async def test_renegotiation_is_refused(layer, fleet_dir, echo_backends, start_gateway, monkeypatch):
    require_tool("openssl", "apt-get install openssl")
    if layer == "compiled":
        _require_compiled()
    gws, ca, backend = await _gateways(fleet_dir, echo_backends, start_gateway, monkeypatch, layers=(layer,))
    _, port = gws[layer]
    # s_client's "R" command renegotiates (TLS 1.2); the request after it must not be served
    out = await asyncio.to_thread(_s_client, port, "-tls1_2", stdin=b"R\nGET /after HTTP/1.1\r\nHost: a.example\r\n\r\n")
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert "RENEGOTIATING" in text
    assert "no renegotiation" in text.lower() or "no_renegotiation" in text.lower(), text[-2000:]
    assert "HTTP/1.1 200" not in text and backend.hits == 0


def _intermediate(root) -> Any:
    """A CA signed by root (BasicConstraints ca): the issuer of a chained leaf."""
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from tls_support import CertAuthority

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetgate test intermediate")]))
            .issuer_name(root.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(root.key, hashes.SHA256()))
    return CertAuthority(cert, key)


@pytest.mark.parametrize("layer", ["compiled", "uvloop"])
async def test_a_secret_with_an_intermediate_serves_the_whole_chain(
        layer, fleet_dir, echo_backends, start_gateway, monkeypatch):
    """tls.crt = leaf + intermediate: a client trusting only the root verifies the chain."""
    if layer == "compiled":
        _require_compiled()
    monkeypatch.setattr(tlscodec, "TLSServer", tlscodec.TLSServer if layer == "compiled" else None)
    root = make_ca()
    mid = _intermediate(root)
    leaf, key = mid.issue("chain.example")
    fd = fleet_dir("zone-a")
    b = await echo_backends("zone-a", host="127.0.0.2")
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(b.host, b.port)])])
    fd.hub([tls_secret("chain-tls", leaf + mid.pem, key)], name="secrets.yaml")
    fd.hub([ingress("c", [rule("chain.example", ("/", "Prefix", "web"))], tls=[tls_entry("chain-tls")])])
    gw = await start_gateway(fd, https=True)
    facts = await _python_session(gw.gateway.https_address[1], root, "chain.example")
    assert facts["cert"] == "chain.example" and [a[0] for a in facts["answers"]] == [200] * 6


def test_pem_that_does_not_load_is_refused_with_a_reason() -> None:
    """The compiled layer's SSL_CTX from PEM bytes: a broken certificate, a key of another
    certificate, an encrypted key (never a terminal prompt) are TLSError (a ValueError:
    gateway/tls.py reports the Secret); a good pair with an intermediate loads."""
    _require_compiled()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca = make_ca()
    cert, key = ca.issue("x.example")
    _, other_key = ca.issue("y.example")
    locked = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    tlscodec.ServerContext(cert, key)
    tlscodec.ServerContext(cert + ca.pem, key, ["http/1.1"])
    for bad_cert, bad_key, why in ((b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", key, "tls.crt"),
                                   (b"", key, "tls.crt"), (cert, b"", "tls.key"), (cert, other_key, "tls.key.*mismatch"),
                                   (cert, locked, "tls.key")):
        with pytest.raises(tlscodec.TLSError, match=why):
            tlscodec.ServerContext(bad_cert, bad_key)
    assert issubclass(tlscodec.TLSError, ValueError)


@pytest.mark.parametrize("layer", ["compiled", "uvloop"])
async def test_pipelined_records_past_a_read_buffer_are_all_answered_in_order(
        layer, fleet_dir, echo_backends, start_gateway, monkeypatch):
    """40 requests with bodies, each in its own TLS records, sent at once (~200 KB): the
    layer decrypts more than one response's worth, the HTTP/1 protocol pauses reading
    while a response is in flight, and what stayed encrypted is read after it resumes."""
    if layer == "compiled":
        _require_compiled()
    gws, ca, backend = await _gateways(fleet_dir, echo_backends, start_gateway, monkeypatch, layers=(layer,))
    _, port = gws[layer]
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=_client(ca), server_hostname="a.example"), 10)
    try:
        n, size = 40, 5000
        for i in range(n):
            writer.write(b"POST /r%d HTTP/1.1\r\nHost: a.example\r\nContent-Length: %d\r\n\r\n" % (i, size) + b"p" * size)
        await writer.drain()
        got = [_seen(await asyncio.wait_for(read_response(reader), 20)) for _ in range(n)]
    finally:
        writer.close()
    assert got == [(200, ("POST", "/r%d" % i, size, "https", "a.example")) for i in range(n)]
    assert backend.hits == n


@pytest.mark.parametrize("layer", ["plain", "compiled", "uvloop"])
async def test_pipelined_bytes_that_end_inside_a_body_do_not_stall(
        layer, fleet_dir, echo_backends, start_gateway, monkeypatch):
    """Three requests and the head and half the body of a fourth in one write: the fourth
    becomes the request in flight once the third is answered, and the rest of its body,
    sent only after that answer, must still be read (reading was left paused: it stalled)."""
    if layer == "compiled":
        _require_compiled()
    gws, ca, backend = await _gateways(fleet_dir, echo_backends, start_gateway, monkeypatch,
                                       layers=("uvloop" if layer == "plain" else layer,))
    gw, port = next(iter(gws.values()))
    if layer == "plain":
        conn = asyncio.open_connection(gw.host, gw.port)
    else:
        conn = asyncio.open_connection("127.0.0.1", port, ssl=_client(ca), server_hostname="a.example")
    reader, writer = await asyncio.wait_for(conn, 10)
    host = b"plain.example" if layer == "plain" else b"a.example"  # (a.example has tls: plain is redirected)
    try:
        size = 6000
        reqs = [b"POST /q%d HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (i, host, size) + b"q" * size
                for i in range(4)]
        cut = len(reqs[3]) - size // 2
        writer.write(b"".join(reqs[:3]) + reqs[3][:cut])
        got = [_seen(await asyncio.wait_for(read_response(reader), 10)) for _ in range(3)]
        writer.write(reqs[3][cut:])
        got.append(_seen(await asyncio.wait_for(read_response(reader), 10)))
    finally:
        writer.close()
    proto = "http" if layer == "plain" else "https"
    assert got == [(200, ("POST", "/q%d" % i, size, proto, host.decode())) for i in range(4)]
