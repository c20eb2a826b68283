"""The cost model auto and the adviser share: Leviathan et al.'s expected tokens per round over
measured costs, and the speedup it predicts.

Leviathan et al. (2023): with per-position acceptance alpha_i (the probability that draft token i
is accepted given that tokens 0..i-1 were), one verification round of K draft tokens yields on
average E(K) = 1 + sum_{j=1..K} prod_{i<j} alpha_i tokens; with a constant alpha this is their
(1 - alpha^(K+1)) / (1 - alpha). A round costs drafting K tokens plus evaluating K + 1 tokens on
the target (the pending token and the drafts), so

    speedup(K) = E(K) * t_target(1) / (t_draft(K) + t_target(K + 1)).

On a GPU t_target(K + 1) is close to t_target(1); on a 2-core CPU it is not (a batch of 5 costs
about 3 single steps), which is why the measured cost curve, not a constant, goes in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Choose speculation only when it is predicted to beat plain decoding by this margin: the
# prediction has errors of its own, and losing to plain is the failure users complain about.
MIN_PREDICTED_SPEEDUP = 1.05


@dataclass(frozen=True)
class CostModel:
    """Seconds, measured: `verify[n - 1]` for the target to evaluate n tokens in one batch;
    the drafter's cost per proposed token and per call (n-gram lookup: ~0)."""

    verify: tuple[float, ...]
    draft_per_token: float
    draft_per_call: float = 0.0

    @property
    def max_k(self) -> int:
        return len(self.verify) - 1

    def round_seconds(self, k: int) -> float:
        draft = self.draft_per_call + k * self.draft_per_token if k else 0.0
        return draft + self.verify[k]


def _survival(lengths: Sequence[float] | None, j: int) -> float:
    """P(a proposal has at least j tokens). `lengths[l]` is the share of calibration rounds
    whose proposal had l tokens (at the calibration K); None: proposals are always full, as a
    model drafter's are. Past the calibration K, a full proposal is assumed to stay full."""
    if lengths is None:
        return 1.0
    return float(sum(lengths[min(j, len(lengths) - 1):]))


def expected_tokens(alphas: Sequence[float], k: int,
                    lengths: Sequence[float] | None = None) -> float:
    """E(K) = 1 + sum_{j=1..K} P(L >= j) prod_{i<j} alpha_i, L the proposal's length (always K
    for a model drafter; an n-gram match may run out sooner). Positions past the measured ones
    reuse the mean of the measured alphas (0 when none were measured)."""
    fill = float(np.mean(alphas)) if len(alphas) else 0.0
    total, reach = 1.0, 1.0
    for i in range(k):
        reach *= alphas[i] if i < len(alphas) else fill
        total += _survival(lengths, i + 1) * reach
    return total


def expected_round_seconds(cost: CostModel, k: int,
                           lengths: Sequence[float] | None = None) -> float:
    """A round's cost, averaged over how many tokens the drafter actually proposes."""
    if lengths is None:
        return cost.round_seconds(k)
    shares = [_survival(lengths, n) - _survival(lengths, n + 1) for n in range(k)]
    shares.append(_survival(lengths, k))  # proposals of k or more tokens, cut to k
    return sum(share * cost.round_seconds(n) for n, share in enumerate(shares))


def predicted_speedup(cost: CostModel, alphas: Sequence[float], k: int,
                      lengths: Sequence[float] | None = None) -> float:
    return (expected_tokens(alphas, k, lengths) * cost.verify[0]
            / expected_round_seconds(cost, k, lengths))


def best_k(cost: CostModel, alphas: Sequence[float], *, max_k: int | None = None,
           min_speedup: float = MIN_PREDICTED_SPEEDUP,
           lengths: Sequence[float] | None = None) -> tuple[int, float]:
    """The K with the highest predicted speedup, or (0, 1.0) (plain) when none reaches
    `min_speedup`."""
    top = min(cost.max_k, max_k or cost.max_k)
    k, s = max(((k, predicted_speedup(cost, alphas, k, lengths)) for k in range(1, top + 1)),
               key=lambda ks: ks[1])
    return (k, s) if s >= min_speedup else (0, 1.0)
