"""Run the real kubectl against a test API server, for tests that drive it as a user would."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Mapping


async def kubectl(*args: str, cache_dir: Path, kubeconfig: Path | None = None,
                  env: Mapping[str, str] | None = None, timeout: float = 20.0) -> str:
    """kubectl's stdout; AssertionError with its stderr when it fails, TimeoutError past timeout."""
    exe = shutil.which("kubectl")
    assert exe, "kubectl is not on PATH (it ships with the machine image; CI needs it too)"
    argv = [exe, *(("--kubeconfig", str(kubeconfig)) if kubeconfig else ()), "--cache-dir", str(cache_dir), *args]
    proc = await asyncio.create_subprocess_exec(*argv, env=dict(env) if env is not None else None,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return out.decode()
