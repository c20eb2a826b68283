"""The adviser: predict, from measured costs and acceptance, which drafter and draft length K is
fastest on this machine, or whether plain decoding is.

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

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .backends import Backend, sync

DEFAULT_MAX_K = 16
# calibration K: an n-gram lookup is free, so it is judged as far as it reaches; a model
# drafter at 4 (drafting 16 to calibrate would cost more than the decode it calibrates)
K_CALIBRATION = {"ngram": 16}
K_CALIBRATION_MODEL = 4
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


def measure_verify_costs(target: Backend, prompt: Sequence[int], *, max_n: int = DEFAULT_MAX_K + 1,
                         repeats: int = 3) -> tuple[float, ...]:
    """Median seconds for the target to evaluate a batch of n = 1..max_n tokens after `prompt`
    (the batch contents do not change the cost; the prompt's own tokens are reused)."""
    sync(target, prompt)
    base = len(target.tokens)
    filler = [prompt[i % len(prompt)] for i in range(max_n)]
    costs = []
    for n in range(1, max_n + 1):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            target.eval(filler[:n])
            times.append(time.perf_counter() - t0)
            target.rewind(base)
        costs.append(float(np.median(times)))
    return tuple(costs)


@dataclass(frozen=True)
class Calibration:
    drafter: str
    alphas: tuple[float, ...]  # per-position acceptance measured at k_cal
    draft_per_token: float  # seconds per proposed token (0 for a drafter that proposed nothing)
    drafted: int
    accepted: int
    lengths: tuple[float, ...] | None = None  # share of rounds proposing 0..k_cal tokens


def calibrate(target: Backend, drafter, prompts: Sequence[Sequence[int]], *, k_cal: int,
              max_tokens: int, sampling) -> Calibration:
    """A short decode with the drafter at K = k_cal: per-position acceptance and draft cost."""
    from .decode import DecodeConfig, decode_steps
    from .stats import DecodeStats

    stats = DecodeStats()
    config = DecodeConfig(max_tokens=max_tokens, draft_tokens=k_cal, sampling=sampling)
    counts = np.zeros(k_cal + 1)
    for prompt in prompts:
        drafter.propose(prompt, 0)  # a model drafter evaluates the prompt now, not timed
        for step in decode_steps(target, drafter, prompt, config=config,
                                 rng=np.random.default_rng(sampling.seed or 0)):
            stats.add(step)
            if not step.finish:  # the last round may be cut short by max_tokens
                counts[min(step.n_drafted, k_cal)] += 1
    per_token = stats.draft_seconds / stats.drafted if stats.drafted else 0.0
    full = counts[k_cal] == counts.sum()
    lengths = None if full or not counts.sum() else tuple(counts / counts.sum())
    return Calibration(drafter.name, tuple(stats.alphas), per_token,
                       stats.drafted, stats.accepted, lengths)


@dataclass(frozen=True)
class Advice:
    verify: tuple[float, ...]
    calibrations: tuple[Calibration, ...]
    table: tuple[tuple[str, int, float, float], ...]  # drafter, K, tokens/s, speedup
    choice: tuple[str, int] | None  # (drafter, K), or None for plain decoding
    predicted_speedup: float
    reason: str

    def to_dict(self) -> dict:
        return {
            "verify_seconds": list(self.verify),
            "calibrations": [{"drafter": c.drafter, "alphas": list(c.alphas),
                              "draft_per_token": c.draft_per_token, "drafted": c.drafted,
                              "accepted": c.accepted,
                              "lengths": None if c.lengths is None else list(c.lengths)}
                             for c in self.calibrations],
            "table": [{"drafter": d, "k": k, "tokens_per_second": t, "speedup": s}
                      for d, k, t, s in self.table],
            "choice": None if self.choice is None else {"drafter": self.choice[0],
                                                        "k": self.choice[1]},
            "predicted_speedup": self.predicted_speedup,
            "reason": self.reason,
        }


def advise(verify: Sequence[float], calibrations: Sequence[Calibration], *,
           max_k: int = DEFAULT_MAX_K) -> Advice:
    """Predict every drafter x K; recommend the best, or plain decoding when nothing wins."""
    table = []
    best: tuple[str, int, float] | None = None
    for cal in calibrations:
        cost = CostModel(tuple(verify), cal.draft_per_token)
        for k in range(1, min(max_k, cost.max_k) + 1):
            s = predicted_speedup(cost, cal.alphas, k, cal.lengths)
            table.append((cal.drafter, k, s / verify[0], s))
            # recommend only K whose acceptance was measured: past the calibration's K the
            # alphas are extrapolated, and on the story suite that overestimated by up to 50%
            if k <= max(len(cal.alphas), 1) and (best is None or s > best[2]):
                best = (cal.drafter, k, s)
    if best is None:
        return Advice(tuple(verify), tuple(calibrations), (), None, 1.0, "no drafter to compare")
    name, k, s = best
    if s < MIN_PREDICTED_SPEEDUP:
        reason = (f"plain decoding is the fastest choice here: the best speculative option "
                  f"({name}, K={k}) is predicted at {s:.2f}x, below {MIN_PREDICTED_SPEEDUP}x")
        return Advice(tuple(verify), tuple(calibrations), tuple(table), None, 1.0, reason)
    reason = f"{name} with K={k} is predicted at {s:.2f}x plain decoding's speed"
    return Advice(tuple(verify), tuple(calibrations), tuple(table), (name, k), s, reason)
