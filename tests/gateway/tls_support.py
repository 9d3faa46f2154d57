"""TLS pieces for gateway tests: a throwaway CA, certificates it issues, Secrets holding
them, and a real TLS client that reports which certificate the gateway presented."""
from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from h1_support import RawResponse, read_response


@dataclass
class CertAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def client_context(self) -> ssl.SSLContext:
        """Verifies the gateway's certificate against this CA (and the host name)."""
        ctx = ssl.create_default_context(cadata=self.pem.decode())
        return ctx

    def issue(self, *names: str, serial: int | None = None) -> tuple[bytes, bytes]:
        """A leaf certificate for the DNS names, signed by this CA: (cert PEM, key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(serial or x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def make_ca() -> CertAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetgate test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return CertAuthority(cert, key)


def tls_secret(name: str, cert: bytes, key: bytes, *, namespace: str = "demo") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}


def tls_entry(secret: str, *hosts: str) -> dict:
    entry: dict = {"secretName": secret}
    if hosts:
        entry["hosts"] = list(hosts)
    return entry


@dataclass
class TLSExchange:
    peer: x509.Certificate  # the certificate the gateway presented
    response: RawResponse


async def https_get(port: int, server_name: str | None, path: str = "/", *, host: str | None = None,
                    context: ssl.SSLContext | None = None, requests: int = 1) -> list[TLSExchange]:
    """GET over one real TLS connection (SNI = server_name; no verification unless a context
    is given), `requests` times on the same connection."""
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name), 5)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        peer = x509.load_der_x509_certificate(der)
        out = []
        for _ in range(requests):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host or server_name}\r\n\r\n".encode())
            out.append(TLSExchange(peer, await read_response(reader)))
        return out
    finally:
        writer.close()


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
