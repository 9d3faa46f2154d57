"""Per-head cost of the HTTP/1 codec: compiled (_http1) vs its twin (_http1_py) vs httptools.

Each round parses one request head (head_end + parse_request + upstream_head for the codec;
feed_data with per-header callbacks and the upstream head joined from them, as today's
DownstreamH1 does, for httptools) and one response head (head_end + parse_response; for
httptools feed_data plus the hop-by-hop rewrite of today's UpstreamH1), at 3 and 12
request headers. Prints microseconds per head pair and ratios. `--instructions` runs each
case under callgrind twice (short and long run, so start-up cancels) and prints
instructions per head pair; needs valgrind (apt-get install -y valgrind).

    python bench/h1_codec.py [--rounds 200000]
    python bench/h1_codec.py --instructions
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from typing import Callable

import httptools

from gateway.codec import _http1_py
from gateway.protocol.http1 import REQUEST_SPECIAL, RESPONSE_HOP, strip_response_hop

try:
    from gateway.codec import _http1
except ImportError:  # not built
    _http1 = None  # type: ignore[assignment]

EXTRA = [b"Accept-Language: en-US,en;q=0.5", b"Accept-Encoding: gzip, deflate, br", b"Cookie: session=abc123",
         b"Upgrade-Insecure-Requests: 1", b"Sec-Fetch-Dest: document", b"Sec-Fetch-Mode: navigate",
         b"Sec-Fetch-Site: none", b"Cache-Control: max-age=0", b"DNT: 1"]


def request_head(headers: int) -> bytes:
    lines = [b"Host: bench.local", b"User-Agent: wrk", b"Accept: */*"] + EXTRA[:headers - 3]
    return b"GET /index.html HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 00:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")


def codec_round(mod, req: bytes) -> Callable[[], bytes]:  # type: ignore[no-untyped-def]
    head_end, parse_request, upstream_head, parse_response = (
        mod.head_end, mod.parse_request, mod.upstream_head, mod.parse_response)

    def one() -> bytes:  # positional arguments, as the protocols pass them on the hot path
        end = head_end(req, 0, 73728, 8192)
        h = parse_request(req, 0, end, 8192, 65536)
        out = upstream_head(h, h.target, h.host, b"127.0.0.1", b"http", b"0123456789ab-1")
        r = parse_response(RESPONSE, 0, head_end(RESPONSE, 0, 65536), False)
        return out + r.head
    return one


class _Req:
    """today's DownstreamH1 callbacks, reduced to the head work"""

    def __init__(self) -> None:
        self.url = b""
        self.host = b""
        self.lines: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url = url
        self.lines = []

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = REQUEST_SPECIAL.get(name.lower())
        if kind is None:
            self.lines += (name, b": ", value, b"\r\n")
        elif kind == 1:
            self.host = value


class _Resp:
    def on_headers_complete(self) -> None:
        pass


def httptools_round(req: bytes) -> Callable[[], bytes]:
    rq = _Req()
    parser = httptools.HttpRequestParser(rq)
    rparser = httptools.HttpResponseParser(_Resp())

    def one() -> bytes:
        parser.feed_data(req)
        out = b"".join((b"GET ", rq.url, b" HTTP/1.1\r\nhost: ", rq.host, b"\r\n", b"".join(rq.lines),
                        b"x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: ", rq.host,
                        b"\r\nx-request-id: 0123456789ab-1\r\nvia: 1.1 fleetgate\r\n\r\n"))
        rparser.feed_data(RESPONSE)
        head = RESPONSE[:-2]
        low = head.lower()
        if RESPONSE_HOP.findall(low):
            head, _ = strip_response_hop(head, low, 200)
        return out + head
    return one


def cases() -> dict[str, Callable[[], bytes]]:
    out: dict[str, Callable[[], bytes]] = {}
    for n in (3, 12):
        req = request_head(n)
        if _http1 is not None:
            out["compiled-%d" % n] = codec_round(_http1, req)
        out["twin-%d" % n] = codec_round(_http1_py, req)
        out["httptools-%d" % n] = httptools_round(req)
    return out


def timed(fn: Callable[[], bytes], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) * 1e6 / rounds


def instructions(case: str, rounds: int) -> int:
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                          __file__, "--case", case, "--rounds", str(rounds)],
                         capture_output=True, text=True, timeout=900, check=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise SystemExit("no instruction count in valgrind's output:\n" + out.stderr[-2000:])
    return int(m.group(1))


def report(figures: dict[str, float], unit: str) -> None:
    for n in (3, 12):
        base = figures["httptools-%d" % n]
        for impl in ("compiled", "twin", "httptools"):
            key = "%s-%d" % (impl, n)
            if key in figures:
                print("%2d headers  %-10s %10.2f %s  %5.2fx httptools" % (n, impl, figures[key], unit,
                                                                          figures[key] / base))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200_000)
    ap.add_argument("--instructions", action="store_true")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # one case only (the callgrind child)
    args = ap.parse_args()
    all_cases = cases()
    if args.case:
        fn = all_cases[args.case]
        for _ in range(args.rounds):
            fn()
        return
    if _http1 is None:
        print("note: the compiled codec is not built (pip install -e . builds it)")
    if args.instructions:
        if shutil.which("valgrind") is None:
            raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
        figures = {c: (instructions(c, 6000) - instructions(c, 1000)) / 5000 for c in all_cases}
        report(figures, "instr/round")
        return
    report({c: min(timed(fn, args.rounds // 5) for _ in range(5)) for c, fn in all_cases.items()}, "us/round")


if __name__ == "__main__":
    main()
