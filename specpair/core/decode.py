"""The decode loop: plain and speculative decoding are the same loop (plain is k = 0).

`decode_steps` is a generator of `Step`s. The one text layer above it (incremental UTF-8
decoding, stop strings, folding steps into `DecodeStats`) is `generation.stream_pieces`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ContextOverflow, InvalidOption
from .acceptance import AcceptanceRule
from .backend import Backend, common_prefix, sync
from .drafter import Draft, Drafter, fit_to_vocab
from .ops import PositionUniforms, Verifier
from .sampling import SamplingConfig
from .stats import Step

DEFAULT_MAX_TOKENS = 256
DEFAULT_DRAFT_TOKENS = 4
MAX_DRAFT_TOKENS = 64
_NO_DRAFT = Draft([])


@dataclass(frozen=True, kw_only=True)
class DecodeConfig:
    max_tokens: int = DEFAULT_MAX_TOKENS
    draft_tokens: int = DEFAULT_DRAFT_TOKENS  # k; ignored without a drafter
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stop: tuple[str, ...] = ()
    # exact (the default) keeps the target's output; the others are opt-in and LOSSY
    acceptance: AcceptanceRule = field(default_factory=AcceptanceRule)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidOption(f"{{max_tokens}} must be >= 1, got {self.max_tokens}")
        if not 1 <= self.draft_tokens <= MAX_DRAFT_TOKENS:
            raise InvalidOption(f"{{draft_tokens}} must be between 1 and {MAX_DRAFT_TOKENS}, "
                                f"got {self.draft_tokens}")


def check_prompt_fits(target: Backend, n_prompt: int) -> None:
    if n_prompt == 0:
        raise InvalidOption("the prompt is empty: give at least one token of text")
    if n_prompt >= target.n_ctx:
        raise ContextOverflow(f"the prompt is {n_prompt} tokens but the context holds "
                              f"{target.n_ctx}: shorten the prompt or pass a larger {{n_ctx}}")


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
    context. Stopping the generator early (close, break) leaves the target's cache consistent
    and still tells the drafter the generation ended.

    `rng` seeds the verification's uniforms (a child generator is spawned, so a drafter may
    sample from `rng` itself); `clock` times the rounds (tests pass a simulated one)."""
    check_prompt_fits(target, len(prompt))
    verify = Verifier(config.sampling, config.acceptance)
    uniforms = PositionUniforms(rng)
    committed = list(prompt)
    n_prompt = len(committed)

    # Cache invariant, the one piece of arithmetic in this loop: the target's cache holds
    # committed[:-1]. The last committed token is "pending": it goes first in the next batch, so
    # one eval of [pending, d_0 .. d_{k-1}] returns k+1 rows, row i being the target's
    # distribution for draft token i and row k the bonus position. After accepting n draft tokens
    # and one target token, the cache must again hold committed[:-1]: rewinding the position
    # counter to that length drops the rejected drafts' slots (overwritten later, never copied).
    # Only the prefill compares the cache's contents (a new prompt may share a prefix with the
    # last generation's); every round after it is position arithmetic.
    # A one-token prompt leaves nothing to evaluate, but the cache may still hold an earlier
    # decode's tokens: empty it, or the next round is conditioned on a stale context.
    t0 = clock()
    cached = common_prefix(target.tokens, committed[:-1])
    if n_prompt > 1:
        sync(target, committed[:-1])
    else:
        target.rewind(0)
    target.synchronize()
    prefill_seconds = clock() - t0
    # the drafter reads the prompt here (lookups index it): setup, booked apart from rounds
    t0 = clock()
    if drafter is not None:
        drafter.begin(prompt)
    setup_seconds = clock() - t0

    n_new = 0
    draft_note: str | None = None
    try:
        while True:
            t_start = clock()
            room = target.n_ctx - len(committed)  # cache slots left for pending + drafts
            if room < 0:
                finish = "context"
                break
            k = min(config.draft_tokens, config.max_tokens - n_new - 1, room) if drafter else 0
            draft = _NO_DRAFT
            if k > 0 and drafter is not None:
                try:
                    draft = fit_to_vocab(drafter.propose(committed, k), target.n_vocab)
                except ContextOverflow as e:
                    # the draft's context is smaller than the target's: plain decoding would
                    # finish, so stop drafting and keep decoding
                    draft_note = f"drafting stopped at token {n_new}: {e}"
                    drafter.end(committed[n_prompt:])
                    drafter = None
            t_drafted = clock()

            logits = target.eval([committed[-1], *draft.tokens])
            target.synchronize()  # a GPU's launches return early: time the compute
            t_evaluated = clock()
            n_acc, next_token = verify(logits, draft, uniforms.at(n_new, len(draft.tokens) + 1))
            t_verified = clock()

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
                target_seconds=t_evaluated - t_drafted,
                verify_seconds=t_verified - t_evaluated,
                seconds=clock() - t_start,
                prefill_seconds=prefill_seconds,
                setup_seconds=setup_seconds,
                cached_tokens=cached,
                finish=finish,
                note=draft_note,
            )
            draft_note = None
            if drafter is not None:
                drafter.observe(step)
            yield step
            prefill_seconds, setup_seconds, cached = 0.0, 0.0, 0
            if finish:
                return
        yield Step(tokens=[], n_drafted=0, n_accepted=0, draft_seconds=0.0, target_seconds=0.0,
                   seconds=0.0, prefill_seconds=prefill_seconds, setup_seconds=setup_seconds,
                   cached_tokens=cached, finish=finish)
    finally:
        # Interrupted inside a round (Ctrl-C during eval): drop whatever it added.
        if target.n_past > len(committed) - 1:
            target.rewind(len(committed) - 1)
        if drafter is not None:
            drafter.end(committed[n_prompt:])
