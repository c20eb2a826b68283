"""Drafters propose the next k tokens; the target verifies them.

One protocol: `propose(context, k) -> Draft`. A model drafter returns its distributions `q` (needed
for exact rejection sampling); a drafter without probabilities (n-gram lookup) returns `q=None`
and is verified as if `q` were one-hot on its tokens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .backends import Backend, sync
from .errors import SpecpairError
from .sampling import SamplingConfig, make_transform, sample, softmax


@dataclass(frozen=True)
class Draft:
    tokens: list[int]
    q: np.ndarray | None = None  # [len(tokens), V]: the draft's distribution at each token
    # what kind of proposal this is, for drafters whose acceptance depends on it (the n-gram
    # lookup: how long the match was); the adaptive chooser learns acceptance per kind
    kind: str = ""


def restricted(draft: Draft, q: np.ndarray) -> Draft:
    """`draft` with `q` replaced by the given rows (the draft's distribution cut down to the ids a
    target can take), renormalised row by row.

    Why this is exact: the drafter sampled each token from its full distribution and stops
    proposing when it draws an id the target lacks. Given that it did propose at a position, the
    token is distributed as q restricted to the ids the target has, renormalised; rejection
    sampling with that q keeps the target's distribution. A row with no mass left cannot have
    produced its token (only rounding gets there): the draft is cut before it.
    """
    mass = q.sum(axis=1)
    n = len(draft.tokens)
    for i in range(n):
        if not mass[i] > 0:
            n = i
            break
    rows = q[:n] / mass[:n, None]
    return Draft(draft.tokens[:n], rows.astype(q.dtype, copy=False))


class Drafter(Protocol):
    name: str

    def propose(self, context: Sequence[int], k: int) -> Draft:
        """Up to k tokens likely to follow `context` (all tokens so far, prompt included)."""
        ...

    def close(self) -> None: ...


# Stop drafting when the draft's top probability falls below this (CLI default). Measured on the
# story suite, K = 4, 0.5B -> 1.5B: 0 gave 0.46x plain, 0.4 gave 0.60x, 0.7 gave 0.62x
# (docs/MEASUREMENTS.md); llama.cpp's own default is of the same order.
DEFAULT_DRAFT_P_MIN = 0.7


class ModelDrafter:
    """A (small) language model whose tokenizer lines up with the target's."""

    def __init__(
        self, backend: Backend, *, sampling: SamplingConfig, rng: np.random.Generator,
        p_min: float = 0.0,
    ) -> None:
        if not 0 <= p_min < 1:
            raise SpecpairError(f"--draft-p-min must be in [0, 1) (0 = off), got {p_min}")
        self.backend = backend
        self.name = backend.name
        self.p_min = p_min
        self._transform = None if sampling.greedy else make_transform(sampling)
        self._rng = rng
        self.sync_seconds = 0.0  # the last propose's catch-up evaluation of the context

    def propose(self, context: Sequence[int], k: int) -> Draft:
        # The cache keeps what it shares with `context` (usually everything but the tokens the
        # target rejected or added last round); only the difference is evaluated. That catch-up
        # can be long after rounds without this drafter: its time is kept apart (sync_seconds),
        # so that a cost per drafted token is not inflated by it.
        t0 = time.perf_counter()
        logits = sync(self.backend, context)[0]
        self.sync_seconds = time.perf_counter() - t0
        tokens: list[int] = []
        qs: list[np.ndarray] = []
        for i in range(k):
            if self.p_min and float(softmax(logits).max()) < self.p_min:
                break  # the draft is unsure: a guess here is likely rejected, stop drafting
            if self._transform is None:
                token = int(np.argmax(logits))
            else:
                q = self._transform(logits)
                token = sample(q, self._rng)
                qs.append(q)
            tokens.append(token)
            if i < k - 1:  # the last draft token's logits are never needed
                logits = self.backend.eval([token])[0]
        return Draft(tokens, np.stack(qs) if qs else None)

    def close(self) -> None:
        self.backend.close()


