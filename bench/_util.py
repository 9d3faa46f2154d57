"""Shared plumbing for the bench scripts: tools, processes, readiness, wrk, RSS.

Kept free of any fleetgate import so a benchmark can run against whatever
`fleetgate` command it is given, including an installed one.
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Sequence

LOOPBACK = "127.0.0.1"


def log(msg: str, *args: object) -> None:
    """Progress goes to stderr so stdout holds only the results."""
    print(("# " + msg) % args if args else "# " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tools

def ensure_tools(binaries: dict[str, str], *, timeout: float = 600.0) -> None:
    """Install the apt packages of the binaries that are missing; skip apt when none is.

    `binaries` maps an executable name to the apt package that provides it.
    """
    missing = {b: p for b, p in binaries.items() if find_binary(b) is None}
    if not missing:
        return
    packages = sorted(set(missing.values()))
    log("installing %s with apt-get (missing: %s)", " ".join(packages), " ".join(sorted(missing)))
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update"], check=False, timeout=timeout, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", *packages], check=True, timeout=timeout, env=env)
    still = [b for b in missing if find_binary(b) is None]
    if still:
        raise SystemExit("still missing after apt-get: %s" % " ".join(still))


def find_binary(name: str) -> str | None:
    """shutil.which, also looking in sbin (nginx lives in /usr/sbin, often off a user's PATH)."""
    extra = os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin"])
    return shutil.which(name) or shutil.which(name, path=extra)


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel just handed out; good enough for a benchmark's own listeners."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pinned(cmd: Sequence[str], cpu: int | None) -> list[str]:
    """Prefix `taskset -c CPU` when pinning is wanted and available."""
    if cpu is None or find_binary("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", str(cpu), *cmd]


# ---------------------------------------------------------------- processes

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Processes:
    """Every process a benchmark starts, each in its own session so its group can be ended.

    Use as a context manager: all are stopped on exit, including on Ctrl-C.
    """
    procs: list[Proc] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, cmd: Sequence[str], *, log_path: Path | None = None,
              env: dict[str, str] | None = None, cwd: str | Path | None = None) -> Proc:
        out: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            fh = open(log_path, "ab")
            self._logs.append(fh)
            out = fh
        log("start %s: %s", name, " ".join(cmd))
        popen = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, cwd=cwd, start_new_session=True)
        proc = Proc(name=name, popen=popen, log_path=log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, *, grace: float = 5.0) -> None:
        """SIGTERM the process group we created, then SIGKILL after `grace` seconds."""
        if proc.alive():
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.popen.wait(timeout=grace)
        # Children of a stopped leader (nginx workers, gateway workers) share its group.
        _signal_group(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                log("could not stop %s (pid %d): %s", proc.name, proc.pid, exc)
        self.procs.clear()
        for fh in self._logs:
            fh.close()
        self._logs.clear()

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # pid == pgid: each started process leads its own session
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- readiness

def http_get(host: str, port: int, path: str = "/", *, host_header: str | None = None,
             timeout: float = 2.0) -> int:
    """Status code of one GET, or 0 when the connection fails."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host_header} if host_header else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def wait_http(proc: Proc | None, host: str, port: int, path: str = "/", *, host_header: str | None = None,
              want: int = 200, deadline_s: float = 30.0) -> None:
    """Poll a GET until it answers `want`, the process dies, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    status = 0
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError("%s exited with %s while starting:\n%s"
                               % (proc.name, proc.popen.returncode, proc.log_tail()))
        status = http_get(host, port, path, host_header=host_header)
        if status == want:
            return
        time.sleep(0.1)
    name = proc.name if proc is not None else "%s:%d" % (host, port)
    tail = proc.log_tail() if proc is not None else ""
    raise RuntimeError("%s: GET %s gave %s, not %s, within %.0f s\n%s"
                       % (name, path, status or "no answer", want, deadline_s, tail))


# ---------------------------------------------------------------- wrk

@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    cpu_us: float = 0.0  # CPU microseconds per request of the server under test, when measured

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Read req/s, p50/p99 (from --latency), request count and errors from wrk's output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if rps is None:
        raise ValueError("no Requests/sec in wrk output:\n%s" % text)
    pct = {m.group(1): _ms(m.group(2), m.group(3))
           for m in re.finditer(r"^\s+(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)}
    if "50" not in pct or "99" not in pct:
        raise ValueError("no latency distribution in wrk output (run with --latency):\n%s" % text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return WrkResult(
        rps=float(rps.group(1)), p50_ms=pct["50"], p99_ms=pct["99"],
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0)


def run_wrk(url: str, *, connections: int, duration_s: float, cpu: int | None,
            headers: Sequence[str] = (), threads: int = 1) -> WrkResult:
    """One wrk run; bounded by its duration plus a margin."""
    cmd = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % max(1, round(duration_s)), "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(pinned(cmd, cpu), capture_output=True, text=True, timeout=duration_s + 30, check=False)
    if out.returncode != 0:
        raise RuntimeError("wrk failed (%d): %s%s" % (out.returncode, out.stdout, out.stderr))
    return parse_wrk(out.stdout)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- memory

def rss_kb(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """pid and all its live descendants (gateway workers are children of the leader)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss_kb(pid: int) -> dict[int, int]:
    """VmRSS per live process of pid's tree (taskset execs, so pid is the server itself)."""
    sizes = {p: rss_kb(p) for p in descendants(pid)}
    return {p: kb for p, kb in sizes.items() if kb > 0}


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by pid's live process tree."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in descendants(pid):
        try:
            fields = Path("/proc/%d/stat" % p).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_signals() -> None:
    """SIGTERM and SIGINT unwind through `with Processes()` blocks, which stop every server
    (SIGINT explicitly too: a shell starts background jobs with SIGINT ignored)."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
