"""One model pair serving requests, up to `--parallel` at once, in FIFO order, from a bounded
queue.

The HTTP layer (app.py) submits a `Job`; a single worker thread owns the pair's scheduler
(specpair/schedule): it admits waiting jobs into free slots, steps the scheduler (one batched
evaluation for every running job's round) and hands each piece of text to its job's listener.
Everything here is synchronous and HTTP-free: the app bridges it to asyncio. A job can be
cancelled at any time (client gone, shutdown): its generation ends at its next round and the
scheduler leaves the caches consistent. Cancelled jobs that are still waiting leave the queue at
once: they never count against --max-queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..call import Call
from ..core.stats import DecodeStats
from ..errors import SpecpairError
from ..generation import Generation, Piece
from ..pair import Pair
from ..schedule import Handle

log = logging.getLogger("specpair.serve")


class QueueFull(Exception):
    """More requests are waiting than --max-queue allows: answer 429."""


@dataclass(frozen=True, kw_only=True)
class Request:
    """A generation request, already validated and tokenized."""

    prompt: list[int]
    call: Call  # the request's options resolved over the server's and the pair's
    kind: str  # "chat" or "completion"


@dataclass
class Job:
    request: Request
    on_piece: Callable[[Piece], None]
    on_done: Callable[[DecodeStats, str | None, bool], None]  # stats, error, internal
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.perf_counter)
    result: Generation = field(default_factory=lambda: Generation("", [], DecodeStats(), None,
                                                                   True))


class Engine:
    def __init__(self, pair: Pair, *, max_queue: int) -> None:
        """`max_queue`: requests that may wait while every slot is busy (0: none wait)."""
        self.pair = pair
        self.target = pair.target
        self.max_queue = max_queue
        self.scheduler = pair.scheduler()
        self.slots = self.scheduler.n_slots
        self._waiting: deque[Job] = deque()
        self._running: dict[int, tuple[Job, Handle, Callable[[], None]]] = {}
        self._cv = threading.Condition()
        self._closing = False
        self._observers: list[Callable[[Job, DecodeStats], None]] = []
        self._thread = threading.Thread(target=self._work, name="specpair-engine", daemon=True)
        self._thread.start()

    # -- the queue ----------------------------------------------------------------------
    def _purge(self) -> None:
        """Drop waiting jobs whose clients left (with the lock held)."""
        gone = [j for j in self._waiting if j.cancelled.is_set()]
        for job in gone:
            self._waiting.remove(job)
        for job in gone:
            job.on_done(DecodeStats(), "cancelled", False)

    @property
    def queue_length(self) -> int:
        with self._cv:
            self._purge()
            return len(self._waiting)

    @property
    def busy_slots(self) -> int:
        return len(self._running)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closing:
                raise QueueFull("the server is shutting down")
            self._purge()
            # every slot busy and max_queue waiting (jobs not admitted yet count as waiting)
            if len(self._running) + len(self._waiting) >= self.slots + self.max_queue:
                raise QueueFull(f"{max(0, len(self._waiting) - (self.slots - len(self._running)))}"
                                " requests are already waiting")
            self._waiting.append(job)
            self._cv.notify()

    def cancel(self, job: Job) -> None:
        """The client is gone: stop the job (at its next round) or take it out of the
        queue."""
        job.cancelled.set()
        with self._cv:
            if job in self._waiting:
                self._waiting.remove(job)
                job.on_done(DecodeStats(), "cancelled", False)
            self._cv.notify()

    def observe(self, fn: Callable[[Job, DecodeStats], None]) -> None:
        """Call fn(job, stats) after every finished job (metrics)."""
        self._observers.append(fn)

    def shutdown(self, *, cancel_after: float) -> None:
        """Stop taking jobs; let the running ones finish for up to `cancel_after` seconds,
        then cancel them; everything still waiting is cancelled at once. Returns when the
        worker has stopped: the models are no longer in use."""
        with self._cv:
            self._closing = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._cv.notify_all()
        for job in waiting:
            job.cancelled.set()
            job.on_done(DecodeStats(), "the server is shutting down", False)
        deadline = time.monotonic() + cancel_after
        while self._running and time.monotonic() < deadline:
            time.sleep(0.02)
        for job, _, _ in list(self._running.values()):
            job.cancelled.set()
        # no timeout: a cancelled generation ends at its next round, a prompt chunk is bounded
        # by the step's token budget, and the caller frees the models after this returns
        self._thread.join()

    # -- the worker: admit, step, deliver ----------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._running and not self._closing:
                    self._cv.wait()
                if self._closing and not self._waiting and not self._running:
                    return
                admit = []
                while self._waiting and len(self._running) + len(admit) < self.slots:
                    admit.append(self._waiting.popleft())
            for job in admit:
                self._start(job)
            for job, handle, _ in self._running.values():
                if job.cancelled.is_set():
                    handle.cancel()
            try:
                self.scheduler.step()
            except Exception:  # never let one step kill the worker; log it whole
                log.exception("internal error in a scheduler step")
                self.scheduler.cancel_all(RuntimeError("internal error in a scheduler step"))
            for key, (job, handle, end) in list(self._running.items()):
                if handle.done:
                    del self._running[key]
                    self._done(job, handle, end)

    def _start(self, job: Job) -> None:
        if job.cancelled.is_set():
            job.on_done(job.result.stats, "cancelled", False)
            return
        request = job.request
        try:
            scheduled, end = self.pair.scheduled(
                request.prompt, call=request.call, result=job.result, kind=request.kind,
                slots=self.slots, on_piece=job.on_piece,
                go_on=lambda: not job.cancelled.is_set())
        except SpecpairError as e:
            job.on_done(job.result.stats, str(e), False)
            return
        except Exception as e:
            log.exception("internal error starting a generation")
            job.on_done(job.result.stats, f"internal error: {type(e).__name__}", True)
            return
        self._running[id(job)] = (job, self.scheduler.submit(scheduled), end)

    def _done(self, job: Job, handle: Handle, end: Callable[[], None]) -> None:
        error, internal = None, False
        e = handle.error
        if job.cancelled.is_set() and job.result.stats.finish is None:
            job.result.stats.finish = "cancelled"
        if isinstance(e, SpecpairError):
            error = str(e)
        elif e is not None:
            log.error("internal error in a generation", exc_info=e)
            error, internal = f"internal error: {type(e).__name__}", True
        try:
            end()
        except Exception:
            log.exception("internal error ending a generation")
        for fn in self._observers:
            fn(job, job.result.stats)
        job.on_done(job.result.stats, error, internal)

    def suffix_stats(self) -> dict:
        """The global suffix trees' sizes, summed over partitions (for /metrics)."""
        total = {"requests": 0, "tokens": 0, "nodes": 0, "bytes": 0}
        for cache in self.pair.suffix_caches().values():
            for k, v in cache.stats().items():
                total[k] += v
        return total


__all__ = ["Engine", "Job", "QueueFull", "Request"]
