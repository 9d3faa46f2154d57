"""bench/proxy_profile.py's --policies target and its syscall report (issue 13: the policies
case measured beside plain fleetgate in one run, with the proxy's CPU per request)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import proxy_profile  # noqa: E402


def test_policies_adds_the_policies_target_once() -> None:
    args = proxy_profile.parse_args(["--syscalls", "--policies", "--targets", "fleetgate"])
    assert args.targets == ["fleetgate", "policies"]
    args = proxy_profile.parse_args(["--syscalls", "--policies", "--targets", "fleetgate,policies"])
    assert args.targets == ["fleetgate", "policies"]
    assert proxy_profile.parse_args(["--syscalls"]).targets == ["nginx", "fleetgate"]
    # the policies target counts requests as fleetgate does
    assert proxy_profile.MARKERS["policies"] == proxy_profile.MARKERS["fleetgate"]


def test_policies_refuses_tls_and_unknown_targets() -> None:
    with pytest.raises(SystemExit):
        proxy_profile.parse_args(["--syscalls", "--policies", "--tls"])
    with pytest.raises(SystemExit):
        proxy_profile.parse_args(["--syscalls", "--targets", "fleetgate,envoy"])


def test_syscall_report_is_per_request_with_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    args = proxy_profile.parse_args(["--syscalls", "--policies", "--targets", "fleetgate"])
    results = {
        "fleetgate": {"requests": 1000, "rps": 5000.0, "cpu_us": 32.0,
                      "syscalls": {"read": 2000, "write": 2000, "connect": 1}},
        "policies": {"requests": 2000, "rps": 4000.0, "cpu_us": 37.5,
                     "syscalls": {"read": 4200, "write": 4200, "connect": 40}},
    }
    proxy_profile.print_report(args, results)
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert lines["read"] == ["2.000", "2.100"]
    assert lines["connect"] == ["0.001", "0.020"]  # connect churn would show here
    assert lines["total"] == ["4.001", "4.220"]
    assert lines["proxy"][-2:] == ["32.0", "37.5"]
