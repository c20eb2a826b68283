"""Verification on torch tensors (a GPU target's logits never leave the device) against the numpy
reference, on the CPU: greedy results identical, sampled distributions identical (chi-square),
the sampling transform the same. (The Verifier sends CPU tensors to numpy, which is faster there;
these tests call the device path directly.)"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from specpair.core.acceptance import AcceptanceRule
from specpair.core.drafter import Draft
from specpair.core.ops import Verifier, on_accelerator
from specpair.core.sampling import SamplingConfig, make_transform

from .conftest import need

pytestmark = pytest.mark.engine  # torch
torch = need("torch", "hf")

CONFIGS = [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.7, top_k=3),
           SamplingConfig(temperature=1.3, top_p=0.8), SamplingConfig(temperature=1.0,
                                                                      min_p=0.2)]


@pytest.mark.parametrize("config", CONFIGS)
def test_the_transform_is_the_same_on_torch(config):
    from specpair.core.torch_ops import transform_rows

    logits = np.random.default_rng(0).normal(size=(5, 40)).astype(np.float32) * 2
    expect = make_transform(config)(logits)
    got = transform_rows(torch.from_numpy(logits), config).numpy()
    np.testing.assert_allclose(got, expect, atol=1e-6)


def _device_path(config: SamplingConfig):
    from specpair.core.torch_ops import TorchVerifier

    return TorchVerifier(config, AcceptanceRule())


def test_cpu_tensors_take_the_host_path_and_agree_with_it():
    logits = np.random.default_rng(3).normal(size=(3, 50)).astype(np.float32)
    assert not on_accelerator(torch.from_numpy(logits)) and not on_accelerator(logits)
    verifier = Verifier(SamplingConfig(temperature=0.8, top_p=0.9), AcceptanceRule())
    u = np.random.default_rng(4).random((3, 2))
    assert verifier(torch.from_numpy(logits), Draft([1, 2]), u) == verifier(
        logits, Draft([1, 2]), u)


def test_greedy_verification_is_identical_on_torch():
    rng = np.random.default_rng(1)
    verifier = Verifier(SamplingConfig(), AcceptanceRule())
    device = _device_path(SamplingConfig())
    for _ in range(200):
        k = int(rng.integers(0, 6))
        logits = rng.normal(size=(k + 1, 30)).astype(np.float32)
        best = logits.argmax(-1)
        tokens = [int(best[i]) if rng.random() < 0.7 else int(rng.integers(30))
                  for i in range(k)]
        u = rng.random((k + 1, 2))
        assert device(torch.from_numpy(logits), Draft(tokens), u) == verifier(
            logits, Draft(tokens), u)


@pytest.mark.parametrize("with_q", [False, True])
def test_sampled_verification_has_the_same_distribution_on_torch(with_q):
    """The first verified token's distribution, numpy and torch alike, is the target's:
    chi-square at level 0.001 over 6,000 seeded rounds each."""
    v, n = 6, 6000
    rng = np.random.default_rng(2)
    config = SamplingConfig(temperature=1.0, top_p=0.9)
    logits = rng.normal(size=(3, v)).astype(np.float32)
    q = make_transform(SamplingConfig(temperature=1.0))(rng.normal(size=(2, v)))
    p = make_transform(config)(logits)[0].astype(np.float64)  # sums exact to chisquare
    host, device = Verifier(config, AcceptanceRule()), _device_path(config)
    for verifier, array in ((host, logits), (device, torch.from_numpy(logits))):
        counts: Counter = Counter()
        for i in range(n):
            r = np.random.default_rng(i)
            tokens = [int(r.choice(v, p=q[j])) for j in range(2)] if with_q else [1, 2]
            n_acc, nxt = verifier(array, Draft(tokens, q if with_q else None), r.random((3, 2)))
            counts[tokens[0] if n_acc else nxt] += 1
        keep = p > 0
        observed = np.array([counts[t] for t in range(v)])[keep]
        assert chisquare(observed, p[keep] / p[keep].sum() * observed.sum()).pvalue > 1e-3
