"""What is in a worktree, to find the files a run wrote there (created, changed or deleted) by comparison: in Python,
never by asking git (whose view of a worktree the code in it can steer, see gitsafe.py) or the run itself.

Everything counts: bytecode caches, dot files, the `.git` pointer file, symbolic links (seen, never followed). A
file or link is known by (mode, inode, size, mtime, ctime) from lstat, without reading it: the kernel sets ctime to
the current time on every change of content or metadata, and no system call sets it back (os.utime sets mtime, and
changes ctime doing so), so a change cannot hide behind a restored mtime, and a new file behind a reused inode.
A folder counts by its entries only: its own times change whenever another check briefly adds and removes a file in
it.
"""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

_FOLDER = (stat.S_IFDIR,)
_UNREADABLE = (stat.S_IFDIR, "unreadable")  # a folder whose entries cannot be listed: made so by the code


@dataclass(frozen=True)
class Snapshot:
    root: Path
    entries: dict[str, tuple]  # repository-relative path -> what lstat said (_FOLDER for a folder)
    kept: dict[str, bytes] = field(default_factory=dict)  # content of the regular files asked to be kept

    def changes(self, later: Snapshot) -> set[str]:
        """Paths created, changed or deleted between this snapshot and `later`, of the same folder."""
        return {path for path in self.entries.keys() | later.entries.keys()
                if self.entries.get(path) != later.entries.get(path)}

    def unchanged(self, path: str) -> bool:
        """Whether `path` is still the very file this snapshot saw (not a new one at its name, nor one reached
        through a link)."""
        try:
            return _identity(os.lstat(self.root / path)) == self.entries.get(path)
        except OSError:
            return False

    def restore(self, paths: Iterable[str]) -> None:
        """Put `paths` back as they were at this snapshot: what did not exist is deleted (a folder with all it
        holds), a kept file gets its content back, a folder is made again. A path whose folder is no longer a
        folder (a link the code made, which could lead out of the worktree) is left alone."""
        for path in sorted(paths, key=lambda p: p.count("/"), reverse=True):  # a folder's entries first
            target, was = self.root / path, self.entries.get(path)
            if not _in_folders(self.root, path):
                continue
            if was is None:
                _delete(target)
            elif was == _FOLDER:
                if not target.is_dir() or target.is_symlink():
                    _delete(target)
                    target.mkdir(parents=True)
            elif path in self.kept:
                _delete(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.kept[path])
                os.chmod(target, stat.S_IMODE(was[0]))


def _identity(st: os.stat_result) -> tuple:
    return _FOLDER if stat.S_ISDIR(st.st_mode) else (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _in_folders(root: Path, path: str) -> bool:
    """Whether every folder on the way from `root` to `path` is a real folder (lstat: no link)."""
    folder = root
    for part in path.split("/")[:-1]:
        folder = folder / part
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                return False
        except FileNotFoundError:
            return True  # nothing there to follow: what restore() makes below it is made in the worktree
    return True


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


def snapshot(root: Path, keep: Iterable[str] = ()) -> Snapshot:
    """Every path under `root` with its lstat identity; the content of the regular files among `keep` is kept, so
    that restore() can put them back."""
    root, entries = Path(root), {}

    def scan(folder: str, prefix: str) -> None:
        try:
            with os.scandir(folder) as listing:
                found = list(listing)
        except OSError:
            entries[prefix.rstrip("/")] = _UNREADABLE
            return
        for entry in found:
            path = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # deleted while we looked
                continue
            entries[path] = _identity(st)
            if entries[path] == _FOLDER:
                scan(entry.path, path + "/")

    scan(str(root), "")
    kept = {path: (root / path).read_bytes() for path in keep if stat.S_ISREG(entries.get(path, _FOLDER)[0])}
    return Snapshot(root, entries, kept)
