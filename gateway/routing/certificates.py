"""Which certificate serves which host name: Ingress `tls` sections as pure data.

Each `spec.tls[]` entry names a Secret in the Ingress's namespace holding `tls.crt` and
`tls.key` (type `kubernetes.io/tls`; other types are accepted when both keys are there)
and the hosts it covers; an entry without hosts covers the hosts of the Ingress's rules.
The oldest Ingress wins a host claimed twice, as it wins a path. Loading the PEM bytes
into TLS contexts is I/O and happens in gateway/tls.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from fleet.objects import Ingress
from fleet.snapshot import ClusterObjects


@dataclass(frozen=True, slots=True)
class TLSCertificate:
    secret: str  # "namespace/name"
    cert: bytes  # PEM: the certificate chain
    key: bytes  # PEM: its private key
    origin: str  # where the Secret came from, for diagnostics when the PEM does not load


def certificates(hub: ClusterObjects, ingresses: Iterable[Ingress],
                 diag: Callable[[Ingress, str, str], None]) -> dict[str, TLSCertificate]:
    """Host name (lowercase; `*.example.com` for a wildcard) -> its certificate, taking
    `ingresses` oldest first."""
    out: dict[str, TLSCertificate] = {}
    owner: dict[str, str] = {}
    for ing in ingresses:
        ns = ing.meta.namespace
        ident = f"{ns}/{ing.meta.name}"
        for i, entry in enumerate(ing.tls):
            where = f"spec.tls[{i}]"
            hosts = entry.hosts or tuple(dict.fromkeys(r.host for r in ing.rules if r.host))
            if not entry.secret_name:
                diag(ing, f"{where}: no secretName; its hosts get the default certificate", "warning")
                continue
            secret = hub.secrets.get((ns, entry.secret_name))
            if secret is None:
                diag(ing, f"{where}: Secret {ns}/{entry.secret_name} not found; its hosts get the "
                          "default certificate", "error")
                continue
            cert, key = secret.data.get("tls.crt"), secret.data.get("tls.key")
            if not cert or not key:
                missing = " and ".join(k for k, v in (("tls.crt", cert), ("tls.key", key)) if not v)
                diag(ing, f"{where}: Secret {ns}/{entry.secret_name} has no {missing}; its hosts get "
                          "the default certificate", "error")
                continue
            found = TLSCertificate(f"{ns}/{entry.secret_name}", cert, key, hub.origin(secret))
            for host in hosts:
                if host in out and out[host] != found:
                    diag(ing, f"{where}: host {host} already has Secret {out[host].secret} from older "
                              f"Ingress {owner[host]}; ignored here", "warning")
                    continue
                out[host] = found
                owner.setdefault(host, ident)
    return out
