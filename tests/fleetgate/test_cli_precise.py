"""The CLI says exactly what it does: --version, defaults in help, exit codes, one
listener named per bind failure, --fleet as file or folder, a strict validate."""
from __future__ import annotations

import argparse
import os
import base64
import shutil
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from fleetgate.cli import build_parser

FLEETGATE = str(Path(sys.executable).with_name("fleetgate"))  # the console script pip made
DEMO = Path(__file__).resolve().parents[2] / "fleetgate" / "examples" / "demo"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([FLEETGATE, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(result: subprocess.CompletedProcess) -> str:
    return result.stdout.splitlines()[-1]


@pytest.mark.parametrize("pure", ["0", "1"])
def test_version_names_the_release_and_each_codec_in_use(pure: str) -> None:
    """The compiled modules are what a normal install runs; FLEETGATE_PURE_PYTHON=1 says twin."""
    env = {**os.environ, "FLEETGATE_PURE_PYTHON": pure}
    result = subprocess.run([FLEETGATE, "--version"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"fleetgate {version('fleetgate')}"
    rows = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert set(rows) == {"http1_codec", "request_path", "http2", "tls", "dns_fastpath"}
    tls = rows.pop("tls")  # the HTTPS layer: ours over OpenSSL, or the event loop's (uvloop)
    if pure == "1":
        assert set(rows.values()) == {"pure"} and tls == "uvloop"
    else:
        assert set(rows.values()) <= {"compiled", "pure"} and tls in ("compiled", "uvloop")
        if os.environ.get("FLEETGATE_REQUIRE_COMPILED") == "1":
            assert set(rows.values()) == {"compiled"} and tls == "compiled"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_help_states_its_default(command: str) -> None:
    parser = _subcommands()[command]
    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert options
    missing = [a.option_strings[0] for a in options if "default" not in (a.help or "")]
    assert missing == []
    text = parser.format_help()
    assert "%(default)" not in text  # every placeholder was filled in


def test_help_documents_the_exit_codes_and_a_usage_error_exits_2() -> None:
    result = run("--help")
    assert result.returncode == 0
    epilog = result.stdout[result.stdout.index("exit codes:"):]
    for code in ("0  ok", "1  validate found errors", "2  usage error or start-up failure"):
        assert code in epilog
    assert run("gateway", "--no-such-flag").returncode == 2
    assert run().returncode == 2  # no subcommand


def test_validate_takes_the_folder_holding_fleet_yaml(tmp_path: Path) -> None:
    fleet = tmp_path / "demo"
    shutil.copytree(DEMO, fleet)
    by_folder, by_file = run("validate", "--fleet", str(fleet)), run("validate", "--fleet", str(fleet / "fleet.yaml"))
    assert by_folder.returncode == 0 and by_file.returncode == 0, by_folder.stdout + by_folder.stderr
    assert summary(by_folder) == summary(by_file) == \
        f"{fleet / 'fleet.yaml'}: 2 member clusters, 2 Ingresses on the hub, 0 errors, 0 warnings"
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = run("validate", "--fleet", str(empty))
    assert bad.returncode == 1 and "Is a directory" not in bad.stdout + bad.stderr
    assert bad.stdout.splitlines()[0] == (f"{empty}: a folder without a fleet.yaml; give the fleet.yaml itself "
                                          "or the folder that holds it")


def test_every_server_subcommand_takes_a_fleet_folder(tmp_path: Path) -> None:
    fleet = tmp_path / "demo"
    shutil.copytree(DEMO, fleet)
    # a taken admin port stops each command after its fleet is read: a folder must read as a fleet
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        admin = f"127.0.0.1:{busy.getsockname()[1]}"
        for command in ("gateway", "controller", "dns", "up"):
            extra = {"gateway": ["--http", "127.0.0.1:0"], "dns": ["--listen", "127.0.0.1:0"],
                     "up": ["--http", "127.0.0.1:0", "--dns", "127.0.0.1:0"]}.get(command, [])
            result = run(command, "--fleet", str(fleet), "--admin", admin, *extra)
            assert result.returncode == 2
            assert result.stderr.splitlines() == [f"fleetgate: cannot listen for admin on {admin}: "
                                                  "Address already in use"], command
    missing = run("gateway", "--fleet", str(tmp_path), "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0")
    assert missing.returncode == 2 and missing.stderr.startswith(f"fleetgate: {tmp_path}: a folder without")


def _tls_fleet(root: Path) -> Path:
    from gateway.tls import self_signed
    shutil.copytree(DEMO, root)
    ing = root / "hub" / "ingresses.yaml"
    ing.write_text(ing.read_text().replace("spec:\n  ingressClassName: fleetgate\n  rules:\n    - host: echo.demo.local",
                                           "spec:\n  ingressClassName: fleetgate\n  tls:\n    - {secretName: echo-tls, "
                                           "hosts: [echo.demo.local]}\n  rules:\n    - host: echo.demo.local", 1))
    assert "echo-tls" in ing.read_text()
    cert, key = self_signed("echo.demo.local")
    (root / "hub" / "tls.yaml").write_text(
        "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata: {name: echo-tls, namespace: demo}\n"
        f"data: {{tls.crt: {base64.b64encode(cert).decode()}, tls.key: {base64.b64encode(key).decode()}}}\n")
    return root


def test_a_bind_failure_names_only_the_listener_that_failed(tmp_path: Path) -> None:
    fleet = _tls_fleet(tmp_path / "tls")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        https = f"127.0.0.1:{busy.getsockname()[1]}"
        http = f"127.0.0.1:{free_port()}"
        result = run("gateway", "--fleet", str(fleet), "--http", http, "--https", https,
                     "--admin", f"127.0.0.1:{free_port()}", "--log-level", "error")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"fleetgate: cannot listen for https on {https}: Address already in use"]


def _add(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "---\n" + text)


def test_bad_address_port_and_name_are_errors_with_file_object_and_field(tmp_path: Path) -> None:
    fleet = tmp_path / "demo"
    shutil.copytree(DEMO, fleet)
    echo = fleet / "zone-b" / "echo.yaml"
    echo.write_text(echo.read_text().replace('"127.0.20.1"', '"127.0.10.300"', 1))
    assert "127.0.10.300" in echo.read_text()
    api = fleet / "zone-a" / "api.yaml"
    _add(api, "apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name, namespace: demo}\n"
              "spec: {ports: [{port: 80, targetPort: 8080}]}\n")
    _add(api, "apiVersion: v1\nkind: Service\nmetadata: {name: far, namespace: demo}\n"
              "spec: {ports: [{port: 80, targetPort: 70000}]}\n")
    result = run("validate", "--fleet", str(fleet))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{echo}: EndpointSlice/demo/echo-zone-b: endpoints[0].addresses[0]: '127.0.10.300' is not an IPv4 " \
           "address" in lines
    assert any(line.startswith(f"{api}: Service/demo/Bad_Name: metadata.name: 'Bad_Name' is not an RFC 1123 label")
               for line in lines), lines
    assert f"{api}: Service/demo/far: spec.ports[0].targetPort: 70000 is out of range 1..65535" in lines
    errors = [line for line in lines[:-1] if not line.endswith("(warning)")]
    warnings = [line for line in lines[:-1] if line.endswith("(warning)")]
    assert summary(result).endswith(f", {len(errors)} errors, {len(warnings)} warnings")
    assert len(errors) == 3


def test_a_missing_backend_service_is_a_warning_and_an_error_under_strict(tmp_path: Path) -> None:
    fleet = tmp_path / "demo"
    shutil.copytree(DEMO, fleet)
    ingresses = fleet / "hub" / "ingresses.yaml"
    _add(ingresses, "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ghost, namespace: demo}\n"
                    "spec:\n  ingressClassName: fleetgate\n  rules:\n  - host: ghost.demo.local\n    http:\n"
                    "      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: nope, port: "
                    "{number: 80}}}}\n")
    lenient = run("validate", "--fleet", str(fleet))
    assert lenient.returncode == 0, lenient.stdout
    problem = [line for line in lenient.stdout.splitlines() if "Ingress/demo/ghost" in line]
    assert len(problem) == 1 and problem[0].startswith(f"{ingresses}: Ingress/demo/ghost: ")
    assert "demo/nope not found in any member cluster" in problem[0] and problem[0].endswith(" (warning)")
    assert summary(lenient).endswith("3 Ingresses on the hub, 0 errors, 1 warnings")

    strict = run("validate", "--fleet", str(fleet), "--strict")
    assert strict.returncode == 1
    assert problem[0].replace(" (warning)", " (warning; an error under --strict)") in strict.stdout.splitlines()
    assert summary(strict).endswith("0 warnings") and summary(strict).endswith("1 errors, 0 warnings")
