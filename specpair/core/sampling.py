"""Turning logits into the distribution we sample from, on numpy arrays (the reference; the
torch version in core/torch_ops.py follows it step by step).

One transform, built once from a `SamplingConfig`, is applied alike to the draft's (`q`) and the
target's (`p`) logits: rejection sampling is exact for whatever distribution the target's
transform yields, and the draft proposes best when it samples from the same transform.

Order of operations (documented because engines differ): temperature, softmax, then top-k, top-p
and min-p as filters on that distribution, then renormalise. Greedy (temperature 0) is argmax and
never goes through here.

Speed (measured with `specpair-overhead`, measure/overhead.py): a row is one float32 pass per
step over the vocabulary; top-p sorts only the tokens that can be in the nucleus (those above a
threshold whose excluded mass is provably below 1 - top_p), not all 152k; sampling walks the
cumulative sum of the support only. Rows are transformed one at a time, when verification needs
them (`LazyRows`): a rejection at position 0 never pays for the other k rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidOption

DEFAULT_TEMPERATURE = 0.0
DEFAULT_TOP_K = 0  # 0 = off
DEFAULT_TOP_P = 1.0  # 1 = off
DEFAULT_MIN_P = 0.0  # 0 = off


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = DEFAULT_TOP_K
    top_p: float = DEFAULT_TOP_P
    min_p: float = DEFAULT_MIN_P
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise InvalidOption(f"{{temperature}} must be >= 0 (0 = greedy), got "
                                f"{self.temperature}")
        if self.top_k < 0:
            raise InvalidOption(f"{{top_k}} must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InvalidOption(f"{{top_p}} must be in (0, 1] (1 = off), got {self.top_p}")
        if not 0 <= self.min_p < 1:
            raise InvalidOption(f"{{min_p}} must be in [0, 1) (0 = off), got {self.min_p}")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            # numpy's generators take only non-negative seeds: refused here, before a model loads
            raise InvalidOption(f"{{seed}} must be an integer in [0, 2**64), got {self.seed}")

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
    return np.where(probs >= kth, probs, 0.0).astype(probs.dtype, copy=False)


def _top_p(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (of the row's mass).

    Only tokens above a threshold t can be in that set when the mass below t is less than
    1 - top_p: the most likely tokens reach top_p before any of them is needed. t starts high
    and falls tenfold until that holds (a flat row falls back to sorting everything)."""
    if top_p >= 1.0:
        return probs
    total = float(probs.sum())
    t = float(probs.max()) * 1e-3
    while True:
        idx = np.flatnonzero(probs >= t)  # (a bool mask: nonzero() of floats is slow)
        if total - float(probs[idx].sum()) < (1.0 - top_p) * total or t < 1e-30:
            break
        t *= 0.1
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    cum = np.cumsum(probs[idx], dtype=np.float64)
    n_keep = min(int(np.searchsorted(cum, top_p * total)) + 1, idx.size)
    out = np.zeros_like(probs)
    keep = idx[:n_keep]
    out[keep] = probs[keep]
    return out


def _min_p(probs: np.ndarray, min_p: float) -> np.ndarray:
    if min_p <= 0:
        return probs
    return np.where(probs >= min_p * probs.max(), probs, 0.0).astype(probs.dtype, copy=False)


# After temperature, a token more than CUTOFF below the best has less than e^-20 = 2.1e-9 of its
# weight. With a filter (top-k, top-p, min-p) such tokens are almost never kept, so their
# exponentials are not computed: only their count, which bounds their total mass. Where that
# bound could move the top-p boundary, their mass is computed exactly; where a kept token could
# lie below the cutoff, the whole row is (`_dense_row`). The result is the same distribution as
# the full computation, for a fraction of the exponentials (the main cost of sampling).
CUTOFF = 20.0


