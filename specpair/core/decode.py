"""One request's decoding as the halves of its rounds (`Decoding`): plain and speculative
decoding are the same rounds (plain is k = 0).

The loop that drives them is the scheduler's (`schedule/`): one request alone is the scheduler
with one slot (`schedule.decode_steps`, a generator of `Step`s), several share each step's
batch. The one text layer above it (incremental UTF-8 decoding, stop strings, folding steps
into `DecodeStats`) is `generation.PieceMaker`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ContextOverflow, InvalidOption
from .acceptance import AcceptanceRule
from .backend import Backend, Logits, common_prefix
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


def _first_step() -> dict:
    """What only a generation's first step reports (then zeroed)."""
    return {"prefill_seconds": 0.0, "setup_seconds": 0.0, "cached_tokens": 0}


class Decoding:
    """One request's decoding, as the halves of its rounds: `prefill_rows`/`prefilled` bring
    the prompt into the target's cache, then each round is `propose` (the drafter's draft,
    the rows to evaluate: [pending, d_0 .. d_{k-1}]) and `commit` (the target's logits for
    those rows, verified by the pure functions of ops.py, the tokens committed, the cache
    rewound). Whoever evaluates the rows in between (`decode_steps` for one request, the
    scheduler for a batch of them) does only that: this class owns the cache arithmetic.

    Cache invariant, the one piece of arithmetic here: the target's cache holds
    committed[:-1]. The last committed token is "pending": it goes first in the next round's
    rows, so one evaluation of [pending, d_0 .. d_{k-1}] returns k+1 rows, row i being the
    target's distribution for draft token i and row k the bonus position. After accepting n
    draft tokens and one target token, the cache must again hold committed[:-1]: rewinding the
    position counter to that length drops the rejected drafts' slots (overwritten later, never
    copied). Only the prefill compares the cache's contents (a new prompt may share a prefix
    with the last generation's); every round after it is position arithmetic."""

    def __init__(self, target: Backend, drafter: Drafter | None, prompt: Sequence[int], *,
                 config: DecodeConfig, rng: np.random.Generator,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        check_prompt_fits(target, len(prompt))
        self.target, self.drafter, self.config, self.clock = target, drafter, config, clock
        self.verify = Verifier(config.sampling, config.acceptance)
        self.uniforms = PositionUniforms(rng)
        self.committed = list(prompt)
        self.n_prompt = len(self.committed)
        self.n_new = 0
        self.finish: str | None = None
        self.began = False  # the drafter has read the prompt: rounds may start
        self._draft = _NO_DRAFT
        self._note: str | None = None
        self._t_start = self._t_drafted = 0.0
        self._first = _first_step()
        # The cache keeps the longest prefix it shares with the prompt (less one token, as
        # `sync` re-evaluates at least one). A one-token prompt leaves nothing to evaluate,
        # but the cache may still hold an earlier decode's tokens: it is emptied, or the next
        # round is conditioned on a stale context.
        t0 = clock()
        self._first["cached_tokens"] = common_prefix(target.tokens, self.committed[:-1])
        keep = common_prefix(target.tokens, self.committed[:-2]) if self.n_prompt > 1 else 0
        target.rewind(keep)
        self._unfilled = self.committed[keep:-1]  # prompt rows still to evaluate
        self._first["prefill_seconds"] += clock() - t0

    # -- the prompt ---------------------------------------------------------------------------
    def prefill_rows(self, budget: int | None = None) -> list[int]:
        """The next prompt rows to evaluate (at most `budget`; None: all), logits unneeded."""
        return self._unfilled if budget is None else self._unfilled[:budget]

    def prefilled(self, n: int, seconds: float) -> None:
        """`n` prompt rows were evaluated (in `seconds`); once the whole prompt is in the
        cache, the drafter reads it (its lookups index it: setup, booked apart from rounds)."""
        self._unfilled = self._unfilled[n:]
        self._first["prefill_seconds"] += seconds
        if not self._unfilled:
            t0 = self.clock()
            if self.drafter is not None:
                self.drafter.begin(self.committed[:self.n_prompt])
            self._first["setup_seconds"] += self.clock() - t0
            self.began = True

    # -- a round --------------------------------------------------------------------------------
    def propose(self, *, offer: bool = False) -> list[int] | None:
        """The round's rows: [pending, draft...]; None when the context is full (the
        generation ends with `last_step`). `offer`: the drafter offers (`Drafter.offer`), and
        whoever evaluates the batch may `cut` the draft before it does."""
        clock = self.clock
        self._t_start = clock()
        room = self.target.n_ctx - len(self.committed)  # cache slots for pending + drafts
        if room < 0:
            self.finish = "context"
            return None
        drafter, config = self.drafter, self.config
        k = min(config.draft_tokens, config.max_tokens - self.n_new - 1, room) if drafter else 0
        self._draft = _NO_DRAFT
        if k > 0 and drafter is not None:
            try:
                ask = drafter.offer if offer else drafter.propose
                self._draft = fit_to_vocab(ask(self.committed, k), self.target.n_vocab)
            except ContextOverflow as e:
                # the draft's context is smaller than the target's: plain decoding would
                # finish, so stop drafting and keep decoding
                self._note = f"drafting stopped at token {self.n_new}: {e}"
                drafter.end(self.committed[self.n_prompt:])
                self.drafter = None
        self._t_drafted = clock()
        return [self.committed[-1], *self._draft.tokens]

    @property
    def reach(self) -> tuple[float, ...] | None:
        """The offered draft's reach per token (None: drafted whole, never cut)."""
        return self._draft.reach

    def cut(self, k: int) -> list[int]:
        """Keep the first k tokens of the round's draft: the rows to evaluate."""
        self._draft = self._draft.cut(k)
        return [self.committed[-1], *self._draft.tokens]

    def commit(self, logits: Logits, target_seconds: float) -> Step:
        """Verify the round's draft against the target's `logits` for its rows, commit what
        it keeps, and rewind the cache to committed[:-1]."""
        clock, draft = self.clock, self._draft
        t_evaluated = clock()
        n_acc, next_token = self.verify(logits, draft,
                                        self.uniforms.at(self.n_new, len(draft.tokens) + 1))
        t_verified = clock()
        new = [*draft.tokens[:n_acc], next_token]
        n_judged = min(n_acc + 1, len(draft.tokens))
        finish = None
        for i, token in enumerate(new):
            if token in self.target.eos_ids:
                new, finish = new[: i + 1], "eos"
                if i < n_acc:  # an accepted draft EOS: it counts as accepted, and the
                    n_acc = n_judged = i + 1  # draft positions after it were never judged
                break
        self.committed += new
        self.n_new += len(new)
        self.target.rewind(len(self.committed) - 1)
        if finish is None and self.n_new >= self.config.max_tokens:
            finish = "max_tokens"
        self.finish = finish
        step = Step(tokens=new, n_drafted=len(draft.tokens), n_accepted=n_acc,
                    n_judged=n_judged, draft_seconds=self._t_drafted - self._t_start,
                    target_seconds=target_seconds, verify_seconds=t_verified - t_evaluated,
                    # this round's own work: drafting, the evaluation, verification (not the
                    # other slots' work a scheduler did between propose and commit)
                    seconds=(self._t_drafted - self._t_start) + target_seconds
                    + (t_verified - t_evaluated), finish=finish, note=self._note,
                    **self._first)
        self._note = None
        self._first = _first_step()
        if self.drafter is not None:
            self.drafter.observe(step)
        return step

    def last_step(self) -> Step:
        """The empty step that ends a generation whose context filled up."""
        step = Step(tokens=[], n_drafted=0, n_accepted=0, draft_seconds=0.0,
                    target_seconds=0.0, seconds=0.0, finish=self.finish, **self._first)
        self._first = _first_step()
        return step

    def close(self) -> None:
        """The generation ends (finished, stopped early or interrupted inside a round): drop
        whatever a round added past the invariant, and tell the drafter."""
        if self.target.n_past > len(self.committed) - 1:
            self.target.rewind(len(self.committed) - 1)
        if self.drafter is not None and self.began:
            self.drafter.end(self.committed[self.n_prompt:])
            self.drafter = None
