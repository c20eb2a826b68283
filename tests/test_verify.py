"""Verification on hand-written distributions: the accept/reject boundaries and the exactness of
rejection sampling (the output distribution must be the target's, whatever the draft)."""

import numpy as np
import pytest
from scipy.stats import chisquare

from specpair.core.verify import verify_greedy, verify_sampled

# target logits for k = 3 draft tokens (4 rows); argmax per row: 2, 0, 4, 1
LOGITS = np.array(
    [
        [0.0, 1.0, 3.0, 0.5, 0.1],
        [2.0, 1.0, 0.0, 0.5, 0.1],
        [0.0, 1.0, 0.0, 0.5, 2.1],
        [0.0, 1.0, 0.0, 0.5, 0.1],
    ]
)


@pytest.mark.parametrize(
    "draft, expected",
    [
        ([2, 0, 4], (3, 1)),  # all match: bonus token from the last row
        ([2, 0, 3], (2, 4)),  # last rejected: the target's argmax replaces it
        ([1, 0, 4], (0, 2)),  # first rejected: later matches do not count
        ([2, 1, 4], (1, 0)),
    ],
)
def test_greedy_accepts_exactly_the_matching_prefix(draft, expected):
    assert verify_greedy(LOGITS, draft) == expected


def test_greedy_with_no_draft_is_plain_argmax():
    assert verify_greedy(LOGITS[:1], []) == (0, 2)


P = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
N_DRAWS = 20_000
# Chi-square goodness of fit at significance 0.001: with fixed seeds the test is deterministic;
# the level says how unlikely a pass-to-fail flip is if the seed changes and the code is right.
ALPHA = 1e-3


def _first_token_frequencies(p_rows, q_rows, draw_draft, seed):
    rng = np.random.default_rng(seed)
    counts = np.zeros(p_rows.shape[1])
    for _ in range(N_DRAWS):
        draft = draw_draft(rng)
        n, nxt = verify_sampled(p_rows, q_rows, draft, rng)
        first = draft[0] if n > 0 else nxt
        counts[first] += 1
    return counts


@pytest.mark.parametrize(
    "q",
    [
        np.array([0.2, 0.2, 0.2, 0.2, 0.2]),  # uniform draft
        np.array([0.05, 0.05, 0.1, 0.3, 0.5]),  # draft that prefers what the target does not
        np.array([0.0, 0.0, 0.5, 0.5, 0.0]),  # draft with zero mass on the target's favourites
        P,  # a perfect draft
    ],
)
def test_sampled_verification_reproduces_target_distribution(q):
    p_rows = np.stack([P, P])
    q_rows = q[None, :]

    def draw(rng):
        return [int(rng.choice(5, p=q))]

    counts = _first_token_frequencies(p_rows, q_rows, draw, seed=1234)
    assert chisquare(counts, P * N_DRAWS).pvalue > ALPHA


def test_a_wrong_verifier_would_fail_this_test():
    """The statistical test has power: the draft's own distribution is rejected."""
    q = np.array([0.05, 0.05, 0.1, 0.3, 0.5])
    rng = np.random.default_rng(1)
    counts = np.bincount(rng.choice(5, size=N_DRAWS, p=q), minlength=5)
    assert chisquare(counts, P * N_DRAWS).pvalue < ALPHA


def test_sampled_second_position_is_target_conditional():
    """With k = 2, the token at position 2 follows p_1 whenever position 1 was accepted."""
    p1 = np.array([0.1, 0.6, 0.1, 0.1, 0.1])
    p_rows = np.stack([P, p1, P])
    q0 = np.array([0.3, 0.3, 0.2, 0.1, 0.1])
    q1 = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
    rng = np.random.default_rng(7)
    counts = np.zeros(5)
    for _ in range(N_DRAWS):
        draft = [int(rng.choice(5, p=q0)), int(rng.choice(5, p=q1))]
        n, nxt = verify_sampled(p_rows, np.stack([q0, q1]), draft, rng)
        if n >= 1:
            counts[draft[1] if n == 2 else nxt] += 1
    assert chisquare(counts, p1 * counts.sum()).pvalue > ALPHA


def test_deterministic_draft_without_q_is_exact():
    """An n-gram drafter gives no q: verification treats it as one-hot and stays exact."""
    p_rows = np.stack([P, P])
    counts = _first_token_frequencies(p_rows, None, lambda rng: [4], seed=99)
    assert chisquare(counts, P * N_DRAWS).pvalue > ALPHA


def test_sampled_verification_is_reproducible_with_a_seed():
    p_rows = np.stack([P, P, P])
    q_rows = np.stack([np.full(5, 0.2)] * 2)
    runs = [
        [verify_sampled(p_rows, q_rows, [3, 4], np.random.default_rng(5)) for _ in range(3)]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_bonus_token_when_all_accepted():
    # p puts all its mass on the draft tokens: always accepted, then the bonus row decides
    p_rows = np.array([[0, 0, 1.0, 0, 0], [0, 1.0, 0, 0, 0], [0, 0, 0, 0, 1.0]])
    q_rows = np.array([[0, 0, 1.0, 0, 0], [0, 1.0, 0, 0, 0]])
    assert verify_sampled(p_rows, q_rows, [2, 1], np.random.default_rng(0)) == (2, 4)