class RemappedDrafter:
    """A drafter whose tokenizer has the target's token strings under other ids (`specpair check`
    says "remappable"): contexts go in translated to draft ids, proposals come out in target ids.

    Target tokens the draft lacks (special tokens only, for a remappable pair) reach the draft as
    id 0: its guesses after them get worse, never the output.
    """

    def __init__(self, inner: Drafter, draft_to_target: dict[int, int]) -> None:
        self.inner = inner
        self.name = inner.name
        self._to_target = draft_to_target
        self._from_target = {t: d for d, t in draft_to_target.items()}
        self._width = max(draft_to_target.values(), default=-1) + 1

    def propose(self, context: Sequence[int], k: int) -> Draft:
        draft = self.inner.propose([self._from_target.get(t, 0) for t in context], k)
        tokens: list[int] = []
        for d in draft.tokens:  # stop at a token the target has no id for
            if d not in self._to_target:
                break
            tokens.append(self._to_target[d])
        if draft.q is None:
            return Draft(tokens)
        # q in target ids: the mass of draft ids the target lacks is dropped and the rest
        # renormalised (see `restricted`), else sampled verification would not be exact
        q = np.zeros((len(tokens), self._width), dtype=draft.q.dtype)
        ids = np.fromiter(self._to_target.keys(), dtype=np.int64)
        ids = ids[ids < draft.q.shape[1]]
        targets = np.array([self._to_target[int(d)] for d in ids], dtype=np.int64)
        q[:, targets] = draft.q[: len(tokens), ids]
        return restricted(Draft(tokens), q)

    def close(self) -> None:
        self.inner.close()


class SystemPromptDrafter:
    """A drafter that sees its own prompt (the conversation with a system message of its own,
    "Answer like a pirate.") in place of the target's: the draft leans the way a fine-tuned
    draft would, while the target sees the user's conversation unchanged. Exact verification
    keeps the target's output whatever the draft leans to; lossy rules let it steer
    (`specpair steer` measures how much)."""

    def __init__(self, inner: Drafter, *, target_prompt_len: int,
                 draft_prompt: Sequence[int]) -> None:
        self.inner = inner
        self.name = f"{inner.name} (own system prompt)"
        self._n = target_prompt_len
        self._prompt = list(draft_prompt)

    def propose(self, context: Sequence[int], k: int) -> Draft:
        return self.inner.propose([*self._prompt, *context[self._n:]], k)

    def close(self) -> None:
        self.inner.close()


DEFAULT_NGRAM_MIN = 2
DEFAULT_NGRAM_MAX = 8  # edit suite: acceptance 0.85 -> 0.90 at K=4 against 4 (MEASUREMENTS.md)


class NgramDrafter:
    """Prompt lookup: find the longest recent n-gram that ends the context earlier in the context
    (prompt and generated text alike) and propose what followed it there. No model, near-zero
    cost; it shines when the output repeats the input (editing code, quoting, summaries).

    Proposals carry no probabilities (`q=None`): greedy verification checks them by match, and
    sampled verification treats q as one-hot, which keeps sampling exact.
    """

    name = "ngram"

    def __init__(self, *, n_min: int = DEFAULT_NGRAM_MIN, n_max: int = DEFAULT_NGRAM_MAX) -> None:
        if not 1 <= n_min <= n_max:
            raise SpecpairError(f"n-gram sizes must satisfy 1 <= min <= max, got {n_min}..{n_max}")
        self.n_min, self.n_max = n_min, n_max

    def propose(self, context: Sequence[int], k: int) -> Draft:
        tokens = np.asarray(context, dtype=np.int64)
        for n in range(min(self.n_max, len(tokens) - 1), self.n_min - 1, -1):
            pattern = tokens[-n:]
            # every earlier window of n tokens that is followed by at least one token
            windows = np.lib.stride_tricks.sliding_window_view(tokens[:-1], n)
            hits = np.flatnonzero((windows == pattern).all(axis=1))
            if hits.size:
                # the most recent match that is followed by k tokens; else the most recent one
                full = hits[hits + n + k <= len(tokens)]
                start = int(full[-1] if full.size else hits[-1]) + n
                # a long match predicts far better than a 2-token one (which random text
                # produces by chance): the kind says which
                return Draft(tokens[start : start + k].tolist(), kind=f"match {min(n, 4)}")
        return Draft([])

    def close(self) -> None:
        pass
