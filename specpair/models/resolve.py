"""Model specs to an engine and a path: a named model, a .gguf file, an HF folder or hub id,
with an optional `gguf:` / `hf:` prefix; and which named models auto weighs as drafts."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError
from .named import DEFAULT_DRAFT, MODELS, model_path

ENGINES = ("gguf", "hf")


def resolve_model(spec: str) -> tuple[str, str]:
    """A model spec to (engine, path or hub id).

    - a model name (`specpair models`) or a .gguf file: llama.cpp;
    - a folder (config.json, weights, tokenizer files): transformers;
    - `gguf:SPEC` or `hf:SPEC` name the engine: `hf:model.gguf` loads a GGUF file into
      transformers, `hf:org/name` a hub model already in the local HF cache.
    """
    engine, sep, rest = spec.partition(":")
    if sep and engine in ENGINES:
        spec = rest
    else:
        engine = ""
    if spec in MODELS:
        return engine or "gguf", str(model_path(spec))
    path = Path(spec).expanduser()
    if not path.exists():
        if engine == "hf" and spec.count("/") == 1 and not spec.startswith((".", "/")):
            return "hf", spec  # a hub id: transformers looks in the local cache only
        names = ", ".join(MODELS)
        raise ModelError(f"model {spec!r} not found: give a .gguf file, an HF model folder, "
                            f"or one of: {names}")
    if path.is_dir():
        if engine == "gguf":
            raise ModelError(f"gguf:{spec} is a folder: give the .gguf file")
        return "hf", str(path)
    return engine or "gguf", str(path)


def auto_drafts(target_spec: str) -> list[str]:
    """The named models `--draft auto` weighs as drafts for `target_spec`: every one smaller
    than the target, whatever its tokenizer (a cross-vocabulary draft goes through text and is
    weighed like any other, by its measured cost and acceptance). The default draft first."""
    if target_spec in MODELS:
        target_size = MODELS[target_spec].size
    else:
        try:
            target_size = os.path.getsize(resolve_model(target_spec)[1])
        except (OSError, ModelError):
            target_size = 0  # a hub id or a folder: its size is not one file's
    names = [n for n, m in MODELS.items()
             if n != target_spec and (not target_size or m.size < target_size)]
    return sorted(names, key=lambda n: n != DEFAULT_DRAFT)
