"""Verification of a draft against the target: pure functions over numpy arrays.

Names follow the papers (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
Decoding"; Chen et al. 2023, "Accelerating LLM Decoding with Speculative Sampling"):
``p`` is the target's distribution, ``q`` the draft's, ``k`` the number of draft tokens.

Both functions see k+1 target rows: row i is the target's distribution for the position of draft
token i (row k is the "bonus" position after the last draft token). Both return
``(n_accepted, next_token)``: the first n_accepted draft tokens are kept, then next_token, which is
the target's own choice at the first rejected position, or the bonus token when all k are accepted.
Every step therefore yields n_accepted + 1 tokens, and never fewer than plain decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .sampling import sample


def verify_greedy(target_logits: np.ndarray, draft_tokens: Sequence[int]) -> tuple[int, int]:
    """Accept draft tokens while each equals the target's argmax at its position."""
    k = len(draft_tokens)
    assert target_logits.shape[0] == k + 1, "need one target row per draft token, plus the bonus"
    choice = np.argmax(target_logits, axis=-1)
    n = 0
    while n < k and int(choice[n]) == int(draft_tokens[n]):
        n += 1
    return n, int(choice[n])


def verify_sampled(
    p: np.ndarray,
    q: np.ndarray | None,
    draft_tokens: Sequence[int],
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Rejection sampling: the returned tokens are distributed exactly as sampling from ``p``.

    Accept draft token x at position i with probability min(1, p_i(x) / q_i(x)); on the first
    rejection draw from the residual norm(max(0, p_i - q_i)); if all are accepted draw the bonus
    token from p_k. ``q=None`` means a deterministic drafter (n-gram lookup): q_i is one-hot on the
    draft token, so acceptance is p_i(x) and the residual is p_i without x, which is the same as
    "sample from p_i and accept while it equals the draft".
    """
    k = len(draft_tokens)
    assert p.shape[0] == k + 1, "need one target row per draft token, plus the bonus"
    for i, x in enumerate(draft_tokens):
        q_x = 1.0 if q is None else float(q[i, x])
        p_x = float(p[i, x])
        # u < p/q without dividing: q_x may be 0 only if the draft could not have proposed x.
        if rng.random() * q_x < p_x:
            continue
        if q is None:
            residual = p[i].copy()
            residual[x] = 0.0
        else:
            residual = np.maximum(p[i] - q[i], 0.0)
        if residual.sum() <= 0:  # only reachable through rounding: p_i == q_i everywhere
            residual = p[i]
        return i, sample(residual, rng)
    return k, sample(p[k], rng)
