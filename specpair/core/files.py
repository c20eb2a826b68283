"""Files that several processes update (the cost cache, a persisted suffix tree): an exclusive
lock beside the file for read-modify-write, and an atomic replace so a reader sees the old
file or the new one, never half of either. Written here because the standard library has
both pieces (fcntl.flock, os.replace) but no helper joining them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`.lock (POSIX; elsewhere the atomic replace alone)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def writable(path: Path) -> str | None:
    """Why `path` cannot be created or replaced, or None when it can: the nearest folder that
    exists must be a folder this process may write (a file in the way, or a read-only folder,
    would fail only at the first write, after the work it was to keep)."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None

