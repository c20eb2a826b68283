"""Choosing, every round, which drafter proposes and how many tokens (K), or none at all.

`AdaptiveDrafter` wraps candidate drafters (n-gram lookup, a model) and, before each round,
predicts each one's speedup with the adviser's formula over what it has learned so far:
- the target's verify cost for every batch size, from the rounds themselves (`CostCurve`);
- each drafter's cost per token, from the rounds it drafted;
- each drafter's acceptance by position, decayed so it follows the text.

It proposes with the best one, or returns an empty draft (a plain step) when nothing is predicted
to beat plain decoding. Regret stays bounded in two ways:
- drafters that cost nothing to ask (`free`, the n-gram lookup) are asked every round and their
  proposals judged against what the target then produced ("shadow" rounds): their acceptance is
  learned without spending a single target evaluation on them;
- a drafter that costs something is tried only when predicted to win, and, while plain decoding
  is chosen, probed with K = 1 once every PROBE_EVERY rounds: at most one cheap losing round in
  PROBE_EVERY.

The decode loop reports each round back through `observe(step)`: its timings feed the cost model.
A paid drafter's cost per token is its drafting time less its catch-up (`sync_seconds`, the
tokens committed since its last proposal: long after plain rounds, and never part of what a
drafted token costs), over the tokens it drafted; every drafted token is one evaluation of the
draft, the first included (drafters/model.py), so K = 1 probes measure it as well as K = 16.
The catch-up of a round that follows the same drafter's round is the per-call cost.

Batches larger than any measured on this machine are unknown: the estimate extrapolates them
pessimistically, and on a 2-core CPU only long drafts pay. Once every EXPLORE_EVERY rounds,
auto predicts as if they were nearly free; if a free drafter's proposal of such a length would
then beat the current choice by EXPLORE_GAIN, it drafts it: the round measures the point, which
is stored, so each length is explored about once per machine and target, not once per request
(on Spec-Bench, re-exploring per request cost 3-5% end to end: MEASUREMENTS.md). A stored
point that physics rules out (a busy run) is dropped, so it counts as unknown again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..core.drafter import Draft, Drafter
from ..core.stats import Step
from .candidates import DEFAULT_PRIOR_ALPHA, Acceptance, Candidate, reach_of
from .costmodel import MIN_PREDICTED_SPEEDUP, CostModel
from .curve import CostCurve

PROBE_EVERY = 32  # plain rounds between two K = 1 probes of a drafter that costs something
SHADOW_PENDING = 24  # free proposals awaiting judgement (a K=16 one waits up to 16 rounds)
EXPLORE_EVERY = 16  # rounds between two measurements of curve points not seen this run
EXPLORE_GAIN = 1.15  # what such a point must promise over the current choice


class AdaptiveDrafter(Drafter):
    def __init__(self, candidates: Sequence[Candidate], curve: CostCurve, *,
                 max_k: int, min_speedup: float = MIN_PREDICTED_SPEEDUP,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.candidates = list(candidates)
        self.curve = curve
        self.max_k = min(max_k, curve.points - 1)
        self.min_speedup = min_speedup
        self.name = "auto" if len(self.candidates) != 1 else f"adaptive {self.candidates[0].name}"
        self.chosen: list[tuple[str, int]] = []  # (drafter, K) each round; ("plain", 0)
        self._used: Candidate | None = None  # the drafter of the round in flight
        self._used_kind = ""
        # (who, where it starts, proposal, positions already credited)
        self._shadow: list[tuple[Candidate, int, Draft, int]] = []
        self._plain_rounds = 0
        self._last: Candidate | None = None  # who drafted the previous round
        self._explore_rounds = 0
        self.explored = 0  # rounds drafted to re-measure stored curve points
        self.cpu_seconds = self.wall_seconds = 0.0  # process CPU and wall time while decoding
        self._clock = clock  # the decode loop's (a test's simulated one)
        self._deciding: float | None = None  # this round's choosing, before a paid draft
        self.decide_seconds = 0.0  # auto's own work, all rounds: a cost every round pays
        self.decided_rounds = 0
        self._round_started: tuple[float, float] | None = None  # (CPU, wall) at propose
        self._offered = False  # this round was an offer: the batch chose its K

    # -- the generation -------------------------------------------------------------------
    def begin(self, prompt: Sequence[int]) -> None:
        self._shadow = []
        self._last = None
        for cand in self.candidates:
            cand.drafter.begin(prompt)

    def end(self, tokens: Sequence[int]) -> None:
        self._round_started = None
        for cand in self.candidates:
            cand.drafter.end(tokens)

    # -- learning -------------------------------------------------------------------------
    def observe(self, step: Step) -> None:
        """Called by the decode loop after every round."""
        try:
            self._observe(step)
        finally:
            self._count_round()

    def _count_round(self) -> None:
        """Process CPU and wall time of the round just ended, from its propose to its observe:
        whether the machine was busy is judged over rounds only. The time a generator waits at
        its yield while the caller forwards a piece (a UI reading slowly) is the caller's, and
        it once made every slowly read stream look busy, so no cost was ever stored."""
        if self._round_started is not None:
            cpu, wall = self._round_started
            self.cpu_seconds += time.process_time() - cpu
            self.wall_seconds += time.perf_counter() - wall
            self._round_started = None

    def _observe(self, step: Step) -> None:
        used, self._used = self._used, None
        if self._offered:  # the batch's seconds, not this request's; its K was the batch's
            self.chosen.append((used.name, step.n_drafted) if used is not None
                               and step.n_drafted else ("plain", 0))
        else:
            self.curve.observe(step.n_drafted + 1, step.target_seconds)
        if used is not None:
            used.drafter.observe(step)  # the round it drafted
        last, self._last = self._last, (used if used is not None and step.n_drafted else None)
        if used is None or not step.n_drafted:
            return
        used.drafted_tokens += step.n_drafted
        if not used.free:
            catch_up = min(used.drafter.sync_seconds, step.draft_seconds)
            own = min(self._deciding or 0.0, step.draft_seconds - catch_up)  # auto's, not its
            drafting = step.draft_seconds - catch_up - own
            per_token = drafting / step.n_drafted
            used.measured_seconds += drafting
            used.measured_tokens += step.n_drafted
            used.measured_rounds += 1
            # a mean of the rounds at first (a stored or estimated figure counts as one), then
            # an exponential average that follows drift
            known = 1 if used.seconds_per_token else 0
            w = max(1.0 / (used.measured_rounds + known), 0.2)
            used.seconds_per_token += w * (per_token - used.seconds_per_token)
            if last is used:  # steady drafting: its catch-up recurs every round
                used.seconds_per_call += 0.2 * (catch_up - used.seconds_per_call)
            used.learn(step.judged, step.n_accepted, self._used_kind)

    def _judge_shadows(self, context: Sequence[int]) -> None:
        """Free proposals are judged against what the target produced after them: in greedy
        decoding that is exactly what verification would have accepted; in sampled decoding,
        accepting while the target's own sample agrees is how a q-free draft is verified, so the
        match has the same distribution.
        A proposal the text is still matching is credited with the positions matched so far
        each round, not only once decided: a 64-token copy would otherwise teach nothing for
        64 rounds, all of them plain.
        """
        pending = []
        for who, start, draft, credited in self._shadow:
            proposal, produced = draft.tokens, context[start:]
            n = credited  # the first `credited` tokens matched already
            while n < len(proposal) and n < len(produced) and proposal[n] == produced[n]:
                n += 1
            if n < len(proposal) and n == len(produced):  # not decided yet: credit the matches
                who.learn(n, n, draft.kind, start=credited)
                pending.append((who, start, draft, n))
                continue
            who.learn(min(n + 1, len(proposal)), n, draft.kind, start=credited)
        self._shadow = pending

    # -- choosing -------------------------------------------------------------------------
    def _predict(self, cand: Candidate, verify: tuple[float, ...], k_max: int, kind: str = "",
                 ) -> tuple[int, float]:
        cost = CostModel(verify, cand.seconds_per_token, cand.seconds_per_call)
        acceptance = cand.of_kind(kind)
        alphas = acceptance.alphas
        best = (0, 0.0)
        # predict only K whose acceptance was observed, plus one to let K grow (the adviser's
        # rule: extrapolated acceptance overestimated by up to 50%); a free drafter is judged
        # at every position it proposes, in shadow
        top = min(k_max, cand.max_k, cost.max_k)
        if not cand.free:
            top = min(top, acceptance.observed + 1)
        # predicted_speedup for every k at once: E(k) grows by one term per k (O(top), not
        # O(top^2): this runs every round)
        expected = 1.0
        for k, reach in enumerate(reach_of(alphas, top), 1):
            expected += reach
            s = expected * verify[0] / cost.round_seconds(k)
            if s > best[1]:
                best = (k, s)
        return best

    def propose(self, context: Sequence[int], k: int) -> Draft:
        """The round's draft; the time auto spends choosing it (its lookups, shadow judging,
        predictions) is measured as auto's own cost (`decide_seconds`), never as the chosen
        model draft's."""
        return self._decide(self._propose, context, k)

    def offer(self, context: Sequence[int], k: int) -> Draft:
        """Beside other requests: the free proposal with the most expected accepted tokens,
        whole, with its reach per token; the scheduler cuts it by the whole batch's goodput
        (schedule/goodput.py), so neither this request's own K rule nor its curve (a batch's
        seconds are not this request's) decides. Paid drafters are not asked here. Its time
        is auto's own, as `propose`'s is."""
        return self._decide(self._offer, context, k)

    def _decide(self, choose: Callable[[Sequence[int], int, float], Draft],
                context: Sequence[int], k: int) -> Draft:
        """One round's choice, timed: CPU and wall from here to `observe` (the busy check),
        and the choosing itself up to where a paid drafter starts drafting (`_ask`)."""
        self._round_started = (time.process_time(), time.perf_counter())
        t0 = self._clock()
        self._deciding = None
        draft = choose(context, k, t0)
        if self._deciding is None:
            self._deciding = self._clock() - t0
        self.decide_seconds += self._deciding
        self.decided_rounds += 1
        return draft

    def _ask(self, cand: Candidate, context: Sequence[int], k: int, t0: float) -> Draft:
        """A paid drafter's proposal: deciding ends where its drafting starts."""
        self._deciding = self._clock() - t0
        return cand.drafter.propose(context, k)

    def _free_drafts(self, context: Sequence[int], k_max: int) -> dict[int, Draft]:
        """Every free drafter's proposal: asked every round (it costs nothing), and judged in
        shadow against what the target then produces."""
        self._judge_shadows(context)
        free_drafts = {}
        for cand in self.candidates:
            if cand.free:
                draft = cand.drafter.propose(context, k_max)
                free_drafts[id(cand)] = draft
                if draft.tokens and len(self._shadow) < SHADOW_PENDING:
                    self._shadow.append((cand, len(context), draft, 0))
        return free_drafts

    def _offer(self, context: Sequence[int], k: int, t0: float) -> Draft:
        self._offered = True
        best: tuple[float, Candidate, Draft] | None = None
        free_drafts = self._free_drafts(context, min(k, self.max_k))
        for cand in self.candidates:
            draft = free_drafts.get(id(cand))
            if draft is None or not draft.tokens:
                continue
            reach = reach_of(cand.of_kind(draft.kind).alphas, len(draft.tokens))
            value = sum(reach)
            if best is None or value > best[0]:
                best = (value, cand, replace(draft, reach=tuple(reach)))
        self._used = best[1] if best is not None else None
        self._used_kind = ""
        return best[2] if best is not None else Draft([])

    def _propose(self, context: Sequence[int], k: int, t0: float) -> Draft:
        self._offered = False
        k_max = min(k, self.max_k)
        free_drafts = self._free_drafts(context, k_max)
        if not self.curve.known:  # the first round measures a plain step
            return self._plain(count=False)
        best = self._best(self.curve.estimate(), free_drafts, k_max)
        best = self._explore(free_drafts, k_max, best) or best
        if best is None or best[0] < self.min_speedup:
            return self._probe(context, t0) or self._plain()
        _, cand, kk = best
        self._plain_rounds = 0
        self._used, self._used_kind = cand, ""
        self.chosen.append((cand.name, kk))
        if cand.free:
            draft = free_drafts[id(cand)]
            return Draft(draft.tokens[:kk], None if draft.q is None else draft.q[:kk],
                         draft.kind)
        return self._ask(cand, context, kk, t0)

    def _best(self, verify: tuple[float, ...], free_drafts: dict, k_max: int,
              *, free_only: bool = False) -> tuple[float, Candidate, int] | None:
        best: tuple[float, Candidate, int] | None = None
        for cand in self.candidates:
            limit, kind = k_max, ""
            if cand.free:
                draft = free_drafts[id(cand)]
                limit, kind = min(limit, len(draft.tokens)), draft.kind  # no tokens: no round
            elif free_only:
                continue
            if limit == 0:
                continue
            kk, s = self._predict(cand, verify, limit, kind)
            if kk and (best is None or s > best[0]):
                best = (s, cand, kk)
        return best

    def _explore(self, free_drafts: dict, k_max: int,
                 current: tuple[float, Candidate, int] | None,
                 ) -> tuple[float, Candidate, int] | None:
        """Every EXPLORE_EVERY rounds: the best free proposal if the points this run has not
        measured were nearly free (`CostCurve.optimistic`); drafted if its K's point is
        unmeasured, or stored but doubtful (`CostCurve.doubtful`), and it promises EXPLORE_GAIN
        over the current choice."""
        self._explore_rounds += 1
        if self._explore_rounds % EXPLORE_EVERY:
            return None
        found = self._best(self.curve.optimistic(), free_drafts, k_max, free_only=True)
        if found is None or (found[2] + 1 in self.curve.measured()
                             and not self.curve.doubtful(found[2] + 1)):
            return None
        floor = max(self.min_speedup, EXPLORE_GAIN * (current[0] if current else 1.0))
        if found[0] < floor:
            return None
        self.explored += 1
        return found

    def _plain(self, *, count: bool = True) -> Draft:
        self._plain_rounds += count
        self.chosen.append(("plain", 0))
        return Draft([])

    def _probe(self, context: Sequence[int], t0: float) -> Draft | None:
        """Once every PROBE_EVERY plain rounds, try the most promising paid drafter with K = 1,
        so a text that turned predictable is noticed."""
        paid = [c for c in self.candidates if not c.free]
        if not paid or (self._plain_rounds + 1) % PROBE_EVERY:
            return None
        self._plain_rounds += 1
        cand = max(paid, key=lambda c: c.alphas[0] if c.alphas else 0.0)
        self._used, self._used_kind = cand, ""
        self.chosen.append((cand.name, 1))
        return self._ask(cand, context, 1, t0)

    @property  # type: ignore[override]
    def translate_seconds(self) -> float:
        return sum(c.drafter.translate_seconds for c in self.candidates)

    @property  # type: ignore[override]
    def sync_seconds(self) -> float:
        return self._used.drafter.sync_seconds if self._used is not None else 0.0

    def rounds_by_choice(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, k in self.chosen:
            key = "plain" if k == 0 else f"{name} K={k}"
            out[key] = out.get(key, 0) + 1
        return out

    def learned_alphas(self) -> dict[str, list[float]]:
        return {c.name: c.alphas for c in self.candidates}

    # no close(): the candidates' models are the pair's, kept for the next call


__all__ = ["DEFAULT_PRIOR_ALPHA", "EXPLORE_EVERY", "PROBE_EVERY", "Acceptance", "AdaptiveDrafter",
           "Candidate"]
