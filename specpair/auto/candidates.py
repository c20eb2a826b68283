"""What auto knows of each drafter it may ask: acceptance by position, decayed so that it
follows the text (`Acceptance`), per kind of proposal, and its costs (`Candidate`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.drafter import Drafter

DECAY = 0.9  # per judged round: acceptance counts have a memory of about 10 rounds
PRIOR_ROUNDS = 4.0  # how many rounds a prior acceptance is worth
DEFAULT_PRIOR_ALPHA = 0.3  # conservative: a model draft must prove itself before it drafts long


@dataclass
class Acceptance:
    """Decayed per-position acceptance counts of one drafter (or one kind of its proposals)."""

    reached: list[float]
    accepted: list[float]
    observed: int = 0  # positions judged at least once (a measured prior counts)
    # one rate for every position (Drafter.memoryless): counts are kept in position 0
    pooled: bool = False

    @classmethod
    def prior(cls, alphas: Sequence[float], max_k: int, *, observed: int,
              pooled: bool = False) -> Acceptance:
        fill = sum(alphas) / len(alphas) if alphas else DEFAULT_PRIOR_ALPHA
        full = [alphas[i] if i < len(alphas) else fill for i in range(max_k)]
        if pooled:
            full = [fill] * max_k
        return cls([PRIOR_ROUNDS] * max_k, [PRIOR_ROUNDS * a for a in full], observed, pooled)

    @property
    def alphas(self) -> list[float]:
        """Per-position conditional acceptance. Position i > 0 carries one pseudo-observation
        at position i-1's estimate, so positions not drafted lately follow their neighbour
        instead of keeping a stale value. Pooled: the one rate at every position."""
        if self.pooled:
            r = self.reached[0] if self.reached else 0.0
            rate = self.accepted[0] / r if r > 1e-6 else 0.0
            return [rate] * len(self.reached)
        out: list[float] = []
        for a, r in zip(self.accepted, self.reached):
            out.append((a + out[-1]) / (r + 1) if out else (a / r if r > 1e-6 else 0.0))
        return out

    def learn(self, n_judged: int, n_accepted: int, *, start: int = 0) -> None:
        """One round judged positions 0..n_judged-1 and accepted the first n_accepted. With
        `start`, positions before it were already learned (a shadow proposal credited while
        the text went on matching it): only the rest are counted, and the decay is not
        applied again."""
        if n_judged <= start:
            return
        if not start:
            self.reached = [r * DECAY for r in self.reached]
            self.accepted = [a * DECAY for a in self.accepted]
        if self.pooled and self.reached:
            judged = min(n_judged, len(self.reached)) - start
            self.reached[0] += judged
            self.accepted[0] += max(0, min(n_accepted, n_judged) - start)
            self.observed = max(self.observed, min(n_judged, len(self.reached)))
            return
        for i in range(start, min(n_judged, len(self.reached))):
            self.reached[i] += 1
            self.accepted[i] += i < n_accepted
        self.observed = max(self.observed, min(n_judged, len(self.reached)))


def reach_of(alphas: Sequence[float], n: int) -> list[float]:
    """P(draft token i is accepted, all before it too), i < n: products of the per-position
    acceptance (positions past those known take their mean)."""
    fill = sum(alphas) / len(alphas) if alphas else 0.0
    out, reach = [], 1.0
    for i in range(n):
        reach *= alphas[i] if i < len(alphas) else fill
        out.append(reach)
    return out


@dataclass
class Candidate:
    """One drafter and what is known of it: acceptance overall and per kind of proposal
    (Draft.kind: an n-gram match of 2 tokens predicts worse than one of 4)."""

    drafter: Drafter
    free: bool  # costs nothing to ask: judged in shadow every round
    acceptance: Acceptance
    seconds_per_token: float = 0.0
    max_k: int = 16
    drafted_tokens: int = 0
    by_kind: dict[str, Acceptance] = field(default_factory=dict)
    seconds_per_call: float = 0.0  # catch-up in steady drafting (learned)
    # this run's own measurements, for the cost cache (not blended with what was stored)
    measured_seconds: float = 0.0
    measured_tokens: int = 0
    measured_rounds: int = 0
    # acceptance per kind of proposal that earlier runs stored: where a kind starts from
    kind_priors: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def with_prior(cls, drafter: Drafter, *, free: bool, prior: Sequence[float], max_k: int,
                   seconds_per_token: float = 0.0,
                   kind_priors: dict[str, list[float]] | None = None) -> Candidate:
        return cls(drafter, free, Acceptance.prior(prior, max_k, observed=len(prior),
                                                   pooled=drafter.memoryless),
                   seconds_per_token, max_k, kind_priors=dict(kind_priors or {}))

    @property
    def name(self) -> str:
        return self.drafter.name

    @property
    def alphas(self) -> list[float]:
        return self.acceptance.alphas

    def of_kind(self, kind: str) -> Acceptance:
        if not kind:
            return self.acceptance
        if kind not in self.by_kind:  # a kind starts from what earlier runs stored for it, or
            # from the conservative default: a kind never seen (a 2-token match in text that
            # stopped repeating) must prove itself, in shadow, before it drafts
            # a memoryless drafter's kinds refine one rate (a copy's match length): a new kind
            # starts from the drafter's own rate, learned over all of them
            prior = self.kind_priors.get(kind, [])
            if not prior and self.drafter.memoryless and self.acceptance.observed:
                prior = self.acceptance.alphas[:1]
            self.by_kind[kind] = Acceptance.prior(prior, self.max_k, observed=len(prior),
                                                  pooled=self.drafter.memoryless)
        return self.by_kind[kind]

    def learn(self, n_judged: int, n_accepted: int, kind: str = "", *, start: int = 0) -> None:
        self.acceptance.learn(n_judged, n_accepted, start=start)
        if kind:
            self.of_kind(kind).learn(n_judged, n_accepted, start=start)



__all__ = ["DECAY", "DEFAULT_PRIOR_ALPHA", "PRIOR_ROUNDS", "Acceptance", "Candidate", "reach_of"]
