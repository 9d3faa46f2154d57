"""`fleetgate dns --workers 2`: two processes answer on one address (SO_REUSEPORT)."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from dnslib import QTYPE, DNSRecord

from tests.dnsplugin.dnsclient_support import question, tcp_exchange, udp_exchange

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (asked of UDP, checked on TCP)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise AssertionError("no free port")


def udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to 127.0.0.1:port (/proc/net/udp)."""
    local = "0100007F:%04X" % port
    with open("/proc/net/udp") as f:
        return sum(1 for line in f.readlines()[1:] if line.split()[1] == local)


async def test_two_workers_share_the_dns_port() -> None:
    port, admin = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fleetgate.cli", "dns", "--workers", "2", "--cluster", "zone-b",
                             "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                             "--log-level", "warning"], cwd=str(ROOT), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        answered = 0
        q = question("echo.demo.svc.clusterset.local", qid=1)
        while time.monotonic() < deadline and (answered < 20 or udp_sockets_on(port) < 2):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
            try:
                reply = DNSRecord.parse(await udp_exchange(("127.0.0.1", port), q, timeout=0.5))
            except TimeoutError:
                continue
            if any(rr.rtype == QTYPE.A for rr in reply.rr):
                answered += 1
        assert answered >= 20 and udp_sockets_on(port) == 2
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout.split()
        assert len(children) == 2
        # many source ports (the kernel spreads them over both sockets): every one answered
        for i in range(40):
            reply = DNSRecord.parse(await udp_exchange(("127.0.0.1", port), question(
                "echo.demo.svc.clusterset.local", qid=100 + i)))
            assert reply.header.id == 100 + i and any(rr.rtype == QTYPE.A for rr in reply.rr)
        for _ in range(10):  # TCP connections too
            (raw,) = await tcp_exchange(("127.0.0.1", port), question("echo.demo.svc.clusterset.local", qid=7))
            assert DNSRecord.parse(raw).header.id == 7
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 15) == 0
    assert not any(os.path.exists(f"/proc/{int(c)}") and open(f"/proc/{int(c)}/stat").read().split()[2] != "Z"
                   for c in children)


def test_the_member_deployment_runs_dns_workers() -> None:
    """The DNS Deployment's arguments parse as `fleetgate dns` with two workers."""
    import yaml

    from fleetgate.cli import build_parser

    dep = yaml.safe_load((ROOT / "manifests" / "base" / "dns" / "deployment.yaml").read_text())
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args([a.replace("$(CLUSTER_NAME)", "zone-a") for a in container["args"]])
    assert args.command == "dns" and args.workers == 2 and args.dns_listen == "0.0.0.0:1053"
