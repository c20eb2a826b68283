"""One model pair serving requests one at a time, in FIFO order, from a bounded queue.

The HTTP layer (app.py) submits a `Job`; a single worker thread runs the pair's generation for
it (`Pair.stream`) and hands each piece of text to the job's listener. Everything here is
synchronous and HTTP-free: the app bridges it to asyncio. A job can be cancelled at any time
(client gone, shutdown): the worker checks between pieces, so a cancelled generation stops
within one verification round and the generator's `finally` leaves the caches consistent.
Cancelled jobs that are still waiting leave the queue at once: they never count against
--max-queue.
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
        """`max_queue`: requests that may wait while one runs (0: none wait, one runs)."""
        self.pair = pair
        self.target = pair.target
        self.max_queue = max_queue
        self._waiting: deque[Job] = deque()
        self._cv = threading.Condition()
        self._running: Job | None = None
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
    def busy(self) -> bool:
        return self._running is not None

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closing:
                raise QueueFull("the server is shutting down")
            self._purge()
            idle = self._running is None and not self._waiting
            if len(self._waiting) >= self.max_queue and not idle:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(job)
            self._cv.notify()

    def cancel(self, job: Job) -> None:
        """The client is gone: stop the job (within a round) or take it out of the queue."""
        job.cancelled.set()
        with self._cv:
            if job in self._waiting:
                self._waiting.remove(job)
                job.on_done(DecodeStats(), "cancelled", False)

    def observe(self, fn: Callable[[Job, DecodeStats], None]) -> None:
        """Call fn(job, stats) after every finished job (metrics)."""
        self._observers.append(fn)

    def shutdown(self, *, cancel_after: float) -> None:
        """Stop taking jobs; let the running one finish for up to `cancel_after` seconds, then
        cancel it; everything still waiting is cancelled at once. Returns when the worker has
        stopped: the models are no longer in use."""
        with self._cv:
            self._closing = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._cv.notify_all()
        for job in waiting:
            job.cancelled.set()
            job.on_done(DecodeStats(), "the server is shutting down", False)
        deadline = time.monotonic() + cancel_after
        while self._running is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        running = self._running
        if running is not None:
            running.cancelled.set()
        # no timeout: a cancelled generation stops within one round, but a prefill cannot be
        # interrupted, and the caller frees the models after this returns (a timeout here
        # freed llama.cpp's contexts under a running prefill)
        self._thread.join()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closing:
                    self._cv.wait()
                if self._closing and not self._waiting:
                    return
                job = self._waiting.popleft()
                self._running = job
            try:
                self._run(job)
            finally:
                self._running = None

    # -- one generation -----------------------------------------------------------------
    def _run(self, job: Job) -> None:
        request = job.request
        if job.cancelled.is_set():
            job.on_done(job.result.stats, "cancelled", False)
            return
        error, internal = None, False
        pieces = self.pair.stream(tokens=request.prompt, result=job.result, kind=request.kind,
                                  call=request.call)
        try:
            for piece in pieces:
                job.on_piece(piece)
                if job.cancelled.is_set():
                    job.result.stats.finish = "cancelled"
                    break
        except SpecpairError as e:
            error = str(e)
        except Exception as e:  # never let one request kill the worker; log it whole
            log.exception("internal error in a generation")
            error, internal = f"internal error: {type(e).__name__}", True
        finally:
            pieces.close()
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
