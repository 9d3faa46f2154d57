"""`HOST:PORT` as every listener and upstream flag writes it: one parser for all of them."""
from __future__ import annotations

Address = tuple[str, int]


def parse_hostport(text: str, *, what: str = "address", default_host: str | None = None) -> Address:
    """`HOST:PORT` or `[V6]:PORT` → (host, port); an empty host is `default_host` when one
    is given. ValueError naming `what` and the text otherwise."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host and default_host is not None:
        host = default_host
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{what} {text!r}: expected HOST:PORT")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"{what} {text!r}: port out of range")
    return host, number


def show_address(address: Address) -> str:
    """(host, port) as HOST:PORT, brackets around an IPv6 host."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
