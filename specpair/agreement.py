"""Do two greedy outputs agree? Exactly, or up to a numerical near-tie of the target.

llama.cpp evaluates a batch of tokens with different kernels than a single token, so the same
position can get slightly different logits in plain decoding (one token at a time) and in
verification (a batch). Where the target's two best tokens are nearly tied, the argmax can flip
and the outputs part ways from there on. That is not a verification bug; a flip where the target
was confident would be.

NEAR_TIE_MARGIN: on Qwen2.5-Coder-1.5B Q4_K_M (2-core AVX2, llama-cpp-python 0.3.36) we measured
how much the top-2 logit margin moves between single-token and batch evaluation over 150 story
tokens: mean 0.09, 99th percentile 0.27-0.32, max 0.34 logits (batches of 5 and 8; batches of up
to 3 matched single tokens exactly). A flip is a near-tie when the margin is below 0.5: above
anything measured, and well below the margins of confident tokens (typically 1.5-8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .backends import Backend, sync

NEAR_TIE_MARGIN = 0.5


@dataclass(frozen=True)
class Agreement:
    identical: bool
    position: int | None = None  # index (in new tokens) of the first divergence
    margin: float | None = None  # the target's top-2 logit margin there
    near_tie: bool = False

    @property
    def ok(self) -> bool:
        """Outputs agree, exactly or up to a numerical near-tie."""
        return self.identical or self.near_tie

    def describe(self) -> str:
        if self.identical:
            return "identical"
        kind = "a numerical near-tie" if self.near_tie else "NOT a near-tie"
        return (f"diverge at new token {self.position}, where the target's top-2 margin is "
                f"{self.margin:.3f} logits ({kind}, threshold {NEAR_TIE_MARGIN})")

    def to_dict(self) -> dict:
        return {"identical": self.identical, "position": self.position, "margin": self.margin,
                "near_tie": self.near_tie, "ok": self.ok}


def top2_margin(logits: np.ndarray) -> float:
    top = np.partition(logits, -2)[-2:]
    return float(top[1] - top[0])


def compare_outputs(
    target: Backend, prompt: Sequence[int], reference: Sequence[int], other: Sequence[int]
) -> Agreement:
    """Compare two greedy continuations of `prompt`; at the first divergence, ask the target
    for its margin there. (Uses, and leaves changed, the target's cache.)"""
    n = min(len(reference), len(other))
    position = next((i for i in range(n) if reference[i] != other[i]), None)
    if position is None:
        return Agreement(identical=True)  # equal, or one stopped earlier (max tokens)
    logits = sync(target, [*prompt, *reference[:position]])[0]
    margin = top2_margin(logits)
    return Agreement(identical=False, position=position, margin=margin,
                     near_tie=margin < NEAR_TIE_MARGIN)
