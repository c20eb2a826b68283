"""Models by name and by spec: the named GGUF models installed from PyPI (named.py), the GGUF
header reader (gguf.py), and model specs resolved to an engine and a file (resolve.py)."""

from .named import (
    CACHE_ENV,
    DEFAULT_DRAFT,
    DEFAULT_TARGET,
    MODELS,
    NamedModel,
    assemble,
    cache_dir,
    cached_path,
    model_path,
    model_status,
    part_paths,
)
from .resolve import ENGINES, auto_drafts, resolve_model

__all__ = ["CACHE_ENV", "DEFAULT_DRAFT", "DEFAULT_TARGET", "ENGINES", "MODELS", "NamedModel",
           "assemble", "auto_drafts", "cache_dir", "cached_path", "model_path", "model_status",
           "part_paths", "resolve_model"]
