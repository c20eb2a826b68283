"""LoRA adapters as llama.cpp reads them (a GGUF of `general.type` "adapter"), and which base
model an adapter was made for.

`specpair distill` writes into an adapter the draft it was trained on (file name, size and
sha256) and the target it was trained toward. llama.cpp checks only the architecture and the
tensor shapes, so an adapter trained on one 0.5B loads silently on another of the same shape
and drafts badly; here that is a one-line error before any weights load. An adapter from
elsewhere (llama.cpp's convert_lora_to_gguf.py) carries no base record and is checked for its
architecture alone.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import IncompatiblePair, ModelError
from .facts import remembered
from .gguf import read_metadata

BASE_NAME, BASE_SIZE, BASE_SHA256 = ("specpair.base.name", "specpair.base.size",
                                     "specpair.base.sha256")
TARGET_NAME, TARGET_SHA256 = "specpair.target.name", "specpair.target.sha256"


@dataclass(frozen=True)
class AdapterInfo:
    path: str
    architecture: str
    alpha: float
    base_name: str | None  # None: not made by specpair distill
    base_size: int | None
    base_sha256: str | None
    target_name: str | None
    target_sha256: str | None


def sha256_of(path: str | os.PathLike) -> str:
    """A file's sha256, worked out once per version of the file (models/facts.py)."""
    def compute() -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    return remembered(path, "sha256", compute,
                      valid=lambda v: isinstance(v, str) and len(v) == 64)


def adapter_info(path: str) -> AdapterInfo:
    if not os.path.isfile(path):
        raise ModelError(f"no LoRA adapter at {path}: give the .gguf that `specpair distill` "
                         "wrote (DIR/draft-lora.gguf)")
    meta = read_metadata(path, only=lambda k: k.startswith(("general.", "adapter.",
                                                            "specpair.")))
    if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
        raise ModelError(f"{path} is not a LoRA adapter GGUF (general.type "
                         f"{meta.get('general.type')!r}): give an adapter, not a model")
    size = meta.get(BASE_SIZE)
    return AdapterInfo(path, str(meta.get("general.architecture", "?")),
                       float(meta.get("adapter.lora.alpha", 0.0)), meta.get(BASE_NAME),
                       int(size) if size is not None else None, meta.get(BASE_SHA256),
                       meta.get(TARGET_NAME), meta.get(TARGET_SHA256))


def check_adapter(lora: str, base: str) -> AdapterInfo:
    """The adapter at `lora`, refused (IncompatiblePair) unless it was made for `base`."""
    info = adapter_info(lora)
    arch = read_metadata(base, only=("general.architecture",)).get("general.architecture")
    if arch != info.architecture:
        raise IncompatiblePair(f"{{draft_lora}} {Path(lora).name} is a LoRA for a "
                               f"{info.architecture} model, and the draft {Path(base).name} is "
                               f"{arch}: pass the draft it was trained for")
    if info.base_sha256 is not None and (
            info.base_size != os.path.getsize(base) or sha256_of(base) != info.base_sha256):
        raise IncompatiblePair(f"{{draft_lora}} {Path(lora).name} was trained on "
                               f"{info.base_name}, not on {Path(base).name}: pass the draft it "
                               "was trained for, or distill one for this draft")
    return info


__all__ = ["AdapterInfo", "adapter_info", "check_adapter", "sha256_of"]
