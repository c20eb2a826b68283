"""Opt-in LOSSY acceptance rules: they let the draft shift the output, for speed. Pure functions
over numpy arrays, like verify.py, returning (n_accepted, next_token).

Exact verification (verify.py) keeps the target's distribution whatever the draft (Leviathan et
al. 2023, Appendix A; Chen et al. 2023, Theorem 1): a draft cannot steer its target. These rules
give that up, and every output made with them says so (`AcceptanceRule.exact` is False).

- Lenience (Leviathan et al. 2023, Section 3.5 / A.5), l in (0, 1]: accept draft token x with
  min(1, p(x) / (l q(x))). On rejection draw from what p has left once the accepted mass is
  taken out, norm(max(0, p - min(q, p / l))), which is norm(max(0, p - q)) at l = 1: exact. For
  one token the output distribution is then, in closed form,
      P(x) = min(q(x), p(x) / l) + (1 - sum_y min(q(y), p(y) / l)) r(x),
  r the residual above: `lenient_distribution`. With q = None (a drafter without
  probabilities, q one-hot on its token) min(q, p/l) is min(1, p(x)/l) at the draft token.
  Greedy analogue: accept x when p(x) >= l * max p, i.e. its logit is within log(1/l) of the
  best; l = 1 accepts only the argmax (exact greedy).
- Typical acceptance (Medusa, Cai et al. 2024): accept x when p(x) > min(epsilon,
  delta * exp(-H(p))), H the entropy of the target's distribution; on rejection, and for the
  bonus token, draw from p (greedy: take the argmax). Greedy analogue: the same test on the
  temperature-1 distribution of the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidOption
from .sampling import dense, sample, softmax
from .verify import Rows, uniforms

EXACT, LENIENCE, TYPICAL = "exact", "lenience", "typical"
DEFAULT_TYPICAL_EPSILON = 0.3  # Medusa's posterior threshold
DEFAULT_TYPICAL_DELTA = 0.09  # Medusa's posterior alpha (sqrt of epsilon)


@dataclass(frozen=True, kw_only=True)
class AcceptanceRule:
    kind: str = EXACT
    lenience: float = 1.0
    epsilon: float = DEFAULT_TYPICAL_EPSILON
    delta: float = DEFAULT_TYPICAL_DELTA

    def __post_init__(self) -> None:
        if self.kind not in (EXACT, LENIENCE, TYPICAL):
            raise InvalidOption(f"{{accept}} must be exact, lenience or typical, got "
                                f"{self.kind}")
        if not 0 < self.lenience <= 1:
            raise InvalidOption(f"{{lenience}} must be in (0, 1] (1 = exact), got "
                                f"{self.lenience}")
        if not (0 < self.epsilon < 1 and 0 < self.delta < 1):
            raise InvalidOption("{typical_epsilon} and {typical_delta} must be in (0, 1)")

    @property
    def exact(self) -> bool:
        return self.kind == EXACT or (self.kind == LENIENCE and self.lenience == 1.0)

    def describe(self) -> str:
        if self.exact:
            return "exact"
        if self.kind == LENIENCE:
            return f"LOSSY: lenience {self.lenience:g}"
        return f"LOSSY: typical acceptance (epsilon {self.epsilon:g}, delta {self.delta:g})"

    def to_dict(self) -> dict:
        out: dict = {"exact": self.exact, "rule": self.kind}
        if self.kind == LENIENCE:
            out["lenience"] = self.lenience
        if self.kind == TYPICAL:
            out |= {"epsilon": self.epsilon, "delta": self.delta}
        return out


def lenient_residual(p: np.ndarray, q_row: np.ndarray | None, x: int, lenience: float,
                     ) -> np.ndarray:
    """What p has left once the accepted mass min(q, p / l) is taken out."""
    if q_row is None:
        taken = np.zeros_like(p)
        taken[x] = min(1.0, p[x] / lenience)
    else:
        taken = np.minimum(q_row, p / lenience)
    residual = np.maximum(p - taken, 0.0)
    return residual if residual.sum() > 0 else p


def lenient_distribution(p: np.ndarray, q: np.ndarray, lenience: float) -> np.ndarray:
    """The output distribution of one lenient step when the draft samples from q (closed
    form; l = 1 gives p exactly)."""
    accepted = np.minimum(q, p / lenience)
    residual = lenient_residual(p, q, 0, lenience)
    return accepted + (1 - accepted.sum()) * residual / residual.sum()


def verify_lenient_sampled(p: Rows, q: np.ndarray | None, draft_tokens: Sequence[int],
                           u: np.ndarray | np.random.Generator, lenience: float,
                           ) -> tuple[int, int]:
    k = len(draft_tokens)
    assert len(p) == k + 1, "need one target row per draft token, plus the bonus"
    u = uniforms(u, k)
    for i, x in enumerate(draft_tokens):
        q_x = 1.0 if q is None else float(q[i, x])
        row = dense(p[i])
        if u[i, 0] * lenience * q_x < row[x]:
            continue
        return i, sample(lenient_residual(row, None if q is None else q[i], x, lenience),
                         float(u[i, 1]))
    return k, sample(p[k], float(u[k, 0]))


def verify_lenient_greedy(logits: np.ndarray, draft_tokens: Sequence[int], lenience: float,
                          ) -> tuple[int, int]:
    """Accept while the draft token's logit is within log(1/l) of the best one."""
    k = len(draft_tokens)
    assert logits.shape[0] == k + 1
    slack = -np.log(lenience)
    for i, x in enumerate(draft_tokens):
        if logits[i, x] < logits[i].max() - slack:
            return i, int(np.argmax(logits[i]))
    return k, int(np.argmax(logits[k]))


