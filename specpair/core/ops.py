"""Verification as the decode loop calls it: one `Verifier` per generation, built once from the
sampling config and the acceptance rule, applied to whatever array the target returned: numpy
(llama.cpp, or any engine that copies logits to the host) through core/verify.py, or a torch
tensor on the target's device through core/torch_ops.py, so that logits never leave the GPU
(only the accepted count and the next token do).

Randomness: two uniforms per output position (`PositionUniforms`), drawn from the generation's
seed in position order, so position j gets the same uniforms whatever was drafted before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .acceptance import AcceptanceRule, verify_lossy
from .drafter import Draft
from .sampling import LazyRows, SamplingConfig, dense, make_row_transform, sample
from .verify import verify_greedy, verify_sampled


def to_numpy(array: Any) -> np.ndarray | None:
    """A numpy view of an array from any engine (a torch tensor is copied to the host)."""
    if array is None or isinstance(array, np.ndarray):
        return array
    return array.detach().float().cpu().numpy()


def on_accelerator(array: Any) -> bool:
    """Whether an array lives on a GPU (or MPS): there the torch path keeps logits on the
    device. A CPU tensor goes to numpy (float32: no copy), whose top-p sorts only the nucleus:
    torch's full sort of a 152k row made a sampled K=4 round cost 69 ms on a 2-core EPYC
    against 1.5 ms (`specpair overhead`)."""
    return not isinstance(array, np.ndarray) and array.device.type != "cpu"


class PositionUniforms:
    """Two uniforms for each output position j = 0, 1, ..., drawn in order from a generator of
    their own (spawned from the caller's, so a drafter sampling from the caller's generator
    does not shift them)."""

    CHUNK = 1024

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng.spawn(1)[0]
        self._u = np.empty((0, 2))

    def at(self, start: int, n: int) -> np.ndarray:
        while len(self._u) < start + n:
            self._u = np.concatenate([self._u, self._rng.random((self.CHUNK, 2))])
        return self._u[start:start + n]


class Verifier:
    """(n_accepted, next_token) for one round, exactly (or by the opt-in lossy rule)."""

    def __init__(self, sampling: SamplingConfig, acceptance: AcceptanceRule) -> None:
        self.sampling, self.acceptance = sampling, acceptance
        self._row = None if sampling.greedy else make_row_transform(sampling)
        self._torch: Any = None

    def __call__(self, logits: Any, draft: Draft, u: np.ndarray) -> tuple[int, int]:
        if on_accelerator(logits) and self.acceptance.exact:
            if self._torch is None:
                from .torch_ops import TorchVerifier

                self._torch = TorchVerifier(self.sampling, self.acceptance)
            return self._torch(logits, draft, u)
        # the host path: numpy logits, CPU tensors, and the opt-in lossy rules (on copies)
        return self.numpy(to_numpy(logits), draft.tokens, to_numpy(draft.q), u)

    def numpy(self, logits: np.ndarray, tokens: Sequence[int], q: np.ndarray | None,
              u: np.ndarray) -> tuple[int, int]:
        probs = None if self._row is None else LazyRows(logits, self._row)
        if not self.acceptance.exact:
            return verify_lossy(self.acceptance, logits, probs, q, tokens, u)
        if probs is None:
            return verify_greedy(logits, tokens)
        return verify_sampled(probs, q, tokens, u)


def argmax(row: Any) -> int:
    """The most likely token of one row of logits (numpy or torch)."""
    return int(row.argmax())


def top_prob(row: Any) -> float:
    """The largest probability of softmax(row), for numpy or torch rows."""
    if isinstance(row, np.ndarray):
        return float(1.0 / np.exp(row - row.max(), dtype=np.float64).sum())
    return float(1.0 / (row.float() - row.max()).exp().sum())


def stack(rows: Sequence[Any]) -> Any:
    """Rows of distributions as one array of the rows' own kind."""
    if isinstance(rows[0], np.ndarray):
        return np.stack(rows)
    import torch

    return torch.stack(list(rows))


class RowSampler:
    """Sample one token from one row of logits with a given uniform, through the sampling
    transform: (token, its distribution q as a dense row), on numpy or on the device."""

    def __init__(self, sampling: SamplingConfig) -> None:
        self.sampling = sampling
        self._row = make_row_transform(sampling)

    def __call__(self, logits: Any, u: float) -> tuple[int, Any]:
        if not on_accelerator(logits):
            q = dense(self._row(to_numpy(logits)))
            return sample(q, u), q
        import torch

        from .torch_ops import sample_rows, transform_rows

        q = transform_rows(logits[None], self.sampling)[0]
        token = int(sample_rows(q[None], torch.tensor([u], device=q.device))[0])
        return token, q
