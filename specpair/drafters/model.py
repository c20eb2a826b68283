"""A (small) language model as the drafter: it proposes its own greedy or sampled
continuation, with its distributions q for exact rejection sampling."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ..core.backend import Backend, common_prefix
from ..core.drafter import Draft, Drafter
from ..core.ops import RowSampler, argmax, stack, top_prob
from ..core.sampling import SamplingConfig
from ..errors import InvalidOption

# Stop drafting when the draft's top probability falls below this (CLI default). Measured on the
# story suite, K = 4, 0.5B -> 1.5B: 0 gave 0.46x plain, 0.4 gave 0.60x, 0.7 gave 0.62x
# (docs/MEASUREMENTS.md); llama.cpp's own default is of the same order.
DEFAULT_DRAFT_P_MIN = 0.7


class ModelDrafter(Drafter):
    """A (small) language model whose tokenizer lines up with the target's.

    Its cache follows the context by position: within a generation each context extends the
    last (core/drafter.py), so catching up compares only the few tokens after the last
    proposal, not the whole history. The catch-up (the tokens committed since, but the last) is
    timed apart as `sync_seconds`; every drafted token then costs one single-token evaluation,
    the first one included, which is what a cost per drafted token measures."""

    def __init__(
        self, backend: Backend, *, sampling: SamplingConfig, rng: np.random.Generator,
        p_min: float = 0.0, clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not 0 <= p_min < 1:
            raise InvalidOption(f"{{draft_p_min}} must be in [0, 1) (0 = off), got {p_min}")
        self.backend = backend
        self.name = backend.name
        self.p_min = p_min
        self._sample = None if sampling.greedy else RowSampler(sampling)
        self._rng = rng
        self.sync_seconds = 0.0
        self._clock = clock  # the decode loop's clock (tests pass a simulated one)
        self._known: int | None = None  # context tokens known to be in the cache, or None

    def begin(self, prompt: Sequence[int]) -> None:
        self._known = None  # a new generation: compare the cache with it once

    def _catch_up(self, context: Sequence[int]) -> None:
        """Bring the cache to context[:-1] (the last token is evaluated as the first draft
        step). Within a generation only the tail after the last proposal can differ."""
        b = self.backend
        if self._known is None:
            n = common_prefix(b.tokens, context[:-1])
        else:
            base = min(self._known, b.n_past, len(context) - 1)
            n = base + common_prefix(b.tokens[base:], context[base:-1])
        b.rewind(n)
        if n < len(context) - 1:
            b.eval(context[n:-1], all_logits=False)

    def propose(self, context: Sequence[int], k: int) -> Draft:
        b = self.backend
        # the cache holds context[:-1]; the last token and k - 1 drafts are then evaluated
        k = min(k, b.n_ctx - len(context) + 1)
        if k <= 0 or not context:
            return Draft([])  # the draft's context is full: no proposal (decoding goes on)
        t0 = self._clock()
        self._catch_up(context)
        b.synchronize()
        self.sync_seconds = self._clock() - t0
        logits = b.eval([context[-1]])[0]
        self._known = len(context)
        tokens: list[int] = []
        qs: list = []
        for i in range(k):
            if self.p_min and top_prob(logits) < self.p_min:
                break  # the draft is unsure: a guess here is likely rejected, stop drafting
            if self._sample is None:
                token = argmax(logits)
            else:
                token, q = self._sample(logits, float(self._rng.random()))
                qs.append(q)
            tokens.append(token)
            if i < k - 1:  # the last draft token's logits are never needed
                logits = b.eval([token])[0]
        b.synchronize()  # the loop reads its clock next: drafting's time is the compute
        return Draft(tokens, stack(qs) if qs else None)

    # no close(): the backend is its loader's (the pair's Resolver keeps it for the next call,
    # LlamaDraft closes its own); a drafter lives for one generation
