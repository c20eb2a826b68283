"""The decode loop: plain and speculative decoding are the same loop (plain is k = 0).

`decode_steps` is a generator of `Step`s. `generate_text` wraps it for callers that want text:
incremental UTF-8 decoding, stop strings, and folding steps into `DecodeStats`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .backends import Backend, sync
from .drafters import Draft, Drafter
from .errors import SpecpairError
from .sampling import SamplingConfig, make_transform
from .stats import DecodeStats, Step
from .text import TextStream
from .verify import verify_greedy, verify_sampled

DEFAULT_MAX_TOKENS = 256
DEFAULT_DRAFT_TOKENS = 4
MAX_DRAFT_TOKENS = 64


@dataclass(frozen=True, kw_only=True)
class DecodeConfig:
    max_tokens: int = DEFAULT_MAX_TOKENS
    draft_tokens: int = DEFAULT_DRAFT_TOKENS  # k; ignored without a drafter
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise SpecpairError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if not 1 <= self.draft_tokens <= MAX_DRAFT_TOKENS:
            raise SpecpairError(
                f"--draft-tokens must be between 1 and {MAX_DRAFT_TOKENS}, got {self.draft_tokens}"
            )


def check_prompt_fits(target: Backend, n_prompt: int) -> None:
    if n_prompt == 0:
        raise SpecpairError("the prompt is empty: give at least one token of text")
    if n_prompt >= target.n_ctx:
        raise SpecpairError(
            f"the prompt is {n_prompt} tokens but the context holds {target.n_ctx}: "
            "shorten the prompt or raise --n-ctx"
        )


def decode_steps(
    target: Backend,
    drafter: Drafter | None,
    prompt: Sequence[int],
    *,
    config: DecodeConfig,
    rng: np.random.Generator,
) -> Iterator[Step]:
    """Decode after `prompt`, one verification round per step, until EOS, max_tokens or a full
    context. Stopping the generator early (close, break) leaves the target's cache consistent."""
    check_prompt_fits(target, len(prompt))
    sampling = config.sampling
    transform = None if sampling.greedy else make_transform(sampling)
    committed = list(prompt)

    # Cache invariant, the one piece of arithmetic in this loop: the target's cache holds
    # committed[:-1]. The last committed token is "pending": it goes first in the next batch, so
    # one eval of [pending, d_0 .. d_{k-1}] returns k+1 rows, row i being the target's
    # distribution for draft token i and row k the bonus position. After accepting n draft tokens
    # and one target token, the cache must again hold committed[:-1]: rewinding to that length
    # drops the rejected drafts' slots (they are overwritten later, never copied).
    t0 = time.perf_counter()
    if len(committed) > 1:
        sync(target, committed[:-1])
    prefill_seconds = time.perf_counter() - t0

    n_new = 0
    try:
        while True:
            t_start = time.perf_counter()
            room = target.n_ctx - len(committed)  # cache slots left for pending + drafts
            if room < 0:
                finish = "context"
                break
            k = min(config.draft_tokens, config.max_tokens - n_new - 1, room) if drafter else 0
            draft = drafter.propose(committed, k) if k > 0 else Draft([])
            t_drafted = time.perf_counter()

            logits = target.eval([committed[-1], *draft.tokens])
            t_verified = time.perf_counter()
            if transform is None:
                n_acc, next_token = verify_greedy(logits, draft.tokens)
            else:
                q = None if draft.q is None else _match_width(draft.q, logits.shape[-1])
                n_acc, next_token = verify_sampled(transform(logits), q, draft.tokens, rng)

            new = [*draft.tokens[:n_acc], next_token]
            finish = None
            for i, token in enumerate(new):
                if token in target.eos_ids:
                    new, finish = new[: i + 1], "eos"
                    n_acc = min(n_acc, i + 1)  # an accepted draft EOS still counts as accepted
                    break
            committed += new
            n_new += len(new)
            target.rewind(len(committed) - 1)
            if finish is None and n_new >= config.max_tokens:
                finish = "max_tokens"
            yield Step(
                tokens=new,
                n_drafted=len(draft.tokens),
                n_accepted=n_acc,
                draft_seconds=t_drafted - t_start,
                target_seconds=t_verified - t_drafted,
                seconds=time.perf_counter() - t_start,
                prefill_seconds=prefill_seconds,
                finish=finish,
            )
            prefill_seconds = 0.0
            if finish:
                return
        yield Step(tokens=[], n_drafted=0, n_accepted=0, draft_seconds=0.0, target_seconds=0.0,
                   seconds=0.0, prefill_seconds=prefill_seconds, finish=finish)
    finally:
        # Interrupted inside a round (Ctrl-C during eval): drop whatever it added.
        if len(target.tokens) > len(committed) - 1:
            target.rewind(len(committed) - 1)


def _match_width(q: np.ndarray, n_vocab: int) -> np.ndarray:
    """Draft and target logits may differ in width only by padding rows that no tokenizer
    produces (the pair passed the tokenizer check): pad or cut q to the target's width."""
    if q.shape[-1] == n_vocab:
        return q
    if q.shape[-1] > n_vocab:
        return q[:, :n_vocab]
    return np.pad(q, ((0, 0), (0, n_vocab - q.shape[-1])))


def generate_text(
    target: Backend,
    drafter: Drafter | None,
    prompt: Sequence[int],
    *,
    config: DecodeConfig,
    rng: np.random.Generator,
    stats: DecodeStats,
) -> Iterator[tuple[str, Step]]:
    """Yield (new text, step) as decoding goes and fold every step into `stats`; honours stop
    strings (text may be empty while a possible stop string is held back)."""
    stats.prompt_tokens = len(prompt)
    text = TextStream(target, stop=config.stop)
    steps = decode_steps(target, drafter, prompt, config=config, rng=rng)
    try:
        for step in steps:
            stats.add(step)
            chunk = text.add(step.tokens)
            if text.stopped:
                stats.finish = "stop"
                yield chunk + text.flush(), step
                break
            if step.finish:
                chunk += text.flush()
            yield chunk, step
    finally:
        steps.close()
