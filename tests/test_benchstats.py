"""The benchmark's statistics on synthetic data with a known truth."""

import math

import numpy as np
import pytest

from specpair.measure.benchstats import describe_speedup, speedup, summarize


def test_t_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, hits = 2000, 0
    for _ in range(trials):
        s = summarize(list(rng.normal(20.0, 3.0, size=5)))  # 5 runs, as the bench default
        hits += s.ci_low <= 20.0 <= s.ci_high
    assert 0.93 <= hits / trials <= 0.97


def test_bootstrap_speedup_interval_covers_the_true_ratio():
    """Percentile bootstrap undercovers with very few runs; with 20 paired runs it is close."""
    rng = np.random.default_rng(1)
    trials, hits = 300, 0
    for _ in range(trials):
        plain = rng.normal(25.0, 2.0, size=20)
        spec = plain * np.exp(rng.normal(math.log(1.3), 0.1, size=20))
        s = speedup(list(plain), list(spec), seed=int(rng.integers(1 << 30)))
        hits += s.ci_low <= 1.3 <= s.ci_high
    assert hits / trials >= 0.9


def test_speedup_of_clearly_slower_candidate():
    plain = [25.0, 24.0, 26.0, 25.5, 24.5]
    spec = [p * 0.6 for p in plain]
    s = speedup(plain, spec)
    assert s.ratio == pytest.approx(0.6)
    assert s.ci_high < 1
    assert "slower" in describe_speedup(s, what="speculative decoding")


def test_noisy_equal_speeds_are_no_clear_difference():
    rng = np.random.default_rng(3)
    plain = list(rng.normal(25, 2, size=6))
    spec = list(rng.normal(25, 2, size=6))
    s = speedup(plain, spec)
    assert s.ci_low < 1 < s.ci_high and s.p_value > 0.05
    assert "no clear difference" in describe_speedup(s, what="x")


def test_single_run_has_no_interval():
    s = summarize([3.0])
    assert s.mean == 3.0 and math.isnan(s.ci_low)
    assert math.isnan(speedup([2.0], [3.0]).ci_low)
