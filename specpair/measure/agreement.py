"""Do two greedy outputs agree? Exactly, or up to a numerical near-tie of the target.

llama.cpp evaluates a batch of tokens with different kernels than a single token, so the same
position can get slightly different logits in plain decoding (one token at a time) and in
verification (a batch). Where the target's two best tokens are nearly tied, the argmax can flip
and the outputs part ways from there on. That is not a verification bug; a flip where the target
was confident would be.

NEAR_TIE_MARGIN, measured (scripts/near_tie_study.py, bench-out/near_tie.json): Qwen2.5-Coder-1.5B
Q4_K_M, llama-cpp-python 0.3.36 built without AMX, 2 threads, on the project's 2-core AVX-512
Xeon (Nov 2026). 1,901 positions of greedy output (story x3, edit x3, code x2 prompts, up to 250
tokens each; 3 ended early at EOS, so short of the 2,000 asked) decoded one token at a time,
then re-evaluated in windows of 2, 3, 4, 5 and 9 tokens (K = 1..4 and 8). The largest move of
any of a position's ten best logits relative to its best one:
    batch  mean   p99    p99.9  max
      2    0.212  0.458  0.565  0.632
      3    0.212  0.458  0.565  0.632
      4    0.216  0.471  0.567  0.624
      5    0.215  0.482  0.589  0.607
      9    0.215  0.502  0.652  0.698
On this CPU even batches of 2 use other kernels than single tokens (on the AVX2 EPYC machines
batches of up to 3 matched exactly and the top-2 margin moved by at most 0.34 over 150 story
tokens, which had set the threshold at 0.5). A token within NEAR_TIE_MARGIN = 1.0 logits of the
target's best is a numerical near-tie: 1.4x the largest move measured, and below the margins of
confident tokens (typically 1.5-8). The bench also reports the largest deficit it let pass and
warns when one exceeds CLOSE_TO_THRESHOLD of the threshold (the study's p99.9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.backend import Backend, sync
from ..core.ops import to_numpy

NEAR_TIE_MARGIN = 1.0
# A token whose deficit (the target's best logit minus its own) exceeds this share of the
# threshold is reported: it passed, but by less than the measurement's headroom.
CLOSE_TO_THRESHOLD = 0.65
_CHECK_CHUNK = 128  # rows of logits held at once by the every-token check (128 x 152k floats)


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
    logits = to_numpy(sync(target, [*prompt, *reference[:position]]))[0]
    margin = top2_margin(logits)
    return Agreement(identical=False, position=position, margin=margin,
                     near_tie=margin < NEAR_TIE_MARGIN)


@dataclass(frozen=True)
class TokenCheck:
    """Every token of a greedy output checked against the target, given its own prefix.

    Each token must be the target's argmax there, or lie within NEAR_TIE_MARGIN logits of it (a
    numerical near-tie between batch and single-token kernels). `bad` lists the positions of
    tokens the target would not have produced: a correct verifier never yields one."""

    checked: int
    argmax: int
    near_tie: int
    bad: tuple[int, ...]
    worst_deficit: float  # the largest (best logit - token's logit) among accepted tokens
    close: tuple[int, ...]  # positions whose deficit exceeds CLOSE_TO_THRESHOLD x threshold

    @property
    def ok(self) -> bool:
        return not self.bad

    def describe(self) -> str:
        line = (f"{self.checked} tokens checked: {self.argmax} argmax, {self.near_tie} within "
                f"a near-tie, {len(self.bad)} bad")
        if self.bad:
            line += f" (first at new token {self.bad[0]})"
        if self.close:
            line += (f"; {len(self.close)} near-tie(s) within "
                     f"{(1 - CLOSE_TO_THRESHOLD) * NEAR_TIE_MARGIN:.2f} of the "
                     f"{NEAR_TIE_MARGIN} threshold (worst deficit {self.worst_deficit:.3f}): "
                     "the threshold's headroom is thin here")
        return line

    def to_dict(self) -> dict:
        return {"checked": self.checked, "argmax": self.argmax, "near_tie": self.near_tie,
                "bad": list(self.bad), "worst_deficit": self.worst_deficit,
                "close": list(self.close), "ok": self.ok}


def check_tokens(target: Backend, prompt: Sequence[int], output: Sequence[int]) -> TokenCheck:
    """Check every token of a greedy `output` of `prompt` with one batched re-evaluation (in
    chunks of _CHECK_CHUNK rows, to bound memory). Uses, and leaves changed, the target's
    cache."""
    deficits: list[float] = []
    if output:
        rows = to_numpy(sync(target, prompt))  # the row that predicts output[0]
        deficits += _deficits(rows, output[:1])
        for lo in range(0, len(output) - 1, _CHECK_CHUNK):
            chunk = list(output[lo : lo + _CHECK_CHUNK])
            if lo + len(chunk) >= len(output):
                chunk = chunk[:-1]  # the last token predicts nothing we need
            if chunk:
                rows = to_numpy(target.eval(chunk))
                deficits += _deficits(rows, output[lo + 1 : lo + 1 + len(chunk)])
    d = np.asarray(deficits)
    bad = tuple(int(i) for i in np.flatnonzero(d >= NEAR_TIE_MARGIN))
    near = (d > 0) & (d < NEAR_TIE_MARGIN)
    close = tuple(int(i) for i in np.flatnonzero(near & (d > CLOSE_TO_THRESHOLD
                                                          * NEAR_TIE_MARGIN)))
    ok_d = d[d < NEAR_TIE_MARGIN]
    return TokenCheck(checked=len(d), argmax=int((d == 0).sum()), near_tie=int(near.sum()),
                      bad=bad, worst_deficit=float(ok_d.max()) if ok_d.size else 0.0,
                      close=close)


def _deficits(rows: np.ndarray, tokens: Sequence[int]) -> list[float]:
    best = rows.max(axis=-1)
    own = rows[np.arange(len(tokens)), np.asarray(tokens)]
    return (best - own).astype(float).tolist()
