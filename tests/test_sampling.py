import numpy as np
import pytest

from specpair.core.sampling import SamplingConfig, make_transform, softmax
from specpair.errors import SpecpairError

LOGITS = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05]))


def test_temperature_one_is_softmax():
    probs = make_transform(SamplingConfig(temperature=1.0))(LOGITS)
    np.testing.assert_allclose(probs, [0.5, 0.2, 0.15, 0.1, 0.05])


def test_top_k_keeps_k_most_likely():
    probs = make_transform(SamplingConfig(temperature=1.0, top_k=2))(LOGITS)
    np.testing.assert_allclose(probs, [0.5 / 0.7, 0.2 / 0.7, 0, 0, 0])


def test_top_p_keeps_smallest_set_reaching_p():
    probs = make_transform(SamplingConfig(temperature=1.0, top_p=0.8))(LOGITS)
    np.testing.assert_allclose(probs, np.array([0.5, 0.2, 0.15, 0, 0]) / 0.85)


def test_top_p_on_a_large_vocabulary_matches_full_sort():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=50_000) * 0.1  # flat: the head of 2048 is not enough
    probs = make_transform(SamplingConfig(temperature=1.0, top_p=0.5))(logits)
    full = softmax(logits)
    order = np.argsort(-full)
    n_keep = int(np.searchsorted(np.cumsum(full[order]), 0.5)) + 1
    assert np.count_nonzero(probs) == n_keep
    assert set(np.nonzero(probs)[0]) == set(order[:n_keep])


def test_min_p_drops_tokens_below_fraction_of_max():
    probs = make_transform(SamplingConfig(temperature=1.0, min_p=0.3))(LOGITS)
    np.testing.assert_allclose(probs, np.array([0.5, 0.2, 0.15, 0, 0]) / 0.85)


def test_transform_applies_row_by_row():
    rows = np.stack([LOGITS, LOGITS[::-1]])
    probs = make_transform(SamplingConfig(temperature=0.7, top_k=3))(rows)
    assert probs.shape == rows.shape
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.count_nonzero(probs[0]) == 3 and probs[1, 4] > 0


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1}, {"top_k": -2}, {"top_p": 0}, {"top_p": 1.5}, {"min_p": 1}]
)
def test_bad_values_are_user_errors(kwargs):
    with pytest.raises(SpecpairError):
        SamplingConfig(**kwargs)
