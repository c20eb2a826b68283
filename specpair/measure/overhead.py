"""The decode loop's own overhead per verification round (`specpair overhead`).

A GPU target at 5-10 ms a token leaves little room for Python. This runs the real decode loop
against a null target that returns precomputed logits instantly (V = 151,936, Qwen2.5's
vocabulary) and a null drafter that proposes each row's most likely token, so everything timed
is specpair's: proposing, verification (the sampling transform included), bookkeeping and
statistics. Greedy and sampled (T = 0.8, top-p 0.95), K = 1, 4, 8, 16, with numpy logits and
with torch tensors on whatever device is present. Reports milliseconds per round and the share
of a 10 ms target step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.decode import DecodeConfig
from ..core.drafter import Draft, Drafter
from ..core.sampling import SamplingConfig
from ..schedule import decode_steps

VOCAB = 151_936
KS = (1, 4, 8, 16)
STEP_MS = 10.0  # a fast GPU target's step, to put the overhead in proportion
SAMPLED = SamplingConfig(temperature=0.8, top_p=0.95, seed=0)


class NullBackend:
    """A target that costs nothing: row i of every batch is the same precomputed row (peaked
    on a token, as real logits are, with a long tail over the whole vocabulary)."""

    def __init__(self, logits, *, n_ctx: int = 1 << 20) -> None:
        self._logits = logits
        self.n_vocab = int(logits.shape[1])
        self.n_ctx = n_ctx
        self.name = self.path = "null"
        self.device = "null"
        self.eos_ids: frozenset[int] = frozenset()
        self._tokens: list[int] = []

    @property
    def n_past(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[int]:
        return self._tokens

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return [1]

    def token_bytes(self, token: int) -> bytes:
        return b"x"

    def chat_prompt(self, messages) -> str:
        return "x"

    def eval(self, tokens: Sequence[int], *, all_logits: bool = True):
        self._tokens.extend(tokens)
        n = len(tokens) if all_logits else 1
        return self._logits[:n]

    def rewind(self, n_past: int) -> None:
        del self._tokens[n_past:]

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        pass


class NullDrafter(Drafter):
    """Proposes row i's most likely token at draft position i: greedy accepts everything."""

    name = "null"

    def __init__(self, best: Sequence[int]) -> None:
        self._best = list(best)

    def propose(self, context: Sequence[int], k: int) -> Draft:
        return Draft(self._best[:k])


# The shape of real logits: on Qwen2.5-Coder-0.5B (40 greedy positions of a story), the k-th
# most likely token's logit sits about 1.75 ln(k) below the best (1 at k = 2, 4.5 at 10, 9 at
# 100, 12.5 at 1,000, 16.5 at 10,000, the median about 20 below). At T = 0.8 that puts 0.2-0.99
# of the mass on the best token and 1-120 tokens in the top-p 0.95 nucleus, as measured there.
LOGIT_SLOPE = 1.75


def null_logits(rows: int = max(KS) + 1, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = LOGIT_SLOPE * np.log1p(np.arange(VOCAB, dtype=np.float32))
    logits = np.empty((rows, VOCAB), dtype=np.float32)
    for i in range(rows):
        noisy = gaps + rng.normal(scale=0.3, size=VOCAB).astype(np.float32)
        noisy[0] = 0.0
        noisy[1:] = np.maximum(noisy[1:], rng.uniform(0.2, 2.0))  # the best leads by 0.2-2
        logits[i, rng.permutation(VOCAB)] = 20.0 - noisy
    return logits


@dataclass(frozen=True)
class Overhead:
    array: str  # numpy, or torch:<device>
    sampling: str  # greedy or sampled
    k: int
    ms_per_round: float
    verify_ms_per_round: float
    acceptance: float

    def to_dict(self) -> dict:
        return {"array": self.array, "sampling": self.sampling, "k": self.k,
                "ms_per_round": self.ms_per_round,
                "verify_ms_per_round": self.verify_ms_per_round,
                "acceptance": self.acceptance,
                "share_of_10ms_step": self.ms_per_round / STEP_MS}


def measure(logits, array: str, sampling: SamplingConfig, k: int, *, rounds: int) -> Overhead:
    best = [int(i) for i in (logits.argmax(-1).tolist() if hasattr(logits, "tolist")
                             else np.argmax(logits, -1))]
    target = NullBackend(logits)
    config = DecodeConfig(max_tokens=rounds * (k + 1), draft_tokens=k, sampling=sampling)
    # one warm-up generation, then the timed one
    for timed in (False, True):
        t0 = time.perf_counter()
        n = drafted = accepted = 0
        verify = 0.0
        for step in decode_steps(target, NullDrafter(best), [1, 2], config=config,
                                 rng=np.random.default_rng(0)):
            n += 1
            drafted += step.n_drafted
            accepted += step.n_accepted
            verify += step.verify_seconds
        seconds = time.perf_counter() - t0
        if timed:
            return Overhead(array, "greedy" if sampling.greedy else "sampled", k,
                            1000 * seconds / n, 1000 * verify / n,
                            accepted / drafted if drafted else 0.0)
    raise AssertionError("unreachable")


def run(*, ks: Sequence[int] = KS, rounds: int = 200, torch_device: str | None = "auto",
        ) -> list[Overhead]:
    """Every (array kind, sampling, K) combination; torch only where it is installed."""
    base = null_logits()
    arrays: list[tuple[str, object]] = [("numpy", base)]
    if torch_device is not None:
        try:
            import torch
        except ImportError:
            torch = None  # type: ignore[assignment]
        if torch is not None:
            device = torch_device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            arrays.append((f"torch:{device}", torch.as_tensor(base, device=device)))
    out = []
    for name, logits in arrays:
        for sampling in (SamplingConfig(), SAMPLED):
            for k in ks:
                out.append(measure(logits, name, sampling, k, rounds=rounds))
    return out
