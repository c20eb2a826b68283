"""Read a GGUF file's metadata (the key/value header) without touching its tensors.

The `gguf` package's GGUFReader maps every tensor and builds a numpy view per array element:
~16 s to open a 1.5B model's 150k-token vocabulary here. We need only the header, which this
parses from a memory map. A caller names the keys it needs (`only`): the others are stepped over
without being decoded (a 152k-token vocabulary and its 151k merges are 300k strings, most of a
second to decode in Python, a few milliseconds to step over), and what a decision needs from a
file is remembered per file on disk (models/facts.py).
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from ..errors import ModelError as SpecpairError
from .facts import remembered

_MAGIC = b"GGUF"
_SCALARS = {  # GGUF value type -> struct format (little-endian)
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


class _Reader:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        (n,) = _U64.unpack_from(self.buf, self.pos)
        start = self.pos + 8
        self.pos = start + n
        if self.pos > len(self.buf):
            raise EOFError
        return self.buf[start : self.pos].decode("utf-8", errors="surrogateescape")

    def skip(self, vtype: int) -> None:
        """Step over a value without decoding it."""
        if vtype == _STRING:
            (n,) = _U64.unpack_from(self.buf, self.pos)
            self.pos += 8 + n
        elif vtype == _ARRAY:
            item_type, n = self.scalar("<I"), self.scalar("<Q")
            if item_type in _SCALARS:
                self.pos += n * struct.calcsize(_SCALARS[item_type])
            elif item_type == _STRING:
                buf, pos, unpack = self.buf, self.pos, _U64.unpack_from
                for _ in range(n):
                    pos += 8 + unpack(buf, pos)[0]
                self.pos = pos
            else:
                for _ in range(n):
                    self.skip(item_type)
        elif vtype in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[vtype])
        else:
            raise ValueError(f"unknown GGUF value type {vtype}")
        if self.pos > len(self.buf):
            raise EOFError

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, n = self.scalar("<I"), self.scalar("<Q")
            if item_type in _SCALARS:  # one unpack for the whole array
                fmt = _SCALARS[item_type]
                values = list(struct.unpack_from(f"<{n}{fmt[1]}", self.buf, self.pos))
                self.pos += n * struct.calcsize(fmt)
                return values
            if item_type == _STRING:
                return [self.string() for _ in range(n)]
            return [self.value(item_type) for _ in range(n)]
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        raise ValueError(f"unknown GGUF value type {vtype}")


Keys = Collection[str] | Callable[[str], bool] | None


def read_metadata(path: str | Path, *, only: Keys = None) -> dict[str, Any]:
    """The key/value pairs of a GGUF file (with `only`, just those keys, or those it accepts:
    the others are stepped over, not decoded); a file that is not GGUF is a user error."""
    return _read(path, tensors=False, only=only)[0]


def weight_bytes_per_token(path: str | Path) -> int:
    """See _weight_bytes; worked out once per file (its path, size and modification time) and
    kept on disk (models/facts.py): auto asks at every start."""
    return remembered(path, "weight_bytes_per_token", lambda: _weight_bytes(path),
                      valid=lambda v: isinstance(v, int) and v > 0)


def _weight_bytes(path: str | Path) -> int:
    """Bytes of weights one token's forward pass reads: every tensor but the token embedding,
    which is a lookup, unless the output layer is tied to it (then the embedding is the output
    layer, read in full: Gemma 3 270M's 262k-token vocabulary is 70% of its file). On 2-core
    CPUs this predicts a token's cost to within 10% across the named models (about 60-70 us per
    MB here), where file sizes put Gemma at 0.23 of the 1.5B target instead of 0.25."""
    meta, sizes = _read(path, tensors=True, only=("general.alignment",))
    total = sum(sizes.values())
    if "output.weight" in sizes:
        total -= sizes.get("token_embd.weight", 0)
    return total


def _read(path: str | Path, *, tensors: bool, only: Keys = None
          ) -> tuple[dict[str, Any], dict[str, int]]:
    """The header (the keys in `only`, or all); with `tensors`, each tensor's size in bytes too
    (from the data offsets)."""
    wanted = (only if callable(only) else (lambda key: True) if only is None
              else frozenset(only).__contains__)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != _MAGIC:
                raise SpecpairError(f"{path} is not a GGUF file (bad magic): give a .gguf model")
            r = _Reader(buf)
            r.pos = 4
            version = r.scalar("<I")
            if version < 2:
                raise SpecpairError(f"{path} is GGUF version {version}; convert it to version 3")
            n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
            meta: dict[str, Any] = {"GGUF.version": version}
            for _ in range(n_kv):
                key = r.string()
                vtype = r.scalar("<I")
                if wanted(key):
                    meta[key] = r.value(vtype)
                else:
                    r.skip(vtype)
            if not tensors:
                return meta, {}
            offsets: dict[str, int] = {}
            for _ in range(n_tensors):
                name = r.string()
                n_dims = r.scalar("<I")
                r.pos += 8 * n_dims + 4  # the dimensions and the type
                offsets[name] = r.scalar("<Q")
            align = int(meta.get("general.alignment", 32))
            data = len(buf) - (r.pos + align - 1) // align * align
            ends = sorted(offsets.values()) + [data]
            following = dict(zip(ends, ends[1:]))
            return meta, {name: following[o] - o for name, o in offsets.items()}
    except (EOFError, ValueError, struct.error, MemoryError, OverflowError):
        raise SpecpairError(
            f"{path} is truncated or corrupt (its GGUF header cannot be read): re-download it"
        ) from None
    except OSError as e:
        raise SpecpairError(f"cannot read {path}: {e.strerror or e}") from None
