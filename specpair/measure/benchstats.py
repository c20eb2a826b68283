"""Statistics for benchmarks: pure functions over lists of measurements.

Means get a Student-t 95% confidence interval (right for few, roughly normal runs). A speedup is
the geometric mean of paired ratios (spec run i over plain run i, measured side by side), with a
seeded percentile-bootstrap 95% CI over runs and a paired t-test on log tokens/s for its p-value.
With few runs (the default is 5) intervals are wide: that is the honest answer, not a flaw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
N_BOOTSTRAP = 10_000
# A percentile bootstrap over fewer paired runs than this covers far less than 95%: below it,
# no interval is given ("too few runs for an interval"), only the ratio.
MIN_RUNS_FOR_INTERVAL = 5
TOO_FEW = "too few runs for an interval"


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    median: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "median": self.median,
                "ci95": [self.ci_low, self.ci_high]}


def summarize(values: list[float]) -> Summary:
    """Mean, median and the t-interval for the mean (nan bounds with fewer than 2 values)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size < 2:
        return Summary(1, mean, mean, math.nan, math.nan)
    from scipy import stats as sps  # [bench] extra

    half = sps.t.ppf(0.5 + CONFIDENCE / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return Summary(int(x.size), mean, float(np.median(x)), mean - half, mean + half)


@dataclass(frozen=True)
class Speedup:
    n: int
    ratio: float  # geometric mean of paired ratios
    ci_low: float
    ci_high: float
    p_value: float  # paired t-test on log tokens/s: H0 "same speed"

    def to_dict(self) -> dict:
        return {"n": self.n, "ratio": self.ratio, "ci95": [self.ci_low, self.ci_high],
                "p_value": self.p_value}


def speedup(baseline: list[float], candidate: list[float], *, seed: int = 0) -> Speedup:
    """How many times faster `candidate` is than `baseline`, from paired runs."""
    if len(baseline) != len(candidate) or not baseline:
        raise ValueError("speedup needs paired, non-empty measurements")
    from scipy import stats as sps  # [bench] extra

    log_ratios = np.log(np.asarray(candidate, float)) - np.log(np.asarray(baseline, float))
    ratio = float(np.exp(log_ratios.mean()))
    n = log_ratios.size
    if n < MIN_RUNS_FOR_INTERVAL:
        p = math.nan
        if n >= 2 and not np.allclose(log_ratios, log_ratios[0]):
            p = float(sps.ttest_1samp(log_ratios, 0.0).pvalue)
        return Speedup(n, ratio, math.nan, math.nan, p)
    rng = np.random.default_rng(seed)
    resampled = log_ratios[rng.integers(0, n, size=(N_BOOTSTRAP, n))].mean(axis=1)
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.exp(np.quantile(resampled, [alpha, 1 - alpha]))
    if np.allclose(log_ratios, log_ratios[0]):
        p = 1.0 if log_ratios[0] == 0 else 0.0
    else:
        p = float(sps.ttest_1samp(log_ratios, 0.0).pvalue)
    return Speedup(n, ratio, float(lo), float(hi), p)


def describe_speedup(s: Speedup, *, what: str) -> str:
    """The verdict line in words."""
    if math.isnan(s.ci_low):
        return (f"{what} is {s.ratio:.2f}x as fast as plain ({s.n} paired run"
                f"{'s' if s.n != 1 else ''}: {TOO_FEW})")
    if s.ci_low > 1:
        word = "faster"
    elif s.ci_high < 1:
        word = "slower"
    else:
        word = "no clear difference"
    sig = "" if math.isnan(s.p_value) else f", p = {s.p_value:.3g}"
    return (f"{what} is {s.ratio:.2f}x [{s.ci_low:.2f}, {s.ci_high:.2f}] as fast as plain on "
            f"this machine{sig}: {word}")