@dataclass(frozen=True)
class Sparse:
    """A distribution with few tokens of nonzero probability: their ids (ascending) and
    probabilities, over a vocabulary of `size`."""

    ids: np.ndarray
    probs: np.ndarray
    size: int

    def __getitem__(self, x: int) -> float:
        i = int(np.searchsorted(self.ids, x))
        return float(self.probs[i]) if i < self.ids.size and self.ids[i] == x else 0.0

    def dense(self) -> np.ndarray:
        out = np.zeros(self.size, dtype=np.float32)
        out[self.ids] = self.probs
        return out


Dist = np.ndarray | Sparse  # one row's distribution, dense or sparse


def dense(dist: Dist) -> np.ndarray:
    return dist.dense() if isinstance(dist, Sparse) else dist


def _dense_row(z: np.ndarray, m: float, config: SamplingConfig) -> np.ndarray:
    """The row computed in full: every exponential, then the filters (the reference)."""
    e = z - m
    np.exp(e, out=e)
    p = _min_p(_top_p(_top_k(e, config.top_k), config.top_p), config.min_p)
    p *= 1.0 / p.sum(dtype=np.float64)
    return p


def _filtered_row(logits: np.ndarray, inv_t: np.float32, config: SamplingConfig) -> Dist:
    # only the candidates are scaled and exponentiated; the full row only when it must be
    lmax = float(logits.max())
    cand = np.flatnonzero(logits >= lmax - CUTOFF / inv_t)
    # float64 for the few candidates: thresholds (min-p, top-p) compare exactly
    e = np.exp((logits[cand].astype(np.float64) - lmax) * float(inv_t))  # the best weighs 1
    size = logits.shape[-1]
    low_bound = (size - cand.size) * float(np.exp(-CUTOFF))  # the most the rest can weigh

    def full() -> np.ndarray:
        z = np.multiply(logits, float(inv_t), dtype=np.float64)
        return _dense_row(z, float(z.max()), config)

    if 0 < config.top_k < size:
        if config.top_k > cand.size:
            return full()  # the k-th token lies below the cutoff
        kth = np.partition(e, -config.top_k)[-config.top_k]
        head = np.flatnonzero(e >= kth)  # ties at the k-th are kept, as the reference does
        cand, e, low_bound = cand[head], e[head], 0.0  # top-k dropped the rest
    if config.min_p > 0:  # applied last by the reference, but it only removes tokens below
        keep_min = e >= config.min_p  # min_p of the best, whatever top-p kept before it
    if config.top_p < 1.0:
        total = float(e.sum(dtype=np.float64))
        # only the tokens above t can be in the nucleus once the mass below t is less than
        # 1 - top_p of the whole (the most likely tokens reach top_p first)
        t = 1e-3
        while True:
            head = np.flatnonzero(e >= t)
            below = total - float(e[head].sum(dtype=np.float64)) + low_bound
            if below < (1.0 - config.top_p) * total or t < 1e-12:
                break
            t *= 0.1
        order = head[np.argsort(-e[head], kind="stable")]  # by weight; ties by id
        cum = np.cumsum(e[order], dtype=np.float64)
        n_lo = int(np.searchsorted(cum, config.top_p * total)) + 1
        n_hi = int(np.searchsorted(cum, config.top_p * (total + low_bound))) + 1
        if n_lo != n_hi:  # the tail's exact mass decides the boundary
            rest = logits[logits < lmax - CUTOFF / inv_t]
            low = float(np.exp((rest - np.float32(lmax)) * inv_t).sum(dtype=np.float64))
            n_hi = int(np.searchsorted(cum, config.top_p * (total + low))) + 1
        if n_hi > order.size:
            return full()  # the nucleus reaches below what was looked at
        keep = np.zeros(e.size, dtype=bool)
        keep[order[:n_hi]] = True
    elif low_bound and config.min_p < np.exp(-CUTOFF):
        return full()  # tokens below the cutoff keep their mass
    else:
        keep = np.ones(e.size, dtype=bool)
    if config.min_p > 0:
        keep &= keep_min
    vals = e[keep]
    return Sparse(cand[keep], vals / vals.sum(dtype=np.float64), size)


