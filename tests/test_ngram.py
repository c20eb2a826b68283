"""The n-gram (prompt lookup) drafter on hand-made token histories, and verified decoding with
it on the toy backend."""

import numpy as np
import pytest

from specpair.core.decode import DecodeConfig
from specpair.drafters import NgramDrafter
from specpair.errors import SpecpairError
from specpair.schedule import decode_steps

from .test_decode import TARGET, run
from .toy import ToyBackend


def test_finds_the_longest_match_and_proposes_what_followed():
    #          0  1  2  3  4  5  6  7  8  9
    history = [5, 1, 2, 3, 9, 9, 7, 2, 3, 4, 8, 1, 2, 3]
    # "1 2 3" (n=3) occurred at 1..3, followed by 9 9 7; "2 3" alone also at 7..8 (then 4):
    # the longest match wins over the more recent shorter one
    assert NgramDrafter(n_min=2, n_max=3).propose(history, 3).tokens == [9, 9, 7]
    assert NgramDrafter(n_min=2, n_max=2).propose(history, 3).tokens == [4, 8, 1]


def test_prefers_the_most_recent_occurrence():
    history = [1, 2, 7, 1, 2, 8, 1, 2]
    assert NgramDrafter(n_min=2, n_max=2).propose(history, 1).tokens == [8]


def test_respects_k_and_the_end_of_the_history():
    history = [1, 2, 3, 4, 1, 2]
    drafter = NgramDrafter(n_min=2, n_max=2)
    assert drafter.propose(history, 1).tokens == [3]
    assert drafter.propose(history, 10).tokens == [3, 4, 1, 2]  # only what exists


def test_no_match_proposes_nothing():
    assert NgramDrafter(n_min=2, n_max=3).propose([1, 2, 3, 4, 5], 4).tokens == []
    assert NgramDrafter(n_min=1, n_max=3).propose([7], 4).tokens == []
    # n_min=1 falls back to single-token matches
    assert NgramDrafter(n_min=1, n_max=3).propose([4, 6, 1, 4], 2).tokens == [6, 1]


def test_proposals_have_no_probabilities():
    assert NgramDrafter().propose([1, 2, 3, 1, 2], 2).q is None


def test_bad_sizes_are_user_errors():
    with pytest.raises(SpecpairError):
        NgramDrafter(n_min=3, n_max=2)
    with pytest.raises(SpecpairError):
        NgramDrafter(n_min=0, n_max=2)


def test_ngram_speculation_keeps_greedy_output_and_accepts_on_repetitive_text():
    plain, _ = run(ToyBackend(TARGET), None, [0, 1], max_tokens=60)
    spec, steps = run(ToyBackend(TARGET), NgramDrafter(n_min=1, n_max=3), [0, 1],
                      max_tokens=60, draft_tokens=4)
    assert spec == plain
    # the toy target's greedy walk is a cycle: once seen, lookup predicts it perfectly
    assert sum(s.n_accepted for s in steps) > 40


def test_ngram_with_sampling_runs():
    from specpair.core.sampling import SamplingConfig

    sampling = SamplingConfig(temperature=1.0)
    steps = list(decode_steps(ToyBackend(TARGET), NgramDrafter(n_min=1), [0, 1, 0, 1],
                              config=DecodeConfig(max_tokens=30, sampling=sampling),
                              rng=np.random.default_rng(0)))
    assert sum(len(s.tokens) for s in steps) == 30


def test_max_factor_caps_a_proposal_at_a_multiple_of_its_match():
    history = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2]
    assert NgramDrafter(n_min=2, n_max=2).propose(history, 10).tokens == [3, 4, 5, 6, 7, 8, 1, 2]
    assert NgramDrafter(n_min=2, n_max=2, max_factor=2).propose(history, 10).tokens == [3, 4, 5, 6]
