"""FileSource: one cluster's objects from a watched folder of manifests.

Watching is a stat poll (every 250 ms by default), not inotify/watchfiles, because a poll
is the one mechanism that is right for every way a folder changes in practice: editors
that write in place or rename over, Kubernetes ConfigMap mounts (an atomic swap of the
hidden `..data` symlink, invisible to a watch on the visible names), the whole folder
being deleted and recreated (an inotify watch dies with it), network filesystems, and it
needs no inotify instances (a shared, limited resource). Stat-ing tens of files four
times a second costs nothing measurable; a change is applied within ~poll interval, well
inside the 1 s the contract promises. To not miss two same-size writes within one
filesystem timestamp tick, a file whose mtime is close to when we read it is re-read (and
compared by digest) until it has been quiet for a while (git's "racy clean" rule).

Semantics are per-file last good: a file that changes and parses cleanly replaces that
file's objects; a file with any error keeps its previous objects (none on a first load)
and reports its diagnostics; a deleted file's objects go.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from .manifests import has_errors, is_manifest_path, merge_files, parse_file
from .metrics import CONFIG_RELOADS
from .objects import KubeObject
from .snapshot import EMPTY_CLUSTER, ClusterObjects, Diagnostic
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.25
RACY_NS = 2_000_000_000  # re-check content of files modified less than this before we read them


@dataclass
class _FileEntry:
    signature: tuple[int, ...]
    digest: bytes
    read_ns: int
    good: tuple[KubeObject, ...]
    diagnostics: tuple[Diagnostic, ...]


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file's reload: result is `success`, `error` (last good kept) or `deleted`."""
    path: str
    result: str
    objects: int
    diagnostics: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True, slots=True)
class ScanResult:
    changes: tuple[FileChange, ...] = ()
    changed: bool = False  # objects or diagnostics differ from before the scan
    new_diagnostics: tuple[Diagnostic, ...] = ()  # folder and duplicate ones not reported before


def _raise_unless_gone(exc: OSError) -> None:
    """A subfolder removed mid-walk just has no files; any other error (permissions) makes
    the listing unreliable, so the scan keeps the last good objects instead."""
    if not isinstance(exc, FileNotFoundError):
        raise exc


