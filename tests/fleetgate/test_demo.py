"""`fleetgate demo` as a newcomer runs it: the real console script, in a fresh folder.

The demo copies the bundled fleet into a working folder and follows it; the banner's own
sed line moves traffic; a second demo stops at once with one line and exit 2.
"""
from __future__ import annotations

import asyncio
import filecmp
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from fleetgate.demo import BUNDLED_DEMO, demo_pods

FLEETGATE = str(Path(sys.executable).with_name("fleetgate"))  # the console script pip made
BANNER_END = "Ctrl-C stops."


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def listeners() -> dict[str, str]:
    return {flag: f"127.0.0.1:{free_port()}" for flag in ("--http", "--admin", "--dns")}


def flags(ports: dict[str, str]) -> list[str]:
    return [x for kv in ports.items() for x in kv]


def taken(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError:
            return True
    return False


class Demo:
    """A running `fleetgate demo`: its process, and its stdout lines up to the banner's end."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr = stderr
        self.lines: list[str] = []

    @classmethod
    async def start(cls, args: list[str], cwd: Path) -> "Demo":
        stderr = cwd / f"stderr-{len(list(cwd.glob('stderr-*')))}.txt"
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(FLEETGATE, "demo", *args, cwd=cwd,
                                                        stdout=asyncio.subprocess.PIPE, stderr=err)
        return cls(proc, stderr)

    async def banner(self, timeout: float = 30.0) -> list[str]:
        """Lines until the banner's last; fails with stderr if the demo exits first."""
        assert self.proc.stdout is not None

        async def read() -> None:
            while not self.lines or self.lines[-1] != BANNER_END:
                raw = await self.proc.stdout.readline()  # type: ignore[union-attr]
                if not raw:
                    raise AssertionError(f"demo exited {await self.proc.wait()}: {self.stderr.read_text()}")
                self.lines.append(raw.decode().rstrip("\n"))
        await asyncio.wait_for(read(), timeout)
        return self.lines

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 20)


async def clusters_answering(http: str, host: str, n: int) -> list[str]:
    """x-fleetgate-cluster of n requests, each on a new connection (no affinity by reuse)."""
    out = []
    for _ in range(n):
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{http}/", headers={"Host": host}) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
                assert body["cluster"] == r.headers["x-fleetgate-cluster"]  # the echo pod agrees
                out.append(r.headers["x-fleetgate-cluster"])
    return out


async def until_all_from(http: str, host: str, cluster: str, *, rounds: int = 100) -> list[str]:
    """Poll (bounded in count) until 10 requests in a row are answered by `cluster`."""
    seen: list[str] = []
    for _ in range(rounds):
        seen = await clusters_answering(http, host, 10)
        if set(seen) == {cluster}:
            return seen
        await asyncio.sleep(0.1)
    return seen


def sed_available() -> None:
    if shutil.which("sed") is None:
        pytest.skip("the banner's edit line needs sed: apt-get install -y sed")


