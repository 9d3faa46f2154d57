"""Kubernetes' own rules for names, addresses and ports, as pure checks.

The API server refuses an object that breaks these rules; a folder of manifests has no API
server in front of it, so fleet/objects.py applies the same checks when it parses, and a
bad object becomes a diagnostic naming the field instead of a route to nowhere
(`127.0.10.300`) or a DNS name that cannot exist. Each check returns None when the value
is valid, else the problem as a phrase the caller prefixes with the field. Results are
memoised: a watch re-parses the same names and addresses on every change of an object.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"  # patterns are used with fullmatch (no "$" newline gap)
_LABEL_RE = re.compile(_LABEL)
_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_IANA_SVC_RE = re.compile(r"[-a-z0-9]+")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}")  # the common case, without ipaddress' cost


@lru_cache(maxsize=1 << 16)
def dns1123_label(value: str) -> str | None:
    """A namespace, Service, ServiceExport or port name (RFC 1123 label)."""
    if not value:
        return "must not be empty"
    if len(value) > 63:
        return f"{value!r} is longer than 63 characters (an RFC 1123 label)"
    if not _LABEL_RE.fullmatch(value):
        return (f"{value!r} is not an RFC 1123 label (lowercase letters, digits and '-', "
                "starting and ending with a letter or digit)")
    return None


@lru_cache(maxsize=1 << 16)
def dns1123_subdomain(value: str) -> str | None:
    """An Ingress, EndpointSlice, Secret or IngressClass name (RFC 1123 subdomain)."""
    if not value:
        return "must not be empty"
    if len(value) > 253:
        return f"{value!r} is longer than 253 characters (an RFC 1123 subdomain)"
    if not _SUBDOMAIN_RE.fullmatch(value):
        return (f"{value!r} is not an RFC 1123 subdomain (lowercase letters, digits, '-' and '.', "
                "each part starting and ending with a letter or digit)")
    return None


@lru_cache(maxsize=1 << 16)
def ingress_host(value: str) -> str | None:
    """An Ingress rule or tls host: a DNS name, `*.` allowed as its first label, never an IP."""
    if _is_ip(value):
        return f"{value!r} is an IP address; a host must be a DNS name"
    problem = dns1123_subdomain(value[2:] if value.startswith("*.") else value)
    return None if problem is None else problem.replace("an RFC 1123 subdomain", "a DNS name (RFC 1123)")


@lru_cache(maxsize=1 << 16)
def port_name(value: str) -> str | None:
    """A named target or backend port (IANA_SVC_NAME: at most 15, a letter, no '--')."""
    if not value or len(value) > 15 or not _IANA_SVC_RE.fullmatch(value) or "--" in value \
            or value.startswith("-") or value.endswith("-") or not any(c.isalpha() for c in value):
        return (f"{value!r} is not a port name (at most 15 lowercase letters, digits and '-', "
                "at least one letter, no leading, trailing or double '-')")
    return None


@lru_cache(maxsize=1 << 12)  # an endpoint seen before is found in fleet.objects' endpoint table, unchecked;
# a larger cache held 12 MB of addresses at 10,000 services (bench/controller_keyed.py --tracemalloc)
def address(value: str, address_type: str) -> str | None:
    """An EndpointSlice address of its slice's addressType (IPv4, IPv6 or FQDN)."""
    if address_type == "FQDN":
        problem = dns1123_subdomain(value)
        return None if problem is None else problem.replace("an RFC 1123 subdomain", "an FQDN (RFC 1123)")
    if address_type == "IPv4" and _IPV4_RE.fullmatch(value):
        return None
    cls = ipaddress.IPv4Address if address_type == "IPv4" else ipaddress.IPv6Address
    try:
        cls(value)
    except ValueError:
        return f"{value!r} is not an {address_type} address"
    return None


@lru_cache(maxsize=1 << 16)
def ip(value: str) -> str | None:
    """A Service clusterIP or ServiceImport IP (either family)."""
    return None if _is_ip(value) else f"{value!r} is not an IP address"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