def make_row_transform(config: SamplingConfig) -> Callable[[np.ndarray], Dist]:
    """Logits [V] -> the config's distribution of one row (dense, or Sparse with filters)."""
    if config.greedy:
        raise ValueError("greedy decoding uses argmax; there is no distribution to build")
    inv_t = np.float32(1.0 / config.temperature)
    filtered = config.top_k > 0 or config.top_p < 1.0 or config.min_p > 0

    def row(logits: np.ndarray) -> Dist:
        logits = np.asarray(logits)  # engines give float32; tests may give float64: kept
        if filtered:
            return _filtered_row(logits, inv_t, config)
        z = np.multiply(logits, inv_t, dtype=np.result_type(logits.dtype, np.float32))
        return _dense_row(z, float(z.max()), config)

    return row


def make_transform(config: SamplingConfig) -> Transform:
    """Logits [n, V] (or [V]) -> probabilities of the same shape, row by row."""
    row = make_row_transform(config)

    def transform(logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits)
        if logits.ndim == 1:
            return dense(row(logits))
        return np.stack([dense(row(r)) for r in logits])

    return transform


class LazyRows:
    """The transform of logits [n, V], one row at a time when asked (verification reads row
    i only if draft tokens 0..i-1 were accepted). Indexable like the array it stands for."""

    def __init__(self, logits: np.ndarray, row: Callable[[np.ndarray], Dist]) -> None:
        self._logits, self._row = logits, row
        self._done: dict[int, Dist] = {}

    def __len__(self) -> int:
        return len(self._logits)

    def __getitem__(self, i: int) -> Dist:
        if i not in self._done:
            self._done[i] = self._row(self._logits[i])
        return self._done[i]


_BLOCK = 1024  # inverse CDF in two levels: block totals, then one block's cumulative sum


def sample(probs: Dist, u: float | np.random.Generator) -> int:
    """The token at uniform `u` in the inverse CDF of `probs` (token ids in order). One uniform
    per draw, so the same u gives the same token: decoding that draws position j's token with
    position j's uniform gives the same output whatever was drafted.

    In two levels, because a float64 cumulative sum over 152k float32 entries costs 2.4 ms on a
    2-core CPU where block sums cost 0.05 ms: the block holding u, then the token in it. Sums
    are float64; zero-probability tokens are never returned."""
    if isinstance(u, np.random.Generator):
        u = u.random()
    if isinstance(probs, Sparse):
        cdf = np.cumsum(probs.probs, dtype=np.float64)
        i = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), cdf.size - 1)
        return int(probs.ids[i])
    n = probs.size
    n_full = n // _BLOCK
    totals = probs[: n_full * _BLOCK].reshape(n_full, _BLOCK).sum(axis=1, dtype=np.float64)
    if n_full * _BLOCK < n:
        totals = np.append(totals, probs[n_full * _BLOCK:].sum(dtype=np.float64))
    cum = np.cumsum(totals)
    at = u * cum[-1]
    b = min(int(np.searchsorted(cum, at, side="right")), len(cum) - 1)
    block = probs[b * _BLOCK:(b + 1) * _BLOCK]
    within = np.cumsum(block, dtype=np.float64) + (cum[b - 1] if b else 0.0)
    i = int(np.searchsorted(within, at, side="right"))
    if i >= block.size:  # u at the very top (rounding): the last token with mass
        nonzero = np.flatnonzero(probs > 0)
        return int(nonzero[-1]) if nonzero.size else int(np.argmax(probs))
    return b * _BLOCK + i


def inverse_cdf_hits(probs: Dist, x: int, u: float) -> bool:
    """Whether `sample(probs, u)` is x (computed the same way, so the two always agree)."""
    return probs[x] > 0 and sample(probs, u) == x