async def test_demo_copies_the_bundled_fleet_follows_its_edits_and_a_second_demo_stops_with_one_line(
        tmp_path: Path) -> None:
    sed_available()
    busy = [f"{a}:{p}" for _, _, a, p in demo_pods(str(BUNDLED_DEMO / "fleet.yaml")) if taken(a, p)]
    if busy:
        pytest.skip(f"the demo's fixed backend addresses are in use by another process: {', '.join(busy)}")
    ports = listeners()
    demo = await Demo.start(flags(ports) + ["--log-level", "warning"], tmp_path)
    try:
        lines = await demo.banner()
        work = tmp_path / "fleetgate-demo"
        assert lines[0] == f"demo fleet: {work} (a new copy of the bundled demo)"
        # a full copy of the bundled fleet, which stays as it was
        compare = filecmp.dircmp(BUNDLED_DEMO, work)
        assert not compare.left_only and not compare.right_only and not compare.diff_files
        assert f"The fleet is the folder {work}" in lines
        assert any(line.split() == ["hub/ingresses.yaml", "Ingress,", "Namespace"] for line in lines), lines
        bundled_ingresses = (BUNDLED_DEMO / "hub" / "ingresses.yaml").read_bytes()

        http = ports["--http"]
        before = await clusters_answering(http, "echo.demo.local", 40)
        assert set(before) == {"zone-a", "zone-b"}  # 50/50: 40 from one cluster would be 2^-39

        sed = next(line.strip() for line in lines if line.strip().startswith("sed -i"))
        curl = next(line for line in lines if "grep -i x-fleetgate-cluster" in line)
        assert str(work / "hub" / "ingresses.yaml") in sed and curl.endswith("# now always zone-b")
        subprocess.run(shlex.split(sed), check=True, timeout=10)
        assert "zone-a=0,zone-b=100" in (work / "hub" / "ingresses.yaml").read_text()
        after = await until_all_from(http, "echo.demo.local", "zone-b")
        assert set(after) == {"zone-b"}, after
        assert (BUNDLED_DEMO / "hub" / "ingresses.yaml").read_bytes() == bundled_ingresses

        # a second demo in the same folder while the first runs: one line, exit 2, nothing overwritten
        second = await asyncio.to_thread(subprocess.run, [FLEETGATE, "demo", *flags(listeners())], cwd=tmp_path,
                                         capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        err = second.stderr.splitlines()
        assert len(err) == 1 and err[0].startswith("fleetgate: cannot listen for demo backend "), err
        pods = demo_pods(str(work / "fleet.yaml"))
        assert any(err[0].endswith(f" on {a}:{p}: Address already in use") for _, _, a, p in pods), err
        assert second.stdout.splitlines()[0] == f"demo fleet: {work} (existing folder, used as it is)"
        assert "zone-a=0,zone-b=100" in (work / "hub" / "ingresses.yaml").read_text()
        # and the first demo still serves
        assert set(await clusters_answering(http, "echo.demo.local", 5)) == {"zone-b"}
    finally:
        assert await demo.stop() == 0, demo.stderr.read_text()


def write_fleet(root: Path, backend: tuple[str, int]) -> Path:
    """A one-cluster fleet whose single pod is `backend` (the demo starts an echo there)."""
    (root / "hub").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "fleet.yaml").write_text("hub: {manifests: hub/}\nclusters:\n  - name: a\n    manifests: a/\n")
    (root / "hub" / "ing.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: demo}\n"
        "spec:\n  ingressClassName: fleetgate\n  rules:\n  - host: web.example.com\n    http:\n      paths:\n"
        "      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n")
    (root / "a" / "web.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {ports: [{name: http, port: 80}]}\n"
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: web-1, namespace: demo, labels: {kubernetes.io/service-name: web}}\n"
        f"addressType: IPv4\nports: [{{name: http, port: {backend[1]}}}]\nendpoints: [{{addresses: [\"{backend[0]}\"]}}]\n")
    return root


async def test_an_explicit_fleet_folder_wins_and_a_taken_http_port_is_one_line_naming_it(tmp_path: Path) -> None:
    pod = "127.0.7.1"
    fleet = write_fleet(tmp_path / "mine", (pod, free_port(pod)))
    ports = listeners()
    demo = await Demo.start(["--fleet", str(fleet), *flags(ports), "--log-level", "warning"], tmp_path)
    try:
        lines = await demo.banner()
        assert not any(line.startswith("demo fleet:") for line in lines)  # no working copy made
        assert not (tmp_path / "fleetgate-demo").exists()
        assert f"The fleet is the folder {fleet}" in lines
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{ports['--http']}/x", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200 and (await r.json())["cluster"] == "a"

        # another demo whose backends are free but whose --http is the first one's
        other = write_fleet(tmp_path / "other", (pod, free_port(pod)))
        taken_http = {**listeners(), "--http": ports["--http"]}
        second = await asyncio.to_thread(subprocess.run, [FLEETGATE, "demo", "--fleet", str(other),
                                                          *flags(taken_http)],
                                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"fleetgate: cannot listen for http on {ports['--http']}: Address already in use"]
    finally:
        assert await demo.stop() == 0, demo.stderr.read_text()


@pytest.mark.parametrize("make", ["file", "folder without fleet.yaml"])
def test_a_dir_that_cannot_be_the_working_folder_is_one_line_and_exit_2(tmp_path: Path, make: str) -> None:
    target = tmp_path / "occupied"
    if make == "file":
        target.write_text("not a folder")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    proc = subprocess.run([FLEETGATE, "demo", "--dir", str(target), *flags(listeners())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(f"fleetgate: --dir {target}: ")
    assert sorted(os.listdir(tmp_path)) == ["occupied"]  # nothing created, nothing touched
    if make != "file":
        assert os.listdir(target) == ["notes.txt"]


def test_the_working_folder_is_copied_once_then_reused(tmp_path: Path) -> None:
    from fleetgate.demo import prepare_working_folder
    first = prepare_working_folder(tmp_path / "deep" / "demo")
    assert first.created and first.fleet_yaml.is_file() and first.path.is_absolute()
    ing = first.path / "hub" / "ingresses.yaml"
    ing.write_text("# mine\n")
    again = prepare_working_folder(tmp_path / "deep" / "demo")
    assert (again.path, again.created) == (first.path, False)
    assert ing.read_text() == "# mine\n"
    assert sorted(os.listdir(tmp_path / "deep")) == ["demo"]  # no partial copy left beside it