@dataclass
class FolderState:
    """The per-file state of one folder; `scan()` reads what changed (blocking I/O, so the
    FileSource runs it in a thread). Also used directly by `load_fleet_once`."""
    folder: Path
    objects: ClusterObjects = EMPTY_CLUSTER
    diagnostics: tuple[Diagnostic, ...] = ()
    reachable: bool = True
    loaded: bool = False
    _entries: dict[str, _FileEntry] = field(default_factory=dict, init=False, repr=False)
    _folder_diags: tuple[Diagnostic, ...] = field(default=(), init=False, repr=False)

    def _list(self) -> dict[str, Path]:
        """Manifest files under the folder by display path, following visible symlinks."""
        found: dict[str, Path] = {}
        seen_dirs: set[str] = set()
        for root, dirs, files in os.walk(self.folder, followlinks=True, onerror=_raise_unless_gone):
            real = os.path.realpath(root)
            if real in seen_dirs:  # a symlink loop
                dirs[:] = []
                continue
            seen_dirs.add(real)
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                full = Path(root, name)
                if is_manifest_path(PurePosixPath(full.relative_to(self.folder).as_posix())):
                    found[str(full)] = full
        return found

    def scan(self) -> ScanResult:
        if not self.folder.is_dir():
            diag = Diagnostic(str(self.folder), "folder",
                              "not found; the last good objects stay in force")
            return self._finish([], False, reachable=False, folder_diags=(diag,))
        try:
            files = self._list()
        except OSError as exc:
            diag = Diagnostic(str(self.folder), "folder", f"cannot list: {exc}")
            return self._finish([], False, reachable=False, folder_diags=(diag,))
        changes: list[FileChange] = []
        objects_changed = False
        for path in sorted(set(self._entries) - set(files)):
            gone = self._entries.pop(path)
            objects_changed |= bool(gone.good)
            changes.append(FileChange(path, "deleted", len(gone.good)))
        for path, full in sorted(files.items()):
            change, moved = self._check(path, full)
            if change is not None:
                changes.append(change)
                objects_changed |= moved
        return self._finish(changes, objects_changed, reachable=True, folder_diags=())

    def _check(self, path: str, full: Path) -> tuple[FileChange | None, bool]:
        """Re-read one file if it may have changed; (its change, whether its objects moved)."""
        entry = self._entries.get(path)
        try:
            st = os.stat(full)
            signature: tuple[int, ...] = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev, st.st_ctime_ns)
            if (entry is not None and entry.signature == signature
                    and entry.read_ns - st.st_mtime_ns >= RACY_NS):
                return None, False
            now = time.time_ns()
            data = full.read_bytes()
        except FileNotFoundError:  # vanished since listing, or a dangling symlink: gone
            if entry is None:
                return None, False
            del self._entries[path]
            return FileChange(path, "deleted", len(entry.good)), bool(entry.good)
        except OSError as exc:
            error = Diagnostic(path, "file", f"cannot read: {exc.strerror or exc}")
            if entry is not None and entry.diagnostics == (error,):
                return None, False  # still unreadable: reported already
            return self._apply(path, entry, (), b"", time.time_ns(), [], [error])
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if entry is not None and digest == entry.digest:  # touched, or rewritten the same
            entry.signature, entry.read_ns = signature, now
            return None, False
        try:
            objects, diags = parse_file(path, data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            objects, diags = [], [Diagnostic(path, "file", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]
        return self._apply(path, entry, signature, digest, now, objects, diags)

    def _apply(self, path: str, entry: _FileEntry | None, signature: tuple[int, ...], digest: bytes,
               now: int, objects: list[KubeObject], diags: list[Diagnostic]) -> tuple[FileChange, bool]:
        """Per-file last good: errors keep the previous objects, a clean parse replaces them."""
        previous = entry.good if entry is not None else ()
        if has_errors(diags):
            good, result = previous, "error"
        else:
            good, result = tuple(objects), "success"
            if good == previous:
                good = previous  # same objects (a comment or formatting change): keep identity
        self._entries[path] = _FileEntry(signature, digest, now, good, tuple(diags))
        return FileChange(path, result, len(good), tuple(diags)), good is not previous

    def _finish(self, changes: list[FileChange], objects_changed: bool, *, reachable: bool,
                folder_diags: tuple[Diagnostic, ...]) -> ScanResult:
        previous_folder_diags = self._folder_diags
        self.reachable, self._folder_diags = reachable, folder_diags
        if reachable:
            self.loaded = True
        if not changes and folder_diags == previous_folder_diags:
            return ScanResult()
        merged, origins, duplicates = merge_files({p: e.good for p, e in self._entries.items()})
        if objects_changed:
            self.objects = ClusterObjects.build(merged, origins=origins, source=str(self.folder))
        file_diags = tuple(d for p in sorted(self._entries) for d in self._entries[p].diagnostics)
        diagnostics = folder_diags + file_diags + tuple(duplicates)
        new = tuple(d for d in folder_diags + tuple(duplicates) if d not in self.diagnostics)
        changed = objects_changed or diagnostics != self.diagnostics
        self.diagnostics = diagnostics
        return ScanResult(tuple(changes), changed, new)


class FileSource:
    """A Source over a folder of manifests (see the module docstring for why it polls)."""

    def __init__(self, name: str, folder: Path, *, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        self.name = name
        self.folder = Path(folder)
        self.poll_interval = poll_interval
        self._state = FolderState(self.folder)
        self._objects: ClusterObjects = EMPTY_CLUSTER
        self._diagnostics: tuple[Diagnostic, ...] = ()
        self._loaded = False
        self._reachable = True
        self._task: asyncio.Task[None] | None = None
        self._on_change: Callable[[], None] | None = None
        self.scan_count = 0  # completed scans; lets tests wait for "the poll has looked"

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def reachable(self) -> bool:
        return self._reachable

    @property
    def objects(self) -> ClusterObjects:
        return self._objects

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return self._diagnostics

    async def start(self, on_change: Callable[[], None]) -> None:
        """Read the folder once (returns after), then poll it in a background task."""
        if self._task is not None:
            raise RuntimeError(f"FileSource {self.name} already started")
        self._on_change = on_change
        await self._scan()
        self._task = asyncio.get_running_loop().create_task(self._follow(), name=f"fleet-files:{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                changed = await self._scan()
            except Exception:  # a bug or odd filesystem state must not end the watch
                log.exception("source %s: scanning %s failed", self.name, self.folder)
                continue
            if changed and self._on_change is not None:
                try:
                    self._on_change()
                except Exception:
                    log.exception("source %s: change callback failed", self.name)

    async def _scan(self) -> bool:
        state = self._state
        result = await asyncio.to_thread(state.scan)
        self.scan_count += 1
        if state.reachable != self._reachable:
            if state.reachable:
                log.info("source %s: folder %s is back", self.name, self.folder)
            else:
                log.warning("source %s: folder %s is missing or unreadable; keeping the last good objects",
                            self.name, self.folder)
        self._objects, self._diagnostics = state.objects, state.diagnostics
        self._loaded, self._reachable = state.loaded, state.reachable
        for change in result.changes:
            self._report(change)
        for diag in result.new_diagnostics:
            log.warning("source %s: %s", self.name, diag)
        return result.changed

    def _report(self, change: FileChange) -> None:
        if change.result == "deleted":
            log.info("source %s: %s deleted: %d objects removed", self.name, change.path, change.objects)
        elif change.result == "success":
            log.info("source %s: reloaded %s: %d objects", self.name, change.path, change.objects)
        else:
            log.warning("source %s: reloading %s failed (%d problems); its last good objects (%d) stay",
                        self.name, change.path, sum(d.severity == "error" for d in change.diagnostics),
                        change.objects)
        for diag in change.diagnostics:
            log.warning("source %s: %s", self.name, diag)
        CONFIG_RELOADS.labels(source=self.name, result="error" if change.result == "error" else "success").inc()
