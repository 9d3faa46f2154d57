"""The image's packaging without a container engine: the Dockerfile's steps run here.

The build context is this tree filtered by .dockerignore; the build stage's wheel step
(`pip wheel . --no-deps`) makes fleetgate's wheel with the compiled codecs; then the final
stage's RUN steps run in a fresh virtual environment (its `pip install` from that wheel,
the dependencies from the configured index instead of the build stage's wheel folder, and
its import check of the compiled modules), and `fleetgate --version` answers from there,
outside the source tree. Docker itself is not needed; where it is installed,
`docker build -t fleetgate-test . && docker run --rm fleetgate-test --version` is the same check.

Slow by nature (a C compile of three modules and a venv install: ~55 s on an idle 2-core
machine), hence its own timeout; it runs in CI like every other test.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuation
    lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.splitlines()
                                             if not line.lstrip().startswith("#")))
    out: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            out.append([])
        if out:
            out[-1].append((word.upper(), " ".join(rest.split())))
    return out


def ignored(rel: str, patterns: list[str]) -> bool:
    """.dockerignore matching, enough for ours: a pattern matches the path or one of its
    parent folders; `**/` matches at any depth."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatchcase(p, tail) for p in parts):
                return True
        elif any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            return True
    return False


def build_context(dest: Path) -> list[str]:
    """Copy the tree as `docker build .` would send it; returns the relative paths copied."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = []
    for folder, dirs, files in os.walk(ROOT):
        rel_folder = os.path.relpath(folder, ROOT)
        rel_folder = "" if rel_folder == "." else rel_folder + "/"
        dirs[:] = [d for d in dirs if not ignored(rel_folder + d, patterns)]
        for name in files:
            rel = rel_folder + name
            if not ignored(rel, patterns):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, dest / rel)
                copied.append(rel)
    return copied


def test_dockerfile_shape_and_context():
    build, final = stages((ROOT / "Dockerfile").read_text())[-2:]
    assert build[0][1].endswith("AS build") and "-slim" in final[0][1]
    final_text = " ".join(args for _, args in final)
    for compiler in ("gcc", "build-essential", "clang", "cython"):
        assert compiler not in final_text.lower(), f"{compiler} in the final stage"
    user = [args for word, args in final if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert ("ENTRYPOINT", '["fleetgate"]') in final
    # the manifests run that user and name the image
    for component in ("gateway", "dns", "controller"):
        deployment = (ROOT / "manifests" / "base" / component / "deployment.yaml").read_text()
        assert "image: ghcr.io/fleetgate/fleetgate:" in deployment
        assert f"runAsUser: {user[-1].split(':')[0]}" in deployment


def test_context_holds_the_sources_and_nothing_built_or_private(tmp_path):
    copied = build_context(tmp_path)
    assert {"pyproject.toml", "setup.py", "README.md", "gateway/codec/_http1.pyx", "fleetgate/cli.py"} <= set(copied)
    assert not [p for p in copied if p.startswith((".git/", "tests/", "build/")) or p.endswith((".so", ".pyc"))]


@pytest.mark.timeout(420)  # a C compile and a venv install; see the module docstring
def test_the_final_stage_installs_the_wheel_and_fleetgate_version_answers(tmp_path):
    context, wheels, venv = tmp_path / "context", tmp_path / "wheels", tmp_path / "venv"
    context.mkdir()
    build_context(context)
    build, final = stages((ROOT / "Dockerfile").read_text())[-2:]
    assert any("pip wheel" in args and "--no-deps" in args for word, args in build if word == "RUN")
    # the build stage's wheel step; without build isolation when this venv can build (faster)
    try:
        import Cython  # noqa: F401
        import wheel  # noqa: F401
        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "-w", str(wheels), "--no-deps", "-q", *isolation],
                   cwd=context, check=True, timeout=300, capture_output=True)
    built = [p.name for p in wheels.glob("fleetgate-*.whl")]
    assert len(built) == 1 and "linux" in built[0], built  # a platform wheel: the codecs compiled

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    ran = 0
    for word, args in final:
        if word != "RUN" or args.startswith("useradd"):
            continue  # useradd needs root; USER is checked above
        command = re.sub(r"--mount=\S+\s*", "", args)
        if "pip install" in command:
            # the dependencies come from the configured index, not the build stage's folder
            command = command.replace("--no-index", "").replace("--find-links=/wheels", f"--find-links={wheels}")
            command = command.replace("pip install", "python -m pip install -q", 1)
        subprocess.run(["sh", "-c", command], cwd=tmp_path, env=env, check=True, timeout=300, capture_output=True)
        ran += 1
    assert ran >= 2
    version = subprocess.run([str(venv / "bin" / "fleetgate"), "--version"], cwd=tmp_path, env=env,
                             capture_output=True, timeout=60, text=True)
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version.returncode == 0 and version.stdout.startswith(f"fleetgate {expected}\n"), version
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import gateway; print(gateway.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, timeout=60, text=True).stdout
    assert where.startswith(str(venv)), where  # the installed wheel, not this tree
