"""The access log of a real `fleetgate gateway` process: on stdout by default, one line per
request; stdout a pipe the reader closed costs no request (the lost lines are counted);
a log file that cannot be opened stops the start with one line."""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time

import aiohttp
from aiohttp import web

from tests.fleetgate.process_support import free_port, served, start, wait_ready, write_fleet


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def scrape(admin: str) -> str:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://{admin}/metrics") as r:
            return await r.text()


def read_lines(proc: subprocess.Popen, n: int, timeout: float = 15.0) -> list[bytes]:
    """n lines of the process's stdout (readline blocks: run in a thread, bounded by timeout)."""
    lines: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(lines) < n and time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            break
        lines.append(line)
    return lines


async def test_stdout_is_the_default_and_json_lines_come_one_per_request(tmp_path):
    async with served(ok) as port:
        fleet = write_fleet(tmp_path / "fleet", port)
        http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin,
                      "--access-log-format", "json", "--drain-delay", "0", "--log-level", "warning"])
        try:
            await wait_ready(admin, proc)
            async with aiohttp.ClientSession() as s:
                for host in ("web.example.com", "nope.example", "web.example.com"):
                    async with s.get(f"http://{http}/p", headers={"Host": host}) as r:
                        await r.read()
            lines = await asyncio.to_thread(read_lines, proc, 3)
        finally:
            proc.terminate()
            proc.wait(15)
    entries = [json.loads(line) for line in lines]
    assert [(e["status"], e["ingress"], e["cluster"]) for e in entries] == [
        (200, "demo/web", "a"), (404, "", ""), (200, "demo/web", "a")]
    assert all(e["path"] == "/p" and e["remote_addr"] == "127.0.0.1" for e in entries)


async def test_a_closed_stdout_pipe_fails_no_request_and_the_lost_lines_are_counted(tmp_path):
    async with served(ok) as port:
        fleet = write_fleet(tmp_path / "fleet", port)
        http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin,
                      "--drain-delay", "0", "--log-level", "warning"])
        try:
            await wait_ready(admin, proc)
            proc.stdout.close()  # type: ignore[union-attr]  # the log's reader is gone: writes fail with EPIPE
            async with aiohttp.ClientSession() as s:
                for i in range(25):
                    async with s.get(f"http://{http}/{i}", headers={"Host": "web.example.com"}) as r:
                        assert (r.status, await r.text()) == (200, "ok")
            deadline = time.monotonic() + 10
            while True:
                text = await scrape(admin)
                m = re.search(r"^fleetgate_access_log_errors_total (\S+)$", text, re.M)
                if (m and float(m.group(1)) >= 25) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert m and float(m.group(1)) == 25, text[-2000:]
            assert proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(15)
        err = proc.stderr.read().decode()  # type: ignore[union-attr]
        assert err.count("access log - : cannot write") + err.count("access log -: cannot write") == 1, err


def test_an_access_log_file_that_cannot_be_opened_stops_the_start_with_one_line(tmp_path):
    fleet = write_fleet(tmp_path / "fleet", free_port())
    proc = start(["gateway", "--fleet", str(fleet), "--http", f"127.0.0.1:{free_port()}",
                  "--admin", f"127.0.0.1:{free_port()}", "--access-log", "/proc/fleetgate/access.log"])
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    assert "fleetgate: cannot open the access log /proc/fleetgate/access.log:" in err.decode()
    assert "Traceback" not in err.decode()
