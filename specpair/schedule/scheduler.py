"""The scheduler: slots over an engine's sequences, one batched evaluation per step.

A step (vLLM v1's engine step, llama-server's `update_slots`):
1. admit waiting requests into free slots (a slot is a sequence of the engine: its cache keeps
   the last request's tokens, reused as a prefix only by a request of the same domain);
2. each generating slot proposes its round (`Decoding.propose`: its drafter, its K);
3. prompts of newly admitted slots fill the rest of the token budget (`prefill_plan`);
4. ONE `eval_many` over every slot's rows;
5. each slot commits its round (`Decoding.commit`: the pure verification functions) and its
   request receives the `Step`; finished, stopped and cancelled requests free their slots.

Per-request state (RNG, sampling, stop handling, drafter, statistics) lives in the request and
its `Decoding`: a request's output depends on its own inputs, not on who shares its batch (up
to the numerical near-ties a batch's kernels change). An error of one request (a prompt that
does not fit, its drafter failing) ends that request alone; an engine failure ends the requests
of that batch, and the others go on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..auto.curve import CostCurve
from ..core.backend import EvalPart, common_prefix, sequence
from ..core.decode import DecodeConfig, Decoding
from ..core.drafter import Drafter
from ..core.stats import Step
from ..errors import SpecpairError
from .goodput import choose_lengths
from .plan import DEFAULT_TOKEN_BUDGET, prefill_plan
from .stats import BatchStats


@dataclass(kw_only=True)
class Request:
    """One generation to run. `on_step` receives each round; it returns False to end the
    request there (a stop string was found, the client left)."""

    prompt: list[int]
    config: DecodeConfig
    rng: np.random.Generator
    drafter: Drafter | None = None
    domain: str = ""  # whose cached prompt prefix the request may reuse (an API key's digest)
    on_step: Callable[[Step], bool | None] = lambda step: True


@dataclass
class Handle:
    """A submitted request: whether it is done, and the error that ended it (if any)."""

    request: Request
    done: bool = False
    error: BaseException | None = None
    cancelled: bool = False
    slot: int | None = None

    def cancel(self) -> None:
        """End the request at the next step (its slot is freed; its steps so far stand)."""
        self.cancelled = True


@dataclass
class _Slot:
    handle: Handle
    decoding: Decoding
    admitted: int  # admission order (prompts prefill oldest first)


MIN_SHARED_PREFIX = 16  # tokens: a shorter shared prefix is not worth a copy


class Scheduler:
    def __init__(self, engine, *, budget: int = DEFAULT_TOKEN_BUDGET,
                 curve: CostCurve | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        """`engine`: a MultiSequence backend (its sequences are the slots), or any Backend
        (one slot). With several slots, drafters offer and the step's drafts are cut by the
        whole batch's goodput (goodput.py) on `curve`, the engine's seconds per batch of n
        rows (learned from every step; a stored curve to start from, or the prior's shape)."""
        self.engine = engine
        self.n_slots = getattr(engine, "n_seq", 1) if hasattr(engine, "eval_many") else 1
        self.budget, self.clock = budget, clock
        self.curve = None if self.n_slots == 1 else curve or CostCurve(points=budget)
        self.stats = BatchStats()
        self.waiting: deque[Handle] = deque()
        self.slots: list[_Slot | None] = [None] * self.n_slots
        # whose tokens each cache holds ("": the caller's own, as a Pair keeps its caches)
        self._domains: list[str] = [""] * self.n_slots
        self._admitted = 0

    # -- what callers see ---------------------------------------------------------------------
    def submit(self, request: Request) -> Handle:
        handle = Handle(request)
        self.waiting.append(handle)
        return handle

    @property
    def busy_slots(self) -> int:
        return sum(s is not None for s in self.slots)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.busy_slots

    def run(self) -> None:
        """Step until every submitted request is done (the library's batch call)."""
        while not self.idle:
            self.step()

    # -- one step -----------------------------------------------------------------------------
    def step(self) -> None:
        for i, slot in enumerate(self.slots):
            if slot is not None and slot.handle.cancelled:  # freed within one step
                self._finish(i)
        self._admit()
        parts: list[EvalPart] = []
        offer = self.curve is not None
        for i, slot in enumerate(self.slots):
            if slot is None or not slot.decoding.began:
                continue
            try:
                rows = slot.decoding.propose(offer=offer)
            except Exception as e:  # this request's drafter: this request alone
                self._finish(i, e)
                continue
            if rows is None:  # the context is full
                self._deliver(i, slot.decoding.last_step())
                continue
            parts.append(EvalPart(i, rows, True))
        waiting = sorted((s.admitted, i) for i, s in enumerate(self.slots)
                         if s is not None and not s.decoding.began)
        unfilled = [(i, len(self.slots[i].decoding.prefill_rows()))  # type: ignore[union-attr]
                    for _, i in waiting]
        if offer and parts:
            parts = self._cut(parts, unfilled)
        chunks = prefill_plan(unfilled, round_rows=sum(len(p.tokens) for p in parts),
                              budget=self.budget)
        for i, n in chunks:
            parts.append(EvalPart(i, self.slots[i].decoding.prefill_rows(n), False))  # type: ignore
        if not parts:
            return
        t0 = self.clock()
        try:
            logits = self._evaluate(parts)
        except Exception as e:  # the engine failed on this batch: its requests end
            for p in parts:
                self._finish(p.seq, e)
            return
        seconds = self.clock() - t0
        self._count(parts, seconds)
        for part, out in zip(parts, logits):
            slot = self.slots[part.seq]
            if slot is None:
                continue
            if not part.all_logits:
                slot.decoding.prefilled(len(part.tokens), seconds)
                continue
            try:
                step = slot.decoding.commit(out, seconds)
            except Exception as e:
                self._finish(part.seq, e)
                continue
            self._deliver(part.seq, step)

    def _cut(self, parts: list[EvalPart], unfilled: list[tuple[int, int]]) -> list[EvalPart]:
        """Each offered draft cut to the K the whole batch's goodput chooses (goodput.py):
        the step's fixed rows are every round's pending token, the drafts nobody may cut and
        the prompt chunks this step takes."""
        assert self.curve is not None
        offers = [k for k, p in enumerate(parts) if self._decoding(p.seq).reach is not None]
        reaches = [self._decoding(parts[k].seq).reach or () for k in offers]
        round_rows = sum(len(p.tokens) for p in parts) - sum(len(r) for r in reaches)
        prefill = sum(n for _, n in prefill_plan(unfilled, round_rows=round_rows,
                                                 budget=self.budget))
        lengths = choose_lengths(reaches, fixed_rows=round_rows + prefill,
                                 fixed_tokens=len(parts), cost=self.curve.at,
                                 max_rows=max(self.budget, round_rows + prefill))
        self.stats.offered += sum(len(r) for r in reaches)
        out = list(parts)
        for k, n in zip(offers, lengths):
            out[k] = EvalPart(parts[k].seq, self._decoding(parts[k].seq).cut(n), True)
        return out

    def _count(self, parts: list[EvalPart], seconds: float) -> None:
        """A step's evaluation into the batch-cost curve and the batch's statistics."""
        rows = sum(len(p.tokens) for p in parts)
        rounds = [p for p in parts if p.all_logits]
        if rounds:
            st = self.stats
            st.steps += 1
            st.slot_rounds += len(rounds)
            st.rows += rows
            st.drafted += sum(len(p.tokens) - 1 for p in rounds)
            st.seconds += seconds
            if self.curve is not None:
                st.predicted_seconds += self.curve.at(rows)
        if self.curve is not None:
            self.curve.observe(rows, seconds)

    def _decoding(self, i: int) -> Decoding:
        slot = self.slots[i]
        assert slot is not None
        return slot.decoding

    def _evaluate(self, parts: list[EvalPart]) -> list:
        engine = self.engine
        if hasattr(engine, "eval_many"):
            out = engine.eval_many(parts)
        else:  # one sequence: its prefill and its round never share a step
            out = [engine.eval(p.tokens, all_logits=p.all_logits) for p in parts]
        engine.synchronize()  # a GPU's launches return early: time the compute
        return out

    def _admit(self) -> None:
        while self.waiting and None in self.slots:
            handle = self.waiting.popleft()
            if handle.cancelled:
                handle.done = True
                continue
            request = handle.request
            i = self._free_slot(request)
            view = sequence(self.engine, i)
            if self._domains[i] != request.domain:
                view.rewind(0)  # another domain's tokens: never reused
            self._domains[i] = request.domain
            self._share_prefix(i, request)
            try:
                decoding = Decoding(view, request.drafter, request.prompt, config=request.config,
                                    rng=request.rng, clock=self.clock)
            except (SpecpairError, ValueError) as e:
                handle.error, handle.done = e, True
                continue
            handle.slot = i
            self._admitted += 1
            self.slots[i] = _Slot(handle, decoding, self._admitted)
            if not decoding.prefill_rows():  # nothing to evaluate: the prompt is cached
                decoding.prefilled(0, 0.0)

    def _free_slot(self, request: Request) -> int:
        """The free slot whose cache shares the longest prefix with the prompt (of the same
        domain), else the first free one."""
        free = [i for i, s in enumerate(self.slots) if s is None]

        def shared(i: int) -> int:
            if self._domains[i] != request.domain:
                return -1
            return common_prefix(sequence(self.engine, i).tokens, request.prompt)

        return max(free, key=lambda i: (shared(i), -i))

    def _share_prefix(self, i: int, request: Request) -> None:
        """Give slot i the longest prefix of the prompt that another sequence of the same
        domain holds, where it is longer than slot i's own: copied between sequences
        (llama.cpp shares the KV cells), never recomputed, and never across domains. Between
        steps every cache holds only committed tokens (a running request's, or a prompt's
        part already evaluated), so any of them may be the source."""
        if self.n_slots == 1 or not hasattr(self.engine, "copy_seq"):
            return
        best = common_prefix(sequence(self.engine, i).tokens, request.prompt)
        source = None
        for j in range(self.n_slots):
            if j != i and self._domains[j] == request.domain:
                n = common_prefix(sequence(self.engine, j).tokens, request.prompt)
                if n > best:
                    best, source = n, j
        if source is not None and best >= MIN_SHARED_PREFIX:
            self.engine.copy_seq(source, i, best)

    def _deliver(self, i: int, step: Step) -> None:
        slot = self.slots[i]
        assert slot is not None
        try:
            go_on = slot.handle.request.on_step(step)
        except Exception as e:
            self._finish(i, e)
            return
        if step.finish or go_on is False:
            self._finish(i)

    def _finish(self, i: int, error: BaseException | None = None) -> None:
        slot = self.slots[i]
        if slot is None:
            return
        self.slots[i] = None
        try:
            slot.decoding.close()
        except Exception as e:  # the request ends either way
            error = error or e
        slot.handle.error = error
        slot.handle.done = True

    def cancel_all(self, error: BaseException | None = None) -> None:
        """End every request, waiting or running (shutdown)."""
        for handle in self.waiting:
            handle.cancelled, handle.done, handle.error = True, True, error
        self.waiting.clear()
        for i in range(self.n_slots):
            self._finish(i, error)


def decode_steps(target, drafter: Drafter | None, prompt: Sequence[int], *,
                 config: DecodeConfig, rng: np.random.Generator,
                 clock: Callable[[], float] = time.perf_counter) -> Iterator[Step]:
    """Decode after `prompt`, one verification round per step, until EOS, max_tokens or a full
    context: one request alone, which is the scheduler with one slot (one decode loop, never
    two). Stopping the generator early (close, break) leaves the target's cache consistent and
    still tells the drafter the generation ended; an error is raised as it happened.

    `rng` seeds the verification's uniforms (a child generator is spawned, so a drafter may
    sample from `rng` itself); `clock` times the rounds (tests pass a simulated one)."""
    steps: deque[Step] = deque()
    scheduler = Scheduler(target, clock=clock)
    handle = scheduler.submit(Request(prompt=list(prompt), config=config, rng=rng,
                                      drafter=drafter, on_step=steps.append))
    try:
        while not handle.done:
            scheduler.step()
            while steps:
                yield steps.popleft()
        if handle.error is not None:
            raise handle.error
    finally:
        scheduler.cancel_all()


__all__ = ["Handle", "Request", "Scheduler", "decode_steps"]
