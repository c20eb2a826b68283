"""`specpair advise --what-if`: predict a speedup from stated costs, with no hardware at hand.

The same formula as the adviser (advise.py, Leviathan et al. 2023): with per-position acceptance
alpha_i, a round of K draft tokens yields E(K) = 1 + sum_j prod_{i<j} alpha_i tokens and costs
K draft steps plus one target evaluation of K + 1 tokens, so

    speedup(K) = E(K) / (K * c + v(K + 1)),

c the draft's cost per token and v(n) the target's cost for a batch of n tokens, both in units
of one target step. The verify curve is what separates hardware: a memory-bound GPU verifies a
few tokens for about the price of one ("gpu": flat), a 2-core CPU does not ("cpu").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..auto.costmodel import MIN_PREDICTED_SPEEDUP, CostModel, predicted_speedup
from ..errors import SpecpairError

# the 2-core CPU curve measured by `specpair advise` (docs/MEASUREMENTS.md), batches of 1..9,
# then extended with the slope of its last points
CPU_CURVE = (1.0, 1.6, 2.0, 2.5, 3.0, 3.7, 4.3, 6.2, 6.5)
CURVES = ("gpu", "cpu", "linear:S", "list of costs")


def verify_curve(spec: str, max_k: int) -> tuple[float, ...]:
    """A verify-cost curve for batches of 1..max_k+1 tokens, in units of one token:
    "gpu" (flat: memory-bound), "cpu" (this project's 2-core curve), "linear:S" (1 + S(n-1)),
    or an explicit comma-separated list starting with 1."""
    n = max_k + 1
    if spec == "gpu":
        return (1.0,) * n
    if spec == "cpu":
        slope = CPU_CURVE[-1] - CPU_CURVE[-2]
        return tuple(CPU_CURVE[i] if i < len(CPU_CURVE)
                     else CPU_CURVE[-1] + slope * (i - len(CPU_CURVE) + 1) for i in range(n))
    if spec.startswith("linear:"):
        try:
            s = float(spec.split(":", 1)[1])
        except ValueError:
            raise SpecpairError(f"--verify {spec}: give linear:SLOPE, e.g. linear:0.05") from None
        if s < 0:
            raise SpecpairError("--verify linear:SLOPE needs SLOPE >= 0")
        return tuple(1.0 + s * i for i in range(n))
    try:
        costs = tuple(float(x) for x in spec.split(","))
    except ValueError:
        raise SpecpairError(f"--verify must be one of {', '.join(CURVES)}; got {spec!r}") from None
    if len(costs) < 2 or costs[0] <= 0 or any(c <= 0 for c in costs):
        raise SpecpairError("--verify: a list of positive costs for batches of 1, 2, ... tokens")
    if len(costs) < n:
        raise SpecpairError(f"--verify lists {len(costs)} costs; --max-k {max_k} needs {n}")
    return costs[:n]


@dataclass(frozen=True)
class WhatIf:
    draft_cost: float  # c, of one target step
    verify: tuple[float, ...]
    alphas: tuple[float, ...]
    table: tuple[tuple[int, float], ...]  # (K, speedup)
    best: tuple[int, float] | None  # None: plain decoding is the answer

    def to_dict(self) -> dict:
        return {"draft_cost": self.draft_cost, "verify": list(self.verify),
                "alphas": list(self.alphas),
                "table": [{"k": k, "speedup": s} for k, s in self.table],
                "best": None if self.best is None else {"k": self.best[0],
                                                        "speedup": self.best[1]}}


def what_if(*, draft_cost: float, verify: Sequence[float], alphas: Sequence[float],
            max_k: int) -> WhatIf:
    if draft_cost < 0:
        raise SpecpairError(f"--draft-cost must be >= 0, got {draft_cost}")
    if not alphas or not all(0 <= a <= 1 for a in alphas):
        raise SpecpairError("--alpha: acceptance rates between 0 and 1")
    verify = tuple(verify)
    cost = CostModel(verify, draft_cost * verify[0])
    table = tuple((k, predicted_speedup(cost, alphas, k)) for k in range(1, max_k + 1))
    k, s = max(table, key=lambda ks: ks[1])
    return WhatIf(draft_cost, verify, tuple(alphas), table,
                  (k, s) if s >= MIN_PREDICTED_SPEEDUP else None)
