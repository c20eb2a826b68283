"""The one protocol every engine implements, and `load_backend` to open a model by spec.

A backend holds one model and its KV cache for one sequence (batch size 1). The cache holds the
tokens evaluated so far (`tokens`); `eval` appends to it and `rewind` truncates it. Everything the
decode loop knows about an engine goes through this protocol; engine imports are lazy so the core
runs (and is tested) without every engine installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import SpecpairError

DEFAULT_N_CTX = 4096


@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    n_ctx: int = DEFAULT_N_CTX
    threads: int | None = None  # None: the engine's default
    device: str = "auto"  # for engines that have devices (transformers)
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.n_ctx < 16:
            raise SpecpairError(f"--n-ctx must be >= 16, got {self.n_ctx}")
        if self.threads is not None and self.threads < 1:
            raise SpecpairError(f"--threads must be >= 1, got {self.threads}")


@runtime_checkable
class Backend(Protocol):
    name: str  # a short label for reports: the file name, say
    path: str  # where the model came from
    n_vocab: int  # rows of the logits (may exceed the tokenizer's size: padding)
    n_ctx: int  # the most tokens the cache holds
    eos_ids: frozenset[int]  # end-of-generation tokens (EOS, EOT, ...)

    @property
    def tokens(self) -> list[int]:
        """The tokens in the cache, in order (a copy)."""
        ...

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids for text; special tokens written in the text (<|im_start|>) are parsed."""
        ...

    def token_bytes(self, token: int) -> bytes:
        """The bytes one token stands for when decoded (special tokens: their text)."""
        ...

    def chat_prompt(self, messages: str | list[dict]) -> str:
        """A user message, or a whole conversation ([{"role", "content"}, ...]), rendered with
        the model's own chat template, ready for the assistant's reply."""
        ...

    def eval(self, tokens: Sequence[int], *, all_logits: bool = True) -> np.ndarray:
        """Append tokens to the cache; return float32 logits [len(tokens), n_vocab], or
        only the last row ([1, n_vocab]) with all_logits=False (prompt prefill)."""
        ...

    def rewind(self, n_past: int) -> None:
        """Truncate the cache to its first n_past tokens (0 <= n_past <= len(tokens))."""
        ...

    def close(self) -> None: ...


def as_messages(messages: str | list[dict]) -> list[dict]:
    """A bare user message as a one-message conversation."""
    return [{"role": "user", "content": messages}] if isinstance(messages, str) else messages


def check_eval(n_cached: int, n_new: int, n_ctx: int) -> None:
    """The argument checks every backend's `eval` makes before touching its engine."""
    if n_new == 0:
        raise ValueError("eval needs at least one token")
    if n_cached + n_new > n_ctx:
        raise SpecpairError(f"{n_cached + n_new} tokens do not fit the context of {n_ctx}: "
                            "raise --n-ctx or shorten the prompt")


def check_rewind(n_past: int, n_cached: int) -> None:
    if not 0 <= n_past <= n_cached:
        raise ValueError(f"cannot rewind to {n_past}: the cache holds {n_cached}")


def common_prefix(a: Sequence, b: Sequence) -> int:
    """How many leading items two sequences share (token ids, or bytes)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def sync(backend: Backend, tokens: Sequence[int]) -> np.ndarray:
    """Bring the cache to exactly `tokens` and return the logits after the last one [1, V].

    Keeps the longest common prefix already in the cache and evaluates only the rest; at least
    the last token is re-evaluated, because the cache stores keys/values, not logits.
    """
    if not tokens:
        raise SpecpairError("the prompt is empty: give at least one token of text")
    n_common = common_prefix(backend.tokens, tokens[:-1])
    backend.rewind(n_common)
    return backend.eval(tokens[n_common:], all_logits=False)


def load_backend(spec: str, config: BackendConfig) -> Backend:
    """Open a model from a spec (see `models.resolve_model`): a .gguf file or a model name runs
    on llama.cpp, a folder on transformers; `gguf:SPEC` / `hf:SPEC` choose the engine."""
    from ..models import resolve_model

    engine, path = resolve_model(spec)
    if engine == "hf":
        from .hf import HFBackend  # raises a one-line SpecpairError without the [hf] extra

        return HFBackend(path, config)
    from .llamacpp import LlamaCppBackend

    return LlamaCppBackend(path, config)
