"""The adviser's formula and K choice on synthetic cost curves and acceptance profiles, and the
adaptive drafter's online choices."""

import pytest

from specpair.auto.adaptive import AdaptiveDrafter, Candidate
from specpair.auto.costmodel import CostModel, best_k, expected_tokens, predicted_speedup
from specpair.auto.curve import CostCurve
from specpair.core.stats import Step
from specpair.drafters import Draft, Drafter
from specpair.measure.advise import Calibration, advise

GPU_LIKE = tuple([1.0 + 0.02 * n for n in range(17)])  # verifying 17 tokens ~ 1.3 x one
CPU_LIKE = (1.0, 1.5, 1.8, 2.9, 3.2, 3.6, 4.2, 4.9, 7.9, 8.5, 9.0)  # this project's 2-core CPU


def test_expected_tokens_matches_leviathan_closed_form():
    for alpha in (0.3, 0.6, 0.9):
        for k in (1, 4, 8):
            closed = (1 - alpha ** (k + 1)) / (1 - alpha)
            assert expected_tokens([alpha] * k, k) == pytest.approx(closed)


def test_expected_tokens_with_per_position_acceptance():
    assert expected_tokens([0.8, 0.5], 2) == pytest.approx(1 + 0.8 + 0.8 * 0.5)
    assert expected_tokens([0.8, 0.5], 3) == pytest.approx(1 + 0.8 + 0.4 + 0.4 * 0.65)


def test_free_perfect_drafter_on_gpu_like_costs_wants_long_drafts():
    k, s = best_k(CostModel(GPU_LIKE, 0.0), [1.0])
    assert k == 16 and s == pytest.approx(17 / GPU_LIKE[16])


def test_cheap_good_drafter_on_cpu_like_costs_prefers_short_drafts():
    k, s = best_k(CostModel(CPU_LIKE, 0.001), [0.9] * 10)
    assert k == 2 and s > 1.4  # the batch of 3 is cheap, the batch of 4 switches kernels


def test_every_k_loses_so_plain_is_chosen():
    """The 0.5B draft costs 0.6 of a target step: nothing wins at alpha 0.5 on CPU costs."""
    cost = CostModel(CPU_LIKE, 0.6)
    assert all(predicted_speedup(cost, [0.5] * 10, k) < 1 for k in range(1, 11))
    assert best_k(cost, [0.5] * 10) == (0, 1.0)


def test_advise_recommends_plain_in_words_when_nothing_wins():
    advice = advise(CPU_LIKE, [Calibration("small.gguf", (0.6, 0.5, 0.5), 0.6, 30, 16),
                               Calibration("ngram", (0.1,), 0.0, 10, 1)])
    assert advice.choice is None
    assert advice.reason.startswith("plain decoding is the fastest choice here")
    assert len(advice.table) == 2 * (len(CPU_LIKE) - 1)


def test_advise_picks_the_best_drafter_and_k():
    advice = advise(CPU_LIKE, [Calibration("small.gguf", (0.6,), 0.6, 30, 16),
                               Calibration("ngram", (0.95, 0.95, 0.9), 0.0005, 10, 9)])
    assert advice.choice == ("ngram", 2)
    assert advice.predicted_speedup > 1.4


class Scripted(Drafter):
    """A drafter that always proposes the same continuation."""

    name = "scripted"

    def __init__(self, tokens):
        self.tokens = tokens
        self.calls = []

    def propose(self, context, k):
        self.calls.append(k)
        return Draft(self.tokens[:k])

    def close(self):
        pass


def _adaptive(inner, prior, max_k, **kw):
    cand = Candidate.with_prior(inner, free=False, prior=prior, max_k=max_k,
                                seconds_per_token=0.001)
    return AdaptiveDrafter([cand], CostCurve(CPU_LIKE), max_k=max_k, **kw), cand


def _round(drafter, context, k, n_accepted):
    draft = drafter.propose(context, k)
    n = len(draft.tokens)
    acc = min(n_accepted, n)
    drafter.observe(Step(tokens=[0] * (acc + 1), n_drafted=n, n_accepted=acc,
                         draft_seconds=0.001 * n, target_seconds=CPU_LIKE[n], seconds=0.0))
    return draft


def test_adaptive_drafter_backs_off_to_plain_when_drafts_get_rejected():
    drafter, cand = _adaptive(Scripted([9, 9, 9, 9]), [0.95, 0.95], 4)
    assert _round(drafter, [1, 2, 3], 8, 0).tokens  # the prior says drafting pays
    for _ in range(12):  # the target never takes a 9
        _round(drafter, [1, 2, 3], 8, 0)
    assert drafter.chosen[-1] == ("plain", 0)
    assert cand.alphas[0] < 0.6  # learned down from the 0.95 prior, then stopped drafting


def test_adaptive_drafter_learns_acceptance_from_the_rounds():
    drafter, cand = _adaptive(Scripted([7, 7, 7]), [0.2], 3, min_speedup=0.0)
    for _ in range(15):
        _round(drafter, [1], 3, 3)  # all accepted
    assert cand.alphas[0] > 0.9
    assert drafter.chosen[-1][1] >= 2


def test_short_proposals_lower_the_expected_tokens_and_the_round_cost():
    from specpair.auto.costmodel import expected_round_seconds

    lengths = (0.5, 0.0, 0.5)  # half the rounds propose nothing, half propose 2 tokens
    assert expected_tokens([1.0, 1.0], 2, lengths) == pytest.approx(1 + 0.5 + 0.5)
    cost = CostModel(CPU_LIKE, 0.0)
    assert expected_round_seconds(cost, 2, lengths) == pytest.approx(0.5 * 1.0 + 0.5 * 1.8)
    # full proposals past the calibration K are assumed to stay full
    assert expected_tokens([1.0] * 4, 4, lengths) == pytest.approx(1 + 0.5 * 4)


def test_recommendation_stays_within_the_measured_draft_positions():
    """Past the calibration's K the acceptance is extrapolated; never recommend from that."""
    advice = advise(GPU_LIKE, [Calibration("ngram", (0.95, 0.95), 0.0, 40, 38)])
    assert advice.choice == ("ngram", 2)
    assert max(k for _, k, _, s in advice.table if s > advice.predicted_speedup) > 2
