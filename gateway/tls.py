"""TLS termination: one listener context whose SNI callback picks the certificate.

The route table says which host has which certificate (gateway/routing/certificates.py);
`CertStore.update` turns that into loaded SSL contexts, reusing a context while its
Secret's bytes are unchanged, and swaps the host map whole, so a handshake reads one
consistent map without a lock. A Secret whose PEM does not load is reported and its
host keeps the last certificate that did. Hosts without one (and clients that send no
SNI) get a self-signed default certificate generated at start.
"""
from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path
from typing import Mapping

from fleet.snapshot import Diagnostic

from . import tlscodec
from .routing.certificates import TLSCertificate

DEFAULT_COMMON_NAME = "fleetgate default certificate"
# what the TLS listener offers in ALPN; `--http2 off` leaves http/1.1 alone (protocol/h2.set_http2)
ALPN: list[str] = ["h2", "http/1.1"]


class DirectSSLObject(ssl.SSLObject):
    """An SSLObject whose per-record calls (read, write, pending) are the C object's own
    methods. The event loop's TLS layer (uvloop's SSLProtocol, asyncio's sslproto) binds
    these three once per connection and calls them for every record; ssl.SSLObject's are
    Python functions that only forward to the C object, a Python frame each (callgrind,
    HTTPS over kept-alive connections: ~3 frames and ~5k instructions per proxied request).
    Everything else (handshake, ALPN, SNI's `context`) is ssl.SSLObject's."""

    @classmethod
    def _create(cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                server_hostname: str | None = None, session: ssl.SSLSession | None = None,
                context: ssl.SSLContext | None = None) -> "DirectSSLObject":
        self = super()._create(incoming, outgoing, server_side=server_side,  # type: ignore[misc]
                               server_hostname=server_hostname, session=session, context=context)
        c = self._sslobj
        # instance attributes shadow the class's methods; same arguments, same results
        self.read = c.read
        self.write = c.write
        self.pending = c.pending
        return self  # type: ignore[no-any-return]


def server_context(cert: bytes, key: bytes) -> ssl.SSLContext:
    """A server-side context for one certificate chain and key (PEM)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.sslobject_class = DirectSSLObject
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    # the ssl module loads certificates from files only: a private folder, gone at once
    with tempfile.TemporaryDirectory(prefix="fleetgate-tls-") as tmp:
        cert_path, key_path = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        ctx.load_cert_chain(cert_path, key_path)
    if tlscodec.ServerContext is not None:
        # the compiled TLS layer's SSL_CTX for the same PEM (gateway/tlscodec): the listener
        # serves with it, SNI finds it here; a PEM it refuses is refused (TLSError: ValueError)
        ctx.native = tlscodec.ServerContext(cert, key, ALPN)  # type: ignore[attr-defined]
    return ctx


def self_signed(common_name: str = DEFAULT_COMMON_NAME, days: int = 365) -> tuple[bytes, bytes]:
    """A fresh EC P-256 key and a self-signed certificate for it (PEM cert, PEM key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def load(c: TLSCertificate) -> tuple[ssl.SSLContext | None, Diagnostic | None]:
    """The context for a certificate, or the diagnostic saying why its PEM does not load."""
    try:
        return server_context(c.cert, c.key), None
    except (ssl.SSLError, ValueError, OSError) as exc:
        return None, Diagnostic(c.origin, f"Secret/{c.secret}", f"tls.crt/tls.key do not load ({exc}); "
                                "its hosts keep their last certificate, or the default one")


def not_after(cert_pem: bytes) -> float | None:
    """The leaf certificate's expiry as a Unix timestamp (None if it does not parse)."""
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return None
    return leaf.not_valid_after_utc.timestamp()


def certificate_problems(certs: Mapping[str, TLSCertificate]) -> list[Diagnostic]:
    """What `fleetgate validate` reports: each distinct Secret whose PEM does not load."""
    problems = []
    for c in {(c.cert, c.key): c for c in certs.values()}.values():
        problem = load(c)[1]
        if problem is not None:
            problems.append(problem)
    return problems


class CertStore:
    """The certificates in force, by host name, and the listener's SSL context."""

    def __init__(self) -> None:
        self.context = server_context(*self_signed())  # the listener's; serves unknown names
        self.context.sni_callback = self._sni
        self.by_host: Mapping[str, ssl.SSLContext] = {}
        self._loaded: dict[tuple[bytes, bytes], ssl.SSLContext] = {}
        # Secret ("namespace/name") -> its leaf certificate's notAfter, for the loaded ones:
        # fleetgate_tls_certificate_expiry_timestamp_seconds{secret}
        self.expiry: Mapping[str, float] = {}
        self._not_after: dict[bytes, float | None] = {}

    def update(self, certs: Mapping[str, TLSCertificate]) -> list[Diagnostic]:
        """Load what changed and swap the host map; diagnostics for Secrets that do not load."""
        loaded: dict[tuple[bytes, bytes], ssl.SSLContext] = {}
        failed: set[tuple[bytes, bytes]] = set()  # load once per update, report once
        by_host: dict[str, ssl.SSLContext] = {}
        diags = []
        for host, c in certs.items():
            pem = (c.cert, c.key)
            ctx = loaded.get(pem) or self._loaded.get(pem)
            if ctx is None and pem not in failed:
                ctx, problem = load(c)
                if problem is not None:
                    failed.add(pem)
                    diags.append(problem)
            if ctx is None:
                ctx = self.by_host.get(host)  # the last good one, if there was one
                if ctx is None:
                    continue
            else:
                loaded[pem] = ctx
            by_host[host] = ctx
        self._loaded = loaded
        self.by_host = by_host
        not_afters: dict[bytes, float | None] = {}
        expiry: dict[str, float] = {}
        for c in certs.values():
            if (c.cert, c.key) not in loaded:
                continue
            if c.cert not in not_afters:
                not_afters[c.cert] = self._not_after[c.cert] if c.cert in self._not_after else not_after(c.cert)
            when = not_afters[c.cert]
            if when is not None:
                expiry[c.secret] = when
        self._not_after = not_afters
        self.expiry = expiry
        return diags

    def lookup(self, server_name: str) -> ssl.SSLContext | None:
        """The context for a requested name: exact, then the wildcard one level up."""
        by_host = self.by_host
        ctx = by_host.get(server_name)
        if ctx is None:
            dot = server_name.find(".")
            if dot > 0:
                ctx = by_host.get("*" + server_name[dot:])
        return ctx

    def _sni(self, sslobj: ssl.SSLObject, server_name: str | None, _listener: ssl.SSLContext) -> None:
        if server_name:
            ctx = self.lookup(server_name.lower())
            if ctx is not None:
                sslobj.context = ctx
        return None
