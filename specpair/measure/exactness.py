"""How far llama.cpp's batched evaluation moves the target's sampling distribution on this machine
(`specpair exactness`).

Speculative decoding evaluates a position inside a batch (the pending token and the drafts, or
a prompt), plain decoding evaluates it alone; llama.cpp uses other kernels for other batch sizes,
so the two logits differ in the last bits, and more for larger batches. Sampled verification is
exact for the distribution it is given: speculative sampling therefore matches plain sampling up
to the total-variation distance between these two distributions, position by position. This
measures that distance, with the sampling transform the user would use: for each batch size n,
every row of a batch of n is compared with the same position evaluated one token at a time, and
the last row of a prompt prefill with the same position reached token by token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.backend import Backend, sync
from ..core.ops import to_numpy
from ..core.sampling import SamplingConfig, make_transform


@dataclass(frozen=True)
class Distance:
    what: str  # "batch of 5", "prefill of 40"
    positions: int
    mean_tv: float
    max_tv: float

    def to_dict(self) -> dict:
        return {"what": self.what, "positions": self.positions, "mean_tv": self.mean_tv,
                "max_tv": self.max_tv}


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p.astype(np.float64) - q.astype(np.float64)).sum())


def measure(target: Backend, prompt: Sequence[int], continuation: Sequence[int], *,
            sampling: SamplingConfig, batch_sizes: Sequence[int] = (2, 5, 9, 17),
            prefill: int = 40) -> list[Distance]:
    """TV distances for rows of batches of each size along `continuation` after `prompt`, and
    for the last row of a `prefill`-token prompt."""
    transform = make_transform(sampling)
    out = []
    for n in batch_sizes:
        tvs = []
        for start in range(0, len(continuation) - n + 1, n):
            chunk = list(continuation[start:start + n])
            prefix = [*prompt, *continuation[:start]]
            sync(target, [*prefix, chunk[0]])
            target.rewind(len(prefix))
            batched = to_numpy(target.eval(chunk))
            target.rewind(len(prefix))
            single = np.stack([to_numpy(target.eval([t]))[0] for t in chunk])
            tvs += [total_variation(transform(a), transform(b))
                    for a, b in zip(batched, single)]
        if tvs:
            out.append(Distance(f"rows of a batch of {n}", len(tvs), float(np.mean(tvs)),
                                float(np.max(tvs))))
    text = [*prompt, *continuation][:prefill]
    if len(text) == prefill:
        target.rewind(0)
        last = to_numpy(target.eval(text, all_logits=False))[0]
        target.rewind(0)
        for t in text:
            alone = to_numpy(target.eval([t]))[0]
        out.append(Distance(f"last row of a {prefill}-token prefill", 1,
                            total_variation(transform(last), transform(alone)),
                            total_variation(transform(last), transform(alone))))
    target.rewind(0)
    return out
