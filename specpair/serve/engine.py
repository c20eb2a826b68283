"""One model instance serving requests one at a time, in FIFO order, from a bounded queue.

The HTTP layer (app.py) submits a `Job`; a single worker thread runs the decode loop for it and
hands each step to the job's listener. Everything here is synchronous and HTTP-free: the app
bridges it to asyncio. A job can be cancelled at any time (client gone, shutdown): the worker
checks between verification rounds, so a cancelled generation stops within one round and the
generator's `finally` leaves the caches consistent.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..backends import Backend, BackendConfig, common_prefix
from ..check import Comparison
from ..decode import DecodeConfig, generate_text
from ..drafters import Draft, Drafter, NgramDrafter
from ..errors import SpecpairError
from ..pairing import drafter_for
from ..sampling import SamplingConfig
from ..stats import DecodeStats, Step

DRAFTS = ("auto", "none", "ngram")


class QueueFull(Exception):
    """More requests are waiting than --max-queue allows: answer 429."""


@dataclass(frozen=True, kw_only=True)
class Request:
    """A generation request, already validated and tokenized."""

    prompt: list[int]
    decode: DecodeConfig
    draft: str  # auto | none | ngram | model
    kind: str  # "chat" or "completion": auto keeps acceptance priors per kind


@dataclass(frozen=True)
class DraftModel:
    """The server's draft model: where it is (for cost keys) and how to load its backend."""

    name: str
    engine: str
    path: str
    size: int
    load: Callable[[], Backend]
    comparison: Comparison  # check_pair's verdict: how the pair drafts (pairing.py)


@dataclass
class Job:
    request: Request
    on_step: Callable[[str, Step, list[tuple[str, bool, int]]], None]  # text, step, pieces
    on_done: Callable[[DecodeStats, str | None], None]  # stats, error message
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.perf_counter)
    drafter_name: str = ""
    reused_tokens: int = 0


class Engine:
    def __init__(self, target: Backend, *, engine: str, config: BackendConfig,
                 max_queue: int, draft_model: DraftModel | None = None,
                 ngram: tuple[int, int] = (2, 8), draft_p_min: float = 0.0) -> None:
        self.target = target
        self.engine, self.config = engine, config
        self.max_queue = max_queue
        self.draft_model = draft_model  # --draft MODEL, or the one auto may load
        self._draft_backend: Backend | None = None
        self.ngram = ngram
        self.draft_p_min = draft_p_min
        self._waiting: deque[Job] = deque()
        self._cv = threading.Condition()
        self._running: Job | None = None
        self._closing = False
        self._observers: list[Callable[[Job, DecodeStats], None]] = []
        self._thread = threading.Thread(target=self._work, name="specpair-engine", daemon=True)
        self._thread.start()

    # -- the queue ----------------------------------------------------------------------
    @property
    def queue_length(self) -> int:
        with self._cv:
            return len(self._waiting)

    @property
    def busy(self) -> bool:
        return self._running is not None

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closing:
                raise QueueFull("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(job)
            self._cv.notify()

    def observe(self, fn: Callable[[Job, DecodeStats], None]) -> None:
        """Call fn(job, stats) after every finished job (metrics)."""
        self._observers.append(fn)

    def shutdown(self, *, cancel_after: float) -> None:
        """Stop taking jobs; let the running one finish for up to `cancel_after` seconds, then
        cancel it and everything still waiting."""
        with self._cv:
            self._closing = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._cv.notify_all()
        for job in waiting:
            job.cancelled.set()
            job.on_done(DecodeStats(), "the server is shutting down")
        deadline = time.monotonic() + cancel_after
        while self._running is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        running = self._running
        if running is not None:
            running.cancelled.set()
        self._thread.join(timeout=max(1.0, cancel_after))

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
    def _drafter(self, request: Request, rng: np.random.Generator):
        """The drafter for one request (built per request: it carries the request's sampling),
        and the auto plan when there is one."""
        sampling = request.decode.sampling
        ngram = NgramDrafter(n_min=self.ngram[0], n_max=self.ngram[1])
        if request.draft == "none":
            return None, None
        if request.draft == "ngram":
            return ngram, None
        if request.draft == "model":
            return self._model_drafter(sampling, rng), None
        from ..auto import ModelOption, plan

        options = []
        m = self.draft_model
        if m is not None:
            options.append(ModelOption(name=m.name, engine=m.engine, path=m.path, size=m.size,
                                       load=lambda: self._model_drafter(sampling, rng)))
        p = plan(self.target, self.engine, self.config, ngram=ngram, models=options,
                 kind=request.kind)
        return p.drafter, p

    def _model_drafter(self, sampling: SamplingConfig, rng) -> Drafter:
        if self.draft_model is None:
            raise SpecpairError("this server has no draft model: start it with --draft MODEL")
        if self._draft_backend is None:
            self._draft_backend = self.draft_model.load()
        return drafter_for(self._draft_backend, self.draft_model.comparison, target=self.target,
                           sampling=sampling, rng=rng, p_min=self.draft_p_min)

    def _run(self, job: Job) -> None:
        request = job.request
        stats = DecodeStats()
        error = None
        if job.cancelled.is_set():
            job.on_done(stats, "cancelled")
            return
        try:
            rng = np.random.default_rng(request.decode.sampling.seed)
            t0 = time.perf_counter()
            drafter, plan_ = self._drafter(request, rng)
            stats.setup_seconds = time.perf_counter() - t0
            job.drafter_name = getattr(drafter, "name", "none")
            job.reused_tokens = common_prefix(self.target.tokens, request.prompt[:-1])
            pieces = _Provenance(self.target)
            for text, step in generate_text(self.target, drafter, request.prompt,
                                            config=request.decode, rng=rng, stats=stats):
                job.on_step(text, step, pieces.add(step))
                if job.cancelled.is_set():
                    stats.finish = "cancelled"
                    break
            if plan_ is not None:
                from ..auto import remember

                remember(plan_, config=self.config)
        except SpecpairError as e:
            error = str(e)
        except Exception as e:  # never let one request kill the worker
            error = f"internal error: {type(e).__name__}: {e}"
        for fn in self._observers:
            fn(job, stats)
        job.on_done(stats, error)


class _Provenance:
    """Each step's text split by origin: the accepted draft tokens, then the target's own token
    (a correction or a bonus). Decoded incrementally like the main text; for display."""

    def __init__(self, backend: Backend) -> None:
        import codecs

        self._backend = backend
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, step: Step) -> list[tuple[str, bool, int]]:
        """[(text, from_draft, number of tokens)] for one step."""
        out = []
        for from_draft, tokens in ((True, step.tokens[: step.n_accepted]),
                                   (False, step.tokens[step.n_accepted:])):
            data = b"".join(self._backend.token_bytes(t) for t in tokens
                            if t not in self._backend.eos_ids)
            text = self._decoder.decode(data)
            if tokens:
                out.append((text, from_draft, len(tokens)))
        return out


__all__ = ["DRAFTS", "Draft", "Engine", "Job", "QueueFull", "Request"]
