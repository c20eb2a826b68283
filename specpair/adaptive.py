"""Adaptive draft length: pick K every round from the cost model and the acceptance seen so far.

`AdaptiveDrafter` wraps any drafter. Before each round it infers how many of its previous
proposal the target accepted (the context now starts with exactly those tokens, then the target's
own token, which differs from the rejected draft in both greedy and sampled verification), updates
per-position acceptance counts (decayed, so they follow the text), and chooses the K with the best
predicted speedup. K = 0 means a plain step: when speculation stops paying, decoding falls back to
plain by itself, and probes with K = 1 now and then in case the text turns predictable again.
"""

from __future__ import annotations

from collections.abc import Sequence

from .advise import MIN_PREDICTED_SPEEDUP, CostModel, best_k
from .drafters import Draft, Drafter

DECAY = 0.9  # per round: acceptance counts have a memory of about 10 rounds
PRIOR_ROUNDS = 4.0  # how many rounds the calibration's acceptance is worth
PROBE_EVERY = 32  # plain rounds between two K = 1 probes


class AdaptiveDrafter:
    def __init__(self, inner: Drafter, cost: CostModel, prior_alphas: Sequence[float], *,
                 max_k: int, min_speedup: float = MIN_PREDICTED_SPEEDUP,
                 lengths: Sequence[float] | None = None) -> None:
        self.inner = inner
        self.name = f"adaptive {inner.name}"
        self.cost = cost
        self.max_k = min(max_k, cost.max_k)
        self.min_speedup = min_speedup
        self.lengths = lengths  # how often the drafter proposes fewer than K (calibration)
        fill = sum(prior_alphas) / len(prior_alphas) if prior_alphas else 0.0
        alphas = [prior_alphas[i] if i < len(prior_alphas) else fill for i in range(self.max_k)]
        self.reached = [PRIOR_ROUNDS] * self.max_k
        self.accepted = [PRIOR_ROUNDS * a for a in alphas]
        self.chosen: list[int] = []  # K chosen each round (0: plain), for reports
        self._last: tuple[int, list[int]] | None = None
        self._plain_rounds = 0

    @property
    def alphas(self) -> list[float]:
        """Per-position acceptance. Position i > 0 carries one pseudo-observation at position
        i-1's estimate: positions not drafted lately (K was smaller) follow their neighbour
        instead of keeping a stale value, which lets K grow again when drafts start landing."""
        out: list[float] = []
        for a, r in zip(self.accepted, self.reached):
            if out:
                out.append((a + out[-1]) / (r + 1))
            else:
                out.append(a / r if r > 1e-6 else 0.0)
        return out

    def _learn(self, context: Sequence[int]) -> None:
        if self._last is None:
            return
        start, proposal = self._last
        self._last = None
        if not proposal:
            return
        n_acc = 0
        for drafted, kept in zip(proposal, context[start:]):
            if drafted != kept:
                break
            n_acc += 1
        n_acc = min(n_acc, len(context) - start - 1)  # the last new token is the target's own
        self.reached = [r * DECAY for r in self.reached]
        self.accepted = [a * DECAY for a in self.accepted]
        for i in range(min(n_acc + 1, len(proposal))):
            self.reached[i] += 1
            self.accepted[i] += i < n_acc

    def propose(self, context: Sequence[int], k: int) -> Draft:
        self._learn(context)
        k_best, _ = best_k(self.cost, self.alphas, max_k=min(k, self.max_k),
                           min_speedup=self.min_speedup, lengths=self.lengths)
        if k_best == 0:
            self._plain_rounds += 1
            if self._plain_rounds % PROBE_EVERY == 0:
                k_best = 1
        self.chosen.append(k_best)
        draft = self.inner.propose(context, k_best) if k_best else Draft([])
        self._last = (len(context), list(draft.tokens))
        return draft

    def close(self) -> None:
        self.inner.close()
