"""What a decision needs to know about a model file, worked out once per file and kept on disk.

auto decides at the start of every process whether a model draft could win, and that needs facts
about files that cost far more to work out than the decision itself: the bytes of weights a token
reads (a walk over the GGUF header, past a 152k-token vocabulary) and whether two tokenizers line
up (both vocabularies decoded and compared: seconds). They change only when the file does, so
each is kept in `files.json` in the cache directory under the file's path, size and modification
time: a file that is replaced or touched is worked out again, and the next process reads a small
JSON file instead. Writes merge under a lock and replace the file atomically (core/files.py); a
cache that cannot be read or written only costs the work again.

Written here because it is a dozen lines over the project's own cache directory and lock; the
standard `functools` caches live only as long as one process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..core.files import locked, write_atomic
from .named import cache_dir

T = TypeVar("T")
_MEMO: dict[tuple[str, str], Any] = {}  # this process's answers: the file is read once


def _version() -> str:
    from ..version import __version__  # read at each call: a test stands in another version

    return __version__


def cache_file() -> Path:
    return cache_dir() / "files.json"


def identity(path: str | os.PathLike) -> str:
    """A file as it is now: its absolute path, size and modification time."""
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def _load() -> dict:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered(path: str | os.PathLike, what: str, compute: Callable[[], T],
               *, valid: Callable[[Any], bool] = lambda v: True) -> T:
    """`compute()`'s answer about the file at `path` (`what` names the question), worked out
    once per version of the file. `valid` rejects a stored answer of the wrong shape (a cache
    edited by hand, or by an older version): it is worked out again.

    The answers come from specpair's code as well as the file (a pair's verdict is what
    `compare()` says), so each is kept under the specpair version that worked it out: an
    upgrade works every answer out again instead of trusting its predecessor's."""
    what = f"{what} (specpair {_version()})"
    key = (identity(path), what)
    if key in _MEMO:
        return _MEMO[key]
    entry = _load().get(key[0])
    if isinstance(entry, dict) and what in entry and valid(entry[what]):
        _MEMO[key] = entry[what]
        return entry[what]
    value = compute()
    _MEMO[key] = value
    _store(key[0], what, value)
    return value


def _store(file_key: str, what: str, value: Any) -> None:
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path):
            data = _load()
            prefix = file_key.rsplit("|", 2)[0] + "|"
            # an older version of the same file answers nothing any more
            data = {k: v for k, v in data.items() if not k.startswith(prefix) or k == file_key}
            entry = data.get(file_key)
            entry = entry if isinstance(entry, dict) else {}
            entry[what] = value
            data[file_key] = entry
            write_atomic(path, json.dumps(data, indent=1, sort_keys=True))
    except OSError:  # a read-only cache: the answer is worked out again next time
        pass
