"""Drafters propose the next k tokens; the target verifies them.

One protocol: `propose(context, k) -> Draft`. A model drafter returns its distributions `q` (needed
for exact rejection sampling); a drafter without probabilities (n-gram lookup) returns `q=None`
and is verified as if `q` were one-hot on its tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .backends import Backend, sync
from .sampling import SamplingConfig, make_transform, sample


@dataclass(frozen=True)
class Draft:
    tokens: list[int]
    q: np.ndarray | None = None  # [len(tokens), V]: the draft's distribution at each token


class Drafter(Protocol):
    name: str

    def propose(self, context: Sequence[int], k: int) -> Draft:
        """Up to k tokens likely to follow `context` (all tokens so far, prompt included)."""
        ...

    def close(self) -> None: ...


class ModelDrafter:
    """A (small) language model whose tokenizer lines up with the target's."""

    def __init__(
        self, backend: Backend, *, sampling: SamplingConfig, rng: np.random.Generator
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self._transform = None if sampling.greedy else make_transform(sampling)
        self._rng = rng

    def propose(self, context: Sequence[int], k: int) -> Draft:
        # The cache keeps what it shares with `context` (usually everything but the tokens the
        # target rejected or added last round); only the difference is evaluated.
        logits = sync(self.backend, context)[0]
        tokens: list[int] = []
        qs: list[np.ndarray] = []
        for i in range(k):
            if self._transform is None:
                token = int(np.argmax(logits))
            else:
                q = self._transform(logits)
                token = sample(q, self._rng)
                qs.append(q)
            tokens.append(token)
            if i < k - 1:  # the last draft token's logits are never needed
                logits = self.backend.eval([token])[0]
        return Draft(tokens, np.stack(qs) if qs else None)

    def close(self) -> None:
        self.backend.close()
