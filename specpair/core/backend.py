"""The one protocol every engine implements (one model, one KV cache, one sequence), and the
multi-sequence face an engine may add (`MultiSequence`: several caches in one context, their rows
evaluated in one call), whose each sequence is again a `Backend` (`sequence`).

It lives in the core because the decode loop is written against it; the engines themselves are
in `specpair/backends/`, imported lazily so the core runs (and is tested) without any of them.

The cache is a position counter, as in gpt-fast and mlx-lm: `eval` appends at `n_past` and
`rewind(n)` moves the counter back (slots past it are overwritten later, never copied). `tokens`
is a read-only view of what the cache holds, for the one place that needs to compare contents
(`sync`, when a new prompt may share a prefix with the last one); the decode loop itself never
scans it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import ContextOverflow, SpecpairError

# Logits are a float array [n, n_vocab]: numpy on the CPU engines, a torch tensor on the device
# for the transformers engine (verification then runs there too: core/ops.py).
Logits = Any


@runtime_checkable
class Backend(Protocol):
    name: str  # a short label for reports: the file name, say
    path: str  # where the model came from
    n_vocab: int  # rows of the logits (may exceed the tokenizer's size: padding)
    n_ctx: int  # the most tokens the cache holds
    eos_ids: frozenset[int]  # end-of-generation tokens (EOS, EOT, ...)
    device: str  # where it runs, for reports and cost keys: "CPU" or the GPU's name

    @property
    def n_past(self) -> int:
        """How many tokens the cache holds."""
        ...

    @property
    def tokens(self) -> Sequence[int]:
        """The tokens in the cache, in order: a view, not a copy (do not modify it)."""
        ...

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids for text; control tokens written in the text (<|im_start|>) are parsed
        when `special`, and are plain text otherwise (a message's content: core/prompt.py)."""
        ...

    def token_bytes(self, token: int) -> bytes:
        """The bytes one token stands for when decoded (special tokens: their text)."""
        ...

    def chat_prompt(self, messages: str | list[dict]) -> str:
        """A user message, or a whole conversation ([{"role", "content"}, ...]), rendered with
        the model's own chat template, ready for the assistant's reply."""
        ...

    def eval(self, tokens: Sequence[int], *, all_logits: bool = True) -> Logits:
        """Append tokens at position n_past; return logits [len(tokens), n_vocab], or only the
        last row ([1, n_vocab]) with all_logits=False (prompt prefill)."""
        ...

    def rewind(self, n_past: int) -> None:
        """Move the cache back to its first n_past tokens (0 <= n_past <= self.n_past)."""
        ...

    def synchronize(self) -> None:
        """Wait until the device has finished the work queued so far. A GPU's kernel launches
        return before the GPU is done: the decode loop calls this before it reads the clock,
        so a round's `target_seconds` is the compute and not the launch. A no-op on the CPU
        (and wherever `eval` already returns finished results)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EvalPart:
    """One sequence's rows in a batched evaluation: `tokens` appended at that sequence's
    n_past; its logits as `Backend.eval` returns them (all rows, or the last only)."""

    seq: int
    tokens: Sequence[int]
    all_logits: bool = True


@runtime_checkable
class MultiSequence(Protocol):
    """An engine holding `n_seq` sequences in one context, each with its own cache, whose rows
    one call evaluates together (one llama_decode of every slot's rows, as llama-server does).
    Sequence 0 is the engine's own `Backend` face; `sequence(engine, i)` is the Backend of
    sequence i, so the decode loop runs on any sequence unchanged."""

    n_seq: int

    def seq_tokens(self, seq: int) -> Sequence[int]:
        """What sequence `seq`'s cache holds (a view)."""
        ...

    def eval_many(self, parts: Sequence[EvalPart]) -> list[Logits]:
        """Evaluate every part in one batch (one part per sequence at most); each part's
        logits in order. On failure no sequence keeps any of the rows."""
        ...

    def rewind_seq(self, seq: int, n_past: int) -> None:
        """Move sequence `seq`'s cache back to its first n_past tokens; the others keep theirs."""
        ...

    def copy_seq(self, src: int, dst: int, n: int) -> None:
        """Sequence `dst`'s cache becomes `src`'s first n tokens, copied (not recomputed)."""
        ...


_MULTI = frozenset({"n_seq", "seq_tokens", "eval_many", "rewind_seq", "copy_seq"})


class SequenceView:
    """Sequence `seq` of a MultiSequence engine, as a Backend: its own cache, the engine's
    model (tokenizer, template, vocabulary, device) for everything else."""

    def __init__(self, engine: Any, seq: int) -> None:
        if not 0 <= seq < engine.n_seq:
            raise ValueError(f"sequence {seq} of {engine.n_seq}")
        self.engine, self.seq = engine, seq

    def __getattr__(self, name: str) -> Any:  # name, path, n_vocab, n_ctx, tokenize, ...
        if name in _MULTI:  # a view is one sequence: the engine's others are not its own
            raise AttributeError(name)
        return getattr(self.engine, name)

    @property
    def n_past(self) -> int:
        return len(self.engine.seq_tokens(self.seq))

    @property
    def tokens(self) -> Sequence[int]:
        return self.engine.seq_tokens(self.seq)

    def eval(self, tokens: Sequence[int], *, all_logits: bool = True) -> Logits:
        return self.engine.eval_many([EvalPart(self.seq, tokens, all_logits)])[0]

    def rewind(self, n_past: int) -> None:
        self.engine.rewind_seq(self.seq, n_past)

    def close(self) -> None:
        pass  # the engine is its owner's to close


def sequence(engine: Any, seq: int) -> Backend:
    """The Backend of one sequence: the engine itself for sequence 0 of a one-sequence engine
    (or any engine without sequences), a view otherwise."""
    if seq == 0 and getattr(engine, "n_seq", 1) == 1:
        return engine
    return SequenceView(engine, seq)  # type: ignore[return-value]


def as_messages(messages: str | list[dict]) -> list[dict]:
    """A bare user message as a one-message conversation."""
    return [{"role": "user", "content": messages}] if isinstance(messages, str) else messages


def check_eval(n_cached: int, n_new: int, n_ctx: int) -> None:
    """The argument checks every backend's `eval` makes before touching its engine."""
    if n_new == 0:
        raise ValueError("eval needs at least one token")
    if n_cached + n_new > n_ctx:
        raise ContextOverflow(f"{n_cached + n_new} tokens do not fit the context of {n_ctx}: "
                              "pass a larger {n_ctx} or shorten the prompt")


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


def sync(backend: Backend, tokens: Sequence[int]) -> Logits:
    """Bring the cache to exactly `tokens` and return the logits after the last one [1, V].

    Keeps the longest common prefix already in the cache and evaluates only the rest; at least
    the last token is re-evaluated, because the cache stores keys/values, not logits. This scans
    the cache (O(n)): it is for the start of a generation, not for every round.
    """
    if not tokens:
        raise SpecpairError("the prompt is empty: give at least one token of text")
    n_common = common_prefix(backend.tokens, tokens[:-1])
    backend.rewind(n_common)
    return backend.eval(tokens[n_common:], all_logits=False)
