"""`fleetgate controller` imports neither the gateway nor the DNS server, nor kubernetes_asyncio's
generated classes (issue 18: a controller's memory); the commands that run them still get
their flags. Each case runs in a fresh interpreter: this test process has them all imported."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("gateway.cli", "gateway.server", "dnsplugin.service", "dnsplugin.server",
         "kubernetes_asyncio.client.api.core_v1_api", "kubernetes_asyncio.client.models.v1_pod")


def loaded_after(words: list[str]) -> dict[str, object]:
    """Which HEAVY modules are loaded once `fleetgate WORDS` is parsed and its runner imported."""
    code = textwrap.dedent(f"""
        import json, sys
        from fleetgate import cli, run
        args = cli.build_parser({words[0]!r}).parse_args({words!r})
        print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules],
                           "http": getattr(args, "http", None) is not None}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_controller_command_loads_no_gateway_dns_or_generated_client() -> None:
    assert loaded_after(["controller"]) == {"loaded": [], "http": False}


def test_the_gateway_command_still_gets_its_flags() -> None:
    got = loaded_after(["gateway", "--http", "127.0.0.1:0"])
    assert got["http"] is True and "gateway.cli" in got["loaded"]  # type: ignore[operator]


def test_every_command_parses_as_before_when_none_is_named() -> None:
    from fleetgate.cli import build_parser
    assert build_parser().parse_args(["up", "--http", "127.0.0.1:0"]).http == "127.0.0.1:0"
    assert build_parser("controller").parse_args(["controller", "--max-concurrent-writes", "4"]) \
        .max_concurrent_writes == 4