def typical_threshold(p: np.ndarray, epsilon: float, delta: float) -> float:
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    return min(epsilon, delta * float(np.exp(-entropy)))


def typical_distribution(p: np.ndarray, q: np.ndarray, epsilon: float,
                         delta: float) -> np.ndarray:
    """The output distribution of one typical-acceptance step when the draft samples from q
    (closed form: q where p passes the threshold; on rejection, p)."""
    accepted = q * (p > typical_threshold(p, epsilon, delta))
    return accepted + (1 - accepted.sum()) * p


def verify_typical(p: Rows, draft_tokens: Sequence[int],
                   u: np.ndarray | np.random.Generator | None, epsilon: float,
                   delta: float) -> tuple[int, int]:
    """Medusa's typical acceptance over rows of probabilities p; u None: greedy (argmax)."""
    k = len(draft_tokens)
    assert len(p) == k + 1
    uu = None if u is None else uniforms(u, k)

    def choose(i: int) -> int:
        return int(np.argmax(dense(p[i]))) if uu is None else sample(p[i], float(uu[i, 0]))

    for i, x in enumerate(draft_tokens):
        row = dense(p[i])
        if row[x] > typical_threshold(row, epsilon, delta):
            continue
        return i, choose(i)
    return k, choose(k)


def verify_lossy(rule: AcceptanceRule, logits: np.ndarray, probs: Rows | None,
                 q: np.ndarray | None, draft_tokens: Sequence[int],
                 u: np.ndarray | np.random.Generator) -> tuple[int, int]:
    """Dispatch for the decode loop: `probs` is the sampling transform of `logits`, or None in
    greedy decoding."""
    if rule.kind == LENIENCE:
        if probs is None:
            return verify_lenient_greedy(logits, draft_tokens, rule.lenience)
        return verify_lenient_sampled(probs, q, draft_tokens, u, rule.lenience)
    if probs is None:
        return verify_typical(softmax(np.asarray(logits, np.float64)), draft_tokens, None,
                              rule.epsilon, rule.delta)
    return verify_typical(probs, draft_tokens, u, rule.epsilon, rule.delta)
