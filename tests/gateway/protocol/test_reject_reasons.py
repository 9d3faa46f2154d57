"""The reasons of refused requests are the x-fleetgate-reason values docs/headers.md
lists, whatever words the codec uses internally (one gateway, one connection per case)."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

from h1_support import HOST, one_service, read_response

H = b"Host: " + HOST.encode() + b"\r\n"
DOC = Path(__file__).resolve().parents[3] / "docs" / "headers.md"

CASES = [  # raw request, the documented reason
    (b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", "duplicate-host"),
    (b"GET / HTTP/1.1\r\nAccept: x\r\n\r\n", "missing-host"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 5\r\n\r\nabc", "conflicting-content-length"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: x\r\n\r\n", "bad-content-length"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "content-length-with-transfer-encoding"),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", "unsupported-transfer-encoding"),
    (b"GET / HTTP/1.1\r\n" + H + b"Expect: teapot\r\n\r\n", "expectation-failed"),
    (b"GET ftp://x/ HTTP/1.1\r\n" + H + b"\r\n", "bad-request-target"),
    (b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n", "bad-request"),
    (b"GET / HTTP/1.1\nHost: x\n\n", "bad-request"),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "bad-request"),
    (b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", "connect-not-allowed"),
]


def documented() -> set[str]:
    return set(re.findall(r"`([a-z0-9-]+)`", "".join(
        line for line in DOC.read_text().splitlines(keepends=True) if line.startswith("| 4")
        or line.startswith("| 5"))))


async def test_refusals_carry_documented_reasons(fleet_dir, echo_backends, start_gateway) -> None:
    gw, (b,) = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.66.1"})
    known = documented()
    assert "bad-request" in known and "duplicate-host" in known  # the table was read
    got = {}
    for raw, want in CASES:
        reader, writer = await asyncio.open_connection(gw.host, gw.port)
        try:
            writer.write(raw)
            r = await read_response(reader)
            got[raw] = r.headers.get("x-fleetgate-reason")
        finally:
            writer.close()
        assert got[raw] == want, (raw, got[raw])
        assert want in known, want
    assert b.hits == 0
