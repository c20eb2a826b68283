"""Speculation under load (issue 45, step 1): with several requests in one batch, the draft
tokens each slot verifies are chosen for the whole batch by the goodput rule on the machine's
batch-cost curve. A flat curve (a GPU) gives every confident slot long drafts, a steep one (a
2-core CPU) few; one slot's record never changes another's K or lookup state; and outputs stay
each request's own."""

from __future__ import annotations

import numpy as np

from specpair.auto.adaptive import AdaptiveDrafter, Candidate
from specpair.auto.curve import CostCurve
from specpair.core.decode import DecodeConfig
from specpair.core.drafter import Draft, Drafter
from specpair.core.stats import Step
from specpair.drafters import NgramDrafter
from specpair.schedule import Request, Scheduler, decode_steps
from specpair.schedule.goodput import choose_lengths

from .toy import MultiToy, random_table


def flat(rows):  # a GPU: rows nearly free until the batch is large
    return 1.0 + 0.01 * (rows - 1)


def steep(rows):  # a 2-core CPU: a batch of 4 rows costs about 1.7 single steps
    return 1.0 + 0.25 * (rows - 1)


def confident(n=16, alpha=0.9):
    return [alpha ** (j + 1) for j in range(n)]


def test_a_flat_curve_gives_every_confident_slot_long_drafts_a_steep_one_few():
    reaches = [confident(), confident(), confident(alpha=0.3)]
    on_gpu = choose_lengths(reaches, fixed_rows=3, fixed_tokens=3, cost=flat)
    on_cpu = choose_lengths(reaches, fixed_rows=3, fixed_tokens=3, cost=steep)
    assert on_gpu[:2] == [16, 16]  # every confident slot drafts all it offers
    assert 0 < sum(on_cpu) < sum(on_gpu)
    assert on_cpu[2] == 0 and on_cpu[0] == on_cpu[1] > 0  # the uncertain slot drafts nothing
    assert on_gpu[2] >= 1  # where rows are nearly free, even a 30% token pays


def test_nothing_is_drafted_where_rows_cost_what_steps_cost_or_the_gain_is_within_the_margin():
    linear = float  # a batch of n rows costs n single steps: no draft token can pay
    assert choose_lengths([confident(), confident()], fixed_rows=2, fixed_tokens=2,
                          cost=linear) == [0, 0]
    # a token likelier than its 4% marginal cost would gain 1.9%: under the 5% margin
    assert choose_lengths([[0.06]], fixed_rows=1, fixed_tokens=1,
                          cost=lambda r: 1.0 + 0.04 * (r - 1)) == [0]
    # the step's token budget caps the drafts (prompt chunks keep their rows)
    assert choose_lengths([confident(64, 0.98)], fixed_rows=8, fixed_tokens=1, cost=flat,
                          max_rows=20) == [12]


def test_one_slots_bad_record_does_not_change_anothers_k():
    good = confident(32, 0.95)
    alone = choose_lengths([good, []], fixed_rows=2, fixed_tokens=2, cost=steep)
    beside_a_bad_one = choose_lengths([good, confident(32, 0.05)], fixed_rows=2,
                                      fixed_tokens=2, cost=steep)
    assert beside_a_bad_one == [alone[0], 0]


class Offering(Drafter):
    """Offers the target's own continuation (or garbage) with a fixed reach per token."""

    def __init__(self, truth, *, n_prompt, alpha, right=True):
        self.truth, self.n_prompt, self.alpha, self.right = truth, n_prompt, alpha, right
        self.name = "offering"

    def propose(self, context, k):
        done = len(context) - self.n_prompt
        tokens = self.truth[done:done + k]
        if not self.right:
            tokens = [(t + 1) % 26 for t in tokens]
        return Draft(tokens)

    def offer(self, context, k):
        draft = self.propose(context, k)
        return Draft(draft.tokens, reach=tuple(self.alpha ** (j + 1)
                                               for j in range(len(draft.tokens))))


def _solo(prompt, config):
    toy = MultiToy(random_table(26, 1), n_seq=1, n_ctx=400)
    return [t for s in decode_steps(toy, None, prompt, config=config,
                                    rng=np.random.default_rng(0)) for t in s.tokens]


def test_the_scheduler_cuts_each_slots_draft_by_the_batchs_goodput_and_outputs_stay_their_own():
    config = DecodeConfig(max_tokens=24, draft_tokens=8)
    prompts = [[1, 2, 3], [4, 5, 6, 7]]
    truths = [_solo(p, config) for p in prompts]
    toy = MultiToy(random_table(26, 1), n_seq=2, n_ctx=400)
    # a steep stored curve, and a clock that stands still: nothing the toy measures moves it
    curve = CostCurve([steep(n) for n in range(1, 66)], points=128)
    s = Scheduler(toy, curve=curve, clock=lambda: 0.0)
    out: dict[int, list[int]] = {0: [], 1: []}
    drafters = [Offering(truths[0], n_prompt=3, alpha=0.97),
                Offering(truths[1], n_prompt=4, alpha=0.2, right=False)]
    for i, p in enumerate(prompts):
        s.submit(Request(prompt=p, config=config, rng=np.random.default_rng(0),
                         drafter=drafters[i],
                         on_step=lambda step, i=i: out[i].extend(step.tokens)))
    s.run()
    assert out[0] == truths[0] and out[1] == truths[1]  # a draft changes speed, never output
    rounds = [dict(b) for b in toy.batches[1:] if len(b) == 2]  # after the prompts
    assert rounds and all(r[1] == 1 for r in rounds)  # the unlikely offer gets no rows
    assert any(r[0] > 1 for r in rounds)  # the likely one is verified in the same batch
    assert s.stats.offered > s.stats.drafted > 0 and s.stats.slot_rounds >= 2 * len(rounds)


def test_auto_offers_its_best_free_proposal_whole_and_learns_per_request():
    """Beside others, auto offers the lookup's whole proposal with its reach, its own cost
    curve untouched (a batch's seconds are not its request's); two requests' auto drafters
    keep their own acceptance."""
    repeat = [1, 2, 3, 4, 5, 6] * 4
    a = AdaptiveDrafter([Candidate.with_prior(NgramDrafter(), free=True, prior=[0.9],
                                              max_k=16)], CostCurve(), max_k=16)
    b = AdaptiveDrafter([Candidate.with_prior(NgramDrafter(), free=True, prior=[0.9],
                                              max_k=16)], CostCurve(), max_k=16)
    a.begin(repeat)
    b.begin(repeat)
    draft = a.offer(repeat, 8)
    assert draft.tokens == [1, 2, 3, 4, 5, 6, 1, 2] and draft.reach is not None
    assert len(draft.reach) == 8 and list(draft.reach) == sorted(draft.reach, reverse=True)
    a.observe(Step(tokens=[9], n_drafted=0, n_accepted=0, draft_seconds=0.0,
                   target_seconds=5.0, seconds=5.0))
    assert not a.curve.measured()  # the batch's seconds taught its curve nothing
    a.offer([*repeat, 9], 8)  # the text left the repeat: a's lookup was wrong at once
    assert a.candidates[0].alphas[0] < b.candidates[0].alphas[0] == 0.9
    assert a.rounds_by_choice() == {"plain": 1}
