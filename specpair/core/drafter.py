"""The one protocol every drafter implements: `propose(context, k) -> Draft`, and its hooks.

It lives in the core because the decode loop is written against it; the drafters themselves are
in `specpair/drafters/`. A model drafter returns its distributions `q` (exact rejection sampling
needs them); a drafter without probabilities (n-gram or suffix lookup, text-level drafting)
returns `q=None` and is verified as if `q` were one-hot on its tokens.

The hooks are part of the protocol, with defaults, so the decode loop calls them directly (no
`getattr`), and drafters subclass `Drafter` to inherit the defaults. A drafter that wraps
another subclasses `DrafterWrapper`, which delegates every hook: a wrapper cannot silently hide
one (the bug behind `--adaptive --draft-system` never learning a cost).

Contract between the loop and a drafter, for one generation:
    begin(prompt); then propose(context, k) and observe(step) once per round, where each
    `context` extends the previous one (committed tokens only grow within a generation);
    then end(new_tokens), also when the caller stops early.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from .stats import Step

# [len(tokens), V] distributions: a numpy array, or a torch tensor on the target's device
Probs = Any


@dataclass(frozen=True)
class Draft:
    tokens: list[int]
    q: Probs | None = None  # [len(tokens), V]: the draft's distribution at each token
    # what kind of proposal this is, for drafters whose acceptance depends on it (a lookup:
    # how long the match was); the adaptive chooser learns acceptance per kind
    kind: str = ""
    # an offer (`Drafter.offer`): the drafter's expectation that token i is accepted, all
    # before it accepted too (non-increasing); whoever evaluates the round may cut the draft
    # where the batch's cost says the rest does not pay (schedule/goodput.py). None: drafted
    # whole, as asked
    reach: tuple[float, ...] | None = None

    def cut(self, k: int) -> Draft:
        """The first k tokens (and their q and reach)."""
        if k >= len(self.tokens):
            return self
        return Draft(self.tokens[:k], None if self.q is None else self.q[:k], self.kind,
                     None if self.reach is None else self.reach[:k])


class Drafter(Protocol):
    name: str
    # seconds the last `propose` spent catching the drafter up on the context (a model draft
    # evaluating the tokens committed since its last proposal); part of what drafting costs
    sync_seconds: float = 0.0
    # seconds spent translating between vocabularies so far (text-level drafts)
    translate_seconds: float = 0.0
    # its proposals go on being accepted with one probability per token, wherever they are
    # (a copy: each next token continues the copy as likely as the last): auto then learns one
    # rate for every position from every judged token, so position 40 is known as soon as
    # position 4 is, instead of after 40 tokens of text
    memoryless: bool = False

    def propose(self, context: Sequence[int], k: int) -> Draft:
        """Up to k tokens likely to follow `context` (all tokens so far, prompt included)."""
        ...

    def offer(self, context: Sequence[int], k: int) -> Draft:
        """The round's proposal when several requests share the batch: up to k tokens with
        their `reach`, for the scheduler to cut by the whole batch's goodput. A drafter that
        does not choose its own K (the default) proposes as asked, drafted whole."""
        return self.propose(context, k)

    def begin(self, prompt: Sequence[int]) -> None:
        """A generation starts after `prompt`."""

    def observe(self, step: Step) -> None:
        """A verification round finished (what it drafted, accepted and cost)."""

    def end(self, tokens: Sequence[int]) -> None:
        """The generation ended; `tokens` are its new tokens (what a lookup may learn from)."""

    def close(self) -> None:
        """Free what the drafter itself made. A model it drafts with is its loader's (the
        pair's Resolver, which keeps it for the next call): a drafter never closes it."""


class DrafterWrapper(Drafter):
    """A drafter built around another: every hook goes to `inner` unless overridden."""

    def __init__(self, inner: Drafter, *, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name

    def propose(self, context: Sequence[int], k: int) -> Draft:
        return self.inner.propose(context, k)

    def offer(self, context: Sequence[int], k: int) -> Draft:
        """Its own `propose` (which may translate the context): a wrapper whose inner drafter
        offers (auto) overrides this as it does `propose`."""
        return self.propose(context, k)

    @property  # type: ignore[override]
    def sync_seconds(self) -> float:
        return self.inner.sync_seconds

    @property  # type: ignore[override]
    def translate_seconds(self) -> float:
        return self.inner.translate_seconds

    @property  # type: ignore[override]
    def memoryless(self) -> bool:
        return self.inner.memoryless

    def begin(self, prompt: Sequence[int]) -> None:
        self.inner.begin(prompt)

    def observe(self, step: Step) -> None:
        self.inner.observe(step)

    def end(self, tokens: Sequence[int]) -> None:
        self.inner.end(tokens)

    def close(self) -> None:
        self.inner.close()


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
    return Draft(draft.tokens[:n], rows.astype(q.dtype, copy=False), draft.kind)


def fit_to_vocab(draft: Draft, n_vocab: int) -> Draft:
    """The draft as the target can verify it. Draft and target may differ in width by padding
    ids that no text produces (the pair passed the tokenizer check), but a draft can still
    propose one, and the target would fail on it (llama.cpp) or index past its logits
    (transformers): cut the draft before the first such id. q is padded or cut to the target's
    width; cutting drops mass, so it is renormalised (`restricted`)."""
    cut = next((i for i, t in enumerate(draft.tokens) if not 0 <= t < n_vocab), None)
    if cut is not None:
        draft = draft.cut(cut)
    q = draft.q
    if q is None or q.shape[-1] == n_vocab:
        return draft
    q = np.asarray(q.cpu() if hasattr(q, "cpu") else q)  # widths differ: two engines' vocabularies
    if q.shape[-1] < n_vocab:
        return replace(draft, q=fit_width(q, n_vocab))
    return restricted(draft, q[:, :n_vocab])


def fit_width(q: np.ndarray, n_vocab: int) -> np.ndarray:
    """Distributions `q` [n, V_q] at width `n_vocab`: padded with ids of probability 0, or cut
    to the first n_vocab ids and renormalised (a row with no mass left stays 0)."""
    if q.shape[-1] < n_vocab:
        return np.pad(q, ((0, 0), (0, n_vocab - q.shape[-1])))
    q = q[:, :n_vocab]
    mass = q.sum(axis=1, keepdims=True)
    return np.divide(q, mass, out=np.zeros_like(q), where=mass > 0)
