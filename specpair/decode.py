"""The decode loop: plain and speculative decoding are the same loop (plain is k = 0).

`decode_steps` is a generator of `Step`s. `generate_text` wraps it for callers that want text:
incremental UTF-8 decoding, stop strings, and folding steps into `DecodeStats`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .backends import Backend, sync
from .drafters import Draft, Drafter, restricted
from .errors import SpecpairError
from .lossy import AcceptanceRule, verify_lossy
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
    # exact (the default) keeps the target's output; the others are opt-in and LOSSY (lossy.py)
    acceptance: AcceptanceRule = field(default_factory=AcceptanceRule)

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
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[Step]:
    """Decode after `prompt`, one verification round per step, until EOS, max_tokens or a full
    context. Stopping the generator early (close, break) leaves the target's cache consistent.

    A drafter that learns from the rounds (adaptive.py) has an `observe(step)` method; it is
    called after every round. `clock` times the rounds (tests pass a simulated one)."""
    check_prompt_fits(target, len(prompt))
    observe = getattr(drafter, "observe", None)
    sampling = config.sampling
    transform = None if sampling.greedy else make_transform(sampling)
    committed = list(prompt)

    # Cache invariant, the one piece of arithmetic in this loop: the target's cache holds
    # committed[:-1]. The last committed token is "pending": it goes first in the next batch, so
    # one eval of [pending, d_0 .. d_{k-1}] returns k+1 rows, row i being the target's
    # distribution for draft token i and row k the bonus position. After accepting n draft tokens
    # and one target token, the cache must again hold committed[:-1]: rewinding to that length
    # drops the rejected drafts' slots (they are overwritten later, never copied).
    # A one-token prompt leaves nothing to evaluate, but the cache may still hold an earlier
    # decode's tokens: empty it, or the next round is conditioned on a stale context.
    t0 = clock()
    if len(committed) > 1:
        sync(target, committed[:-1])
    else:
        target.rewind(0)
    prefill_seconds = clock() - t0

    n_new = 0
    try:
        while True:
            t_start = clock()
            room = target.n_ctx - len(committed)  # cache slots left for pending + drafts
            if room < 0:
                finish = "context"
                break
            k = min(config.draft_tokens, config.max_tokens - n_new - 1, room) if drafter else 0
            draft = drafter.propose(committed, k) if k > 0 else Draft([])
            draft = fit_to_vocab(draft, target.n_vocab)
            t_drafted = clock()

            logits = target.eval([committed[-1], *draft.tokens])
            t_verified = clock()
            if not config.acceptance.exact:
                probs = None if transform is None else transform(logits)
                n_acc, next_token = verify_lossy(config.acceptance, logits, probs, draft.q,
                                                 draft.tokens, rng)
            elif transform is None:
                n_acc, next_token = verify_greedy(logits, draft.tokens)
            else:
                n_acc, next_token = verify_sampled(transform(logits), draft.q, draft.tokens, rng)

            new = [*draft.tokens[:n_acc], next_token]
            n_judged = min(n_acc + 1, len(draft.tokens))
            finish = None
            for i, token in enumerate(new):
                if token in target.eos_ids:
                    new, finish = new[: i + 1], "eos"
                    if i < n_acc:  # an accepted draft EOS: it counts as accepted, and the
                        n_acc = n_judged = i + 1  # draft positions after it were never judged
                    break
            committed += new
            n_new += len(new)
            target.rewind(len(committed) - 1)
            if finish is None and n_new >= config.max_tokens:
                finish = "max_tokens"
            step = Step(
                tokens=new,
                n_drafted=len(draft.tokens),
                n_accepted=n_acc,
                n_judged=n_judged,
                draft_seconds=t_drafted - t_start,
                target_seconds=t_verified - t_drafted,
                seconds=clock() - t_start,
                prefill_seconds=prefill_seconds,
                finish=finish,
            )
            if observe is not None:
                observe(step)
            yield step
            prefill_seconds = 0.0
            if finish:
                return
        yield Step(tokens=[], n_drafted=0, n_accepted=0, draft_seconds=0.0, target_seconds=0.0,
                   seconds=0.0, prefill_seconds=prefill_seconds, finish=finish)
    finally:
        # Interrupted inside a round (Ctrl-C during eval): drop whatever it added.
        if len(target.tokens) > len(committed) - 1:
            target.rewind(len(committed) - 1)


def fit_to_vocab(draft: Draft, n_vocab: int) -> Draft:
    """The draft as the target can verify it. Draft and target may differ in width by padding
    ids that no text produces (the pair passed the tokenizer check), but a draft can still
    propose one, and the target would fail on it (llama.cpp) or index past its logits
    (transformers): cut the draft before the first such id. q is padded or cut to the target's
    width; cutting drops mass, so it is renormalised (`restricted`)."""
    cut = next((i for i, t in enumerate(draft.tokens) if not 0 <= t < n_vocab), None)
    if cut is not None:
        draft = Draft(draft.tokens[:cut], None if draft.q is None else draft.q[:cut])
    q = draft.q
    if q is None or q.shape[-1] == n_vocab:
        return draft
    if q.shape[-1] < n_vocab:
        return Draft(draft.tokens, np.pad(q, ((0, 0), (0, n_vocab - q.shape[-1]))))
    return restricted(draft, q[:, :n_vocab])


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
    strings (text may be empty while a possible stop string is held back).

    The step that completes a stop string is cut after the token that completes it: tokens past
    it are not output, not yielded and not counted as new tokens. (The verification counters
    keep what the verifier judged: that work was done.)"""
    stats.prompt_tokens = len(prompt)
    text = TextStream(target, stop=config.stop)
    steps = decode_steps(target, drafter, prompt, config=config, rng=rng)
    try:
        for step in steps:
            chunk = text.add(step.tokens)
            if text.stopped:
                step = replace(step, tokens=step.tokens[: text.kept_tokens], finish="stop")
                stats.add(step)
                yield chunk + text.flush(), step
                break
            stats.add(step)
            if step.finish:
                chunk += text.flush()
            yield chunk, step
    finally:
        steps.close()
