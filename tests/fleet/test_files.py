"""FileSource and its FolderState: per-file last good, deletions, and changes followed."""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from fleet.files import FileSource, FolderState
from fleet.provider import Source

BROKEN = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   namespace: y\n"


def names(objects) -> set[str]:
    return {f"{o.kind}/{o.meta.namespace}/{o.meta.name}" for o in objects.all()}


def reloads(source: str, result: str) -> float:
    return REGISTRY.get_sample_value("fleetgate_config_reload_total",
                                     {"source": source, "result": result}) or 0.0


class Changes:
    """on_change recorder: an Event per wait, and a count."""

    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def next(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()


# --- FolderState (synchronous scans) -------------------------------------------------

def test_first_load_skips_broken_files_and_reports_them(tmp_path: Path, write, service) -> None:
    write(tmp_path / "good.yaml", service("echo"))
    write(tmp_path / "bad.yaml", service("api") + "---\n" + BROKEN)
    state = FolderState(tmp_path)
    result = state.scan()
    assert result.changed and state.loaded and state.reachable
    assert names(state.objects) == {"Service/demo/echo"}  # none of bad.yaml, not even `api`
    assert [(d.path, d.object) for d in state.diagnostics] == [(str(tmp_path / "bad.yaml"), "line 15")]
    assert {(c.path, c.result) for c in result.changes} == {
        (str(tmp_path / "good.yaml"), "success"), (str(tmp_path / "bad.yaml"), "error")}
    assert state.objects.origin(next(iter(state.objects.services.values()))) == str(tmp_path / "good.yaml")


def test_recursive_hidden_and_other_suffixes(tmp_path: Path, write, service) -> None:
    write(tmp_path / "a.yaml", service("a"))
    write(tmp_path / "sub" / "deeper" / "b.yml", service("b"))
    write(tmp_path / "c.json", '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}')
    write(tmp_path / ".hidden.yaml", service("hidden"))
    write(tmp_path / ".git" / "d.yaml", service("git"))
    write(tmp_path / "notes.txt", service("txt"))
    write(tmp_path / "a.yaml.orig", service("orig"))
    state = FolderState(tmp_path)
    state.scan()
    assert names(state.objects) == {"Service/demo/a", "Service/demo/b", "Namespace//c"}
    assert state.diagnostics == ()


def test_configmap_mount_follows_visible_names_and_atomic_swaps(tmp_path: Path, write, service) -> None:
    write(tmp_path / "..2024_01" / "svc.yaml", service("one"))
    os.symlink("..2024_01", tmp_path / "..data")
    os.symlink("..data/svc.yaml", tmp_path / "svc.yaml")
    state = FolderState(tmp_path)
    state.scan()
    assert names(state.objects) == {"Service/demo/one"}  # read once, through the visible name
    write(tmp_path / "..2024_02" / "svc.yaml", service("two"))
    os.symlink("..2024_02", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # what kubelet's atomic writer does
    shutil.rmtree(tmp_path / "..2024_01")
    assert state.scan().changed
    assert names(state.objects) == {"Service/demo/two"}


def test_symlink_loop_is_not_followed_forever(tmp_path: Path, write, service) -> None:
    write(tmp_path / "sub" / "a.yaml", service("a"))
    os.symlink("..", tmp_path / "sub" / "up")
    state = FolderState(tmp_path)
    state.scan()
    assert names(state.objects) == {"Service/demo/a"}


def test_touch_and_comment_changes_keep_the_objects(tmp_path: Path, write, service) -> None:
    path = write(tmp_path / "a.yaml", service("a"))
    state = FolderState(tmp_path)
    state.scan()
    before = state.objects
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    assert state.scan().changed is False and state.scan().changes == ()
    write(path, "# a comment\n" + service("a"))
    result = state.scan()
    assert [c.result for c in result.changes] == ["success"]
    assert result.changed is False and state.objects is before


def test_broken_change_keeps_last_good_while_other_files_apply(tmp_path: Path, write, service) -> None:
    a = write(tmp_path / "a.yaml", service("a"))
    write(tmp_path / "b.yaml", service("b"))
    state = FolderState(tmp_path)
    state.scan()
    write(a, service("a2") + "---\n" + BROKEN)
    write(tmp_path / "b.yaml", service("b2"))
    result = state.scan()
    assert result.changed
    assert names(state.objects) == {"Service/demo/a", "Service/demo/b2"}
    assert [d.path for d in state.diagnostics] == [str(a)]
    write(a, service("a3"))
    state.scan()
    assert names(state.objects) == {"Service/demo/a3", "Service/demo/b2"}
    assert state.diagnostics == ()


def test_deleted_file_objects_go(tmp_path: Path, write, service) -> None:
    write(tmp_path / "a.yaml", service("a"))
    b = write(tmp_path / "b.yaml", service("b") + "---\n" + BROKEN)
    state = FolderState(tmp_path)
    state.scan()
    assert state.diagnostics
    (tmp_path / "a.yaml").unlink()
    b.unlink()
    result = state.scan()
    assert result.changed and len(state.objects) == 0 and state.diagnostics == ()
    assert sorted(c.result for c in result.changes) == ["deleted", "deleted"]


def test_dangling_symlink_counts_as_deleted(tmp_path: Path, write, service) -> None:
    target = write(tmp_path / ".real" / "a.yaml", service("a"))
    os.symlink(".real/a.yaml", tmp_path / "a.yaml")
    state = FolderState(tmp_path)
    state.scan()
    assert names(state.objects) == {"Service/demo/a"}
    target.unlink()
    result = state.scan()
    assert [c.result for c in result.changes] == ["deleted"] and len(state.objects) == 0


def test_duplicates_across_files_are_diagnostics(tmp_path: Path, write, service) -> None:
    write(tmp_path / "a.yaml", service("a", port=80))
    write(tmp_path / "b.yaml", service("a", port=81))
    state = FolderState(tmp_path)
    state.scan()
    assert [s.ports[0].port for s in state.objects.services.values()] == [80]
    assert [str(d) for d in state.diagnostics] == [
        f"{tmp_path / 'b.yaml'}: Service/demo/a: duplicate of the object in {tmp_path / 'a.yaml'}; "
        "this one is ignored"]


def test_missing_folder_keeps_objects_and_is_unreachable(tmp_path: Path, write, service) -> None:
    folder = tmp_path / "m"
    write(folder / "a.yaml", service("a"))
    state = FolderState(folder)
    state.scan()
    before = state.objects
    shutil.rmtree(folder)
    assert state.scan().changed
    assert state.reachable is False and state.objects is before
    assert [(d.object, d.message.split(";")[0]) for d in state.diagnostics] == [("folder", "not found")]
    assert state.scan().changed is False  # reported once
    write(folder / "a.yaml", service("a"))
    assert state.scan().changed
    assert state.reachable and state.diagnostics == ()


def test_unreadable_and_non_utf8_files_are_diagnostics(tmp_path: Path, write) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00kind")
    state = FolderState(tmp_path)
    state.scan()
    assert [(d.object, d.message.split(":")[0]) for d in state.diagnostics] == [("file", "not UTF-8 text")]


# --- FileSource (async, polling) -----------------------------------------------------

async def test_start_loads_then_follows_a_change(tmp_path: Path, write, service) -> None:
    write(tmp_path / "a.yaml", service("a"))
    source = FileSource("follow", tmp_path, poll_interval=0.02)
    assert isinstance(source, Source) and not source.loaded
    changes = Changes()
    await source.start(changes)
    try:
        assert source.loaded and source.reachable
        assert names(source.objects) == {"Service/demo/a"}
        write(tmp_path / "b.yaml", service("b"))
        await changes.next()
        assert names(source.objects) == {"Service/demo/a", "Service/demo/b"}
    finally:
        await source.stop()


async def test_broken_file_keeps_last_good_while_another_change_applies(
        tmp_path: Path, write, service, caplog) -> None:
    a = write(tmp_path / "a.yaml", service("a"))
    write(tmp_path / "b.yaml", service("b"))
    source = FileSource("lastgood", tmp_path, poll_interval=0.02)
    changes = Changes()
    ok, bad = reloads("lastgood", "success"), reloads("lastgood", "error")
    caplog.set_level(logging.INFO, logger="fleet.files")
    await source.start(changes)
    try:
        assert reloads("lastgood", "success") == ok + 2
        first = source.objects
        write(a, service("a2") + "---\n" + BROKEN)
        await changes.next()
        assert source.objects is first  # a.yaml's last good objects stay in force
        assert [d.path for d in source.diagnostics] == [str(a)]
        assert reloads("lastgood", "error") == bad + 1
        assert any(str(a) in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
        assert any(f"{a}: line 15" in r.getMessage() for r in caplog.records)
        write(tmp_path / "b.yaml", service("b2"))
        await changes.next()
        assert names(source.objects) == {"Service/demo/a", "Service/demo/b2"}
        assert source.diagnostics  # a.yaml is still broken
    finally:
        await source.stop()


async def test_deleted_file_and_replaced_folder(tmp_path: Path, write, service) -> None:
    folder = tmp_path / "live"
    write(folder / "a.yaml", service("a"))
    write(folder / "b.yaml", service("b"))
    source = FileSource("replace", folder, poll_interval=0.02)
    changes = Changes()
    await source.start(changes)
    try:
        (folder / "b.yaml").unlink()
        await changes.next()
        assert names(source.objects) == {"Service/demo/a"}
        write(tmp_path / "new" / "c.yaml", service("c"))
        os.rename(folder, tmp_path / "old")
        os.rename(tmp_path / "new", folder)
        await changes.next()
        if names(source.objects) != {"Service/demo/c"}:  # saw the moment with no folder first
            await changes.next()
        assert names(source.objects) == {"Service/demo/c"} and source.reachable
    finally:
        await source.stop()


async def test_touch_publishes_no_change(tmp_path: Path, write, service, wait_for) -> None:
    path = write(tmp_path / "a.yaml", service("a"))
    source = FileSource("touch", tmp_path, poll_interval=0.02)
    changes = Changes()
    await source.start(changes)
    try:
        before, scans = source.objects, source.scan_count
        os.utime(path)
        await wait_for(lambda: source.scan_count >= scans + 3)
        assert changes.count == 0 and source.objects is before
    finally:
        await source.stop()


async def test_stop_ends_following(tmp_path: Path, write, service) -> None:
    source = FileSource("stop", tmp_path, poll_interval=0.02)
    changes = Changes()
    await source.start(changes)
    with pytest.raises(RuntimeError):
        await source.start(changes)
    task = source._task
    await source.stop()
    assert task is not None and task.done()
    await source.stop()  # idempotent



def test_unlistable_folder_keeps_last_good(tmp_path: Path, write, service, monkeypatch) -> None:
    write(tmp_path / "sub" / "a.yaml", service("a"))
    state = FolderState(tmp_path)
    state.scan()
    real_walk = os.walk

    def walk(top, **kwargs):  # what os.walk does on a subfolder it may not read
        yield from real_walk(top, **kwargs)
        kwargs["onerror"](PermissionError(13, "Permission denied", str(tmp_path / "sub")))

    monkeypatch.setattr("fleet.files.os.walk", walk)
    assert state.scan().changed
    assert not state.reachable and names(state.objects) == {"Service/demo/a"}
    assert [d.object for d in state.diagnostics] == ["folder"]
    assert "Permission denied" in state.diagnostics[0].message
