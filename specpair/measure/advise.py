"""`specpair advise`: measure this machine (the target's verify curve, each drafter's cost per
token and acceptance by position on a short calibration decode), then predict tokens/s for
every drafter and K with the cost model auto uses (auto/costmodel.py) and recommend the fastest,
plain decoding included."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..auto.costmodel import MIN_PREDICTED_SPEEDUP, CostModel, predicted_speedup
from ..auto.costs import measure_costs
from ..core.backend import Backend

DEFAULT_MAX_K = 16
# calibration K: an n-gram lookup is free, so it is judged as far as it reaches; a model
# drafter at 4 (drafting 16 to calibrate would cost more than the decode it calibrates)
K_CALIBRATION = {"ngram": 16, "suffix": 16}
K_CALIBRATION_MODEL = 4


def measure_verify_costs(target: Backend, prompt: Sequence[int], *, max_n: int = DEFAULT_MAX_K + 1,
                         repeats: int = 3) -> tuple[float, ...]:
    """The verify curve: median seconds for batches of n = 1..max_n tokens after `prompt`."""
    costs = measure_costs(target, prompt, range(1, max_n + 1), repeats=repeats)
    return tuple(costs[n] for n in range(1, max_n + 1))


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
    """A short decode with the drafter at K = k_cal: per-position acceptance and draft cost
    (what a drafted token costs: the drafter's catch-up on the context, `sync_seconds`, the
    prompt included, is left out, as auto leaves it out)."""
    from ..core.decode import DecodeConfig
    from ..core.stats import DecodeStats
    from ..generation import stream_pieces

    stats = DecodeStats()
    config = DecodeConfig(max_tokens=max_tokens, draft_tokens=k_cal, sampling=sampling)
    counts = np.zeros(k_cal + 1)
    catch_up = 0.0
    for prompt in prompts:
        for piece in stream_pieces(target, drafter, prompt, config=config,
                                   rng=np.random.default_rng(sampling.seed or 0), stats=stats):
            step = piece.step
            if step is None:
                continue  # the round's earlier pieces; its last one carries the round
            if step.n_drafted:
                catch_up += min(drafter.sync_seconds, step.draft_seconds)
            if not step.finish:  # the last round may be cut short by max_tokens
                counts[min(step.n_drafted, k_cal)] += 1
    per_token = (stats.draft_seconds - catch_up) / stats.drafted if stats.drafted else 0.0
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
