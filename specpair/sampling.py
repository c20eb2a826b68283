"""Turning logits into the distribution we sample from.

One transform, built once from a `SamplingConfig`, is applied alike to the draft's (`q`) and the
target's (`p`) logits: rejection sampling is exact for whatever distribution the target's
transform yields, and the draft proposes best when it samples from the same transform.

Order of operations (documented because engines differ): temperature, softmax, then top-k, top-p
and min-p as filters on that distribution, then renormalise. Greedy (temperature 0) is argmax and
never goes through here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import SpecpairError

DEFAULT_TEMPERATURE = 0.0
DEFAULT_TOP_K = 0  # 0 = off
DEFAULT_TOP_P = 1.0  # 1 = off
DEFAULT_MIN_P = 0.0  # 0 = off

# top-p only needs the head of the distribution sorted; look at this many candidates first and
# sort everything only when they do not reach top_p (sorting 152k floats per row costs ~10 ms).
_TOP_P_HEAD = 2048


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = DEFAULT_TOP_K
    top_p: float = DEFAULT_TOP_P
    min_p: float = DEFAULT_MIN_P
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise SpecpairError(f"--temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise SpecpairError(f"--top-k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise SpecpairError(f"--top-p must be in (0, 1] (1 = off), got {self.top_p}")
        if not 0 <= self.min_p < 1:
            raise SpecpairError(f"--min-p must be in [0, 1) (0 = off), got {self.min_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


Transform = Callable[[np.ndarray], np.ndarray]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _top_k(probs: np.ndarray, k: int) -> np.ndarray:
    if k <= 0 or k >= probs.shape[-1]:
        return probs
    kth = np.partition(probs, -k)[-k]
    return np.where(probs >= kth, probs, 0.0)


def _top_p(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose mass reaches top_p."""
    if top_p >= 1.0:
        return probs
    head = min(_TOP_P_HEAD, probs.shape[-1])
    idx = np.argpartition(probs, -head)[-head:]
    if probs[idx].sum() < top_p:  # the head is not enough: sort everything
        idx = np.arange(probs.shape[-1])
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    cum = np.cumsum(probs[idx])
    n_keep = min(int(np.searchsorted(cum, top_p * probs.sum())) + 1, idx.size)
    out = np.zeros_like(probs)
    keep = idx[:n_keep]
    out[keep] = probs[keep]
    return out


def _min_p(probs: np.ndarray, min_p: float) -> np.ndarray:
    if min_p <= 0:
        return probs
    return np.where(probs >= min_p * probs.max(), probs, 0.0)


def make_transform(config: SamplingConfig) -> Transform:
    """Return a function mapping logits [n, V] (or [V]) to probabilities of the same shape."""
    if config.greedy:
        raise ValueError("greedy decoding uses argmax; there is no distribution to build")

    def transform(logits: np.ndarray) -> np.ndarray:
        probs = softmax(np.asarray(logits, dtype=np.float64) / config.temperature)
        rows = probs.reshape(-1, probs.shape[-1])
        for i in range(rows.shape[0]):
            row = _min_p(_top_p(_top_k(rows[i], config.top_k), config.top_p), config.min_p)
            rows[i] = row / row.sum()
        return rows.reshape(probs.shape)

    return transform


def sample(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Draw one token id from a probability vector (inverse CDF: one uniform per draw)."""
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), probs.size - 1))
