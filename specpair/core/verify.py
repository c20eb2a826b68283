"""Verification of a draft against the target: pure functions over numpy arrays (the reference
the torch versions in core/torch_ops.py are tested against).

Names follow the papers (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
Decoding"; Chen et al. 2023, "Accelerating LLM Decoding with Speculative Sampling"):
``p`` is the target's distribution, ``q`` the draft's, ``k`` the number of draft tokens.

Both functions see k+1 target rows: row i is the target's distribution for the position of draft
token i (row k is the "bonus" position after the last draft token). Both return
``(n_accepted, next_token)``: the first n_accepted draft tokens are kept, then next_token, which is
the target's own choice at the first rejected position, or the bonus token when all k are accepted.
Every step therefore yields n_accepted + 1 tokens, and never fewer than plain decoding.

Randomness comes in as uniforms, two per position (`u[i]` for the position of draft token i), so
the functions are pure: the decode loop draws position j's uniforms from the seed and j alone
(core/decode.py), which is what makes `seed` mean "same output" for drafts without q.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .sampling import Dist, dense, sample


class Rows(Protocol):
    """Target distributions by row: an array [k+1, V], or rows computed when read (LazyRows,
    whose rows may be sparse)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Dist: ...


def uniforms(u: np.ndarray | np.random.Generator, k: int) -> np.ndarray:
    """[k+1, 2] uniforms: given, or drawn from a generator (tests, one-off calls)."""
    if isinstance(u, np.random.Generator):
        return u.random((k + 1, 2))
    return u


def verify_greedy(target_logits: np.ndarray, draft_tokens: Sequence[int]) -> tuple[int, int]:
    """Accept draft tokens while each equals the target's argmax at its position (rows are
    looked at only as far as the draft is accepted)."""
    k = len(draft_tokens)
    assert len(target_logits) == k + 1, "need one target row per draft token, plus the bonus"
    for i, x in enumerate(draft_tokens):
        best = int(np.argmax(target_logits[i]))
        if best != int(x):
            return i, best
    return k, int(np.argmax(target_logits[k]))


def verify_sampled(
    p: Rows,
    q: np.ndarray | None,
    draft_tokens: Sequence[int],
    u: np.ndarray | np.random.Generator,
) -> tuple[int, int]:
    """Exact verification: the returned tokens are distributed exactly as sampling from ``p``.

    With q (a model draft): rejection sampling. Accept draft token x at position i with
    probability min(1, p_i(x) / q_i(x)); on the first rejection draw from the residual
    norm(max(0, p_i - q_i)); if all are accepted draw the bonus token from p_k.

    Without q (a lookup or a text-level draft: deterministic proposals): draw the target's own
    token at each position by inverse CDF with that position's uniform, and accept the draft
    while it agrees. That is the same as rejection sampling with q one-hot on the draft token
    (accepted with probability p_i(x); on rejection, distributed as p_i without x), and it makes
    the output independent of what was drafted: the same uniforms give the same tokens as
    plain sampling.
    """
    k = len(draft_tokens)
    assert len(p) == k + 1, "need one target row per draft token, plus the bonus"
    u = uniforms(u, k)
    for i, x in enumerate(draft_tokens):
        row = p[i]
        if q is None:
            y = sample(row, float(u[i, 0]))
            if y == int(x):
                continue
            return i, y
        q_x = float(q[i, x])
        # u < p/q without dividing: q_x may be 0 only if the draft could not have proposed x.
        if u[i, 0] * q_x < float(row[x]):
            continue
        row = dense(row)
        residual = np.maximum(row - q[i], 0.0)
        if residual.sum() <= 0:  # only reachable through rounding: p_i == q_i everywhere
            residual = row
        return i, sample(residual, float(u[i, 1]))
    return k, sample(p[k], float(u[k, 0]))
