"""The HTTP layer: FastAPI routes in the shape of OpenAI's API, SSE streaming (sse-starlette),
Prometheus metrics, and the chat page. Generation runs in the engine's worker thread (engine.py);
this module validates, queues, streams and cancels.

Errors: a request the client got wrong is a 4xx with an OpenAI-style body; anything else is a
500 with the same shape and no traceback in the response (the log has it). Bodies are read
under the size limit as they arrive: a chunked body over it is refused after the limit, not
after it has all been read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field, replace
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..call import CallOptions
from ..core.decode import DEFAULT_MAX_TOKENS, MAX_DRAFT_TOKENS
from ..core.prompt import encode_prompt
from ..errors import SpecpairError
from . import schemas
from .engine import Engine, Job, QueueFull
from .engine import Request as GenRequest
from .metrics import Metrics

RETRY_AFTER_SECONDS = 2
log = logging.getLogger("specpair.serve")


# what a request may choose in `speculative.draft`, by what the server drafts with: the
# server's own drafter, plain decoding, and (under auto) the lookups auto already runs. Never
# more: a client must not make a --draft none server plan or load draft models.
DRAFTERS = {"auto": ("auto", "ngram", "suffix", "none"), "ngram": ("ngram", "none"),
            "suffix": ("suffix", "none"), "model": ("model", "none"), "none": ("none",)}


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    model: str  # the name /v1/models lists
    drafter: str = "auto"  # what the server drafts with: auto | none | ngram | suffix | model
    max_tokens_cap: int = 4096
    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = 1 << 20
    # the server's defaults (its generation flags): a request's own fields win, one by one
    defaults: CallOptions = field(default_factory=CallOptions)

    def __post_init__(self) -> None:
        if self.drafter not in DRAFTERS:
            raise ValueError(f"drafter must be one of {', '.join(DRAFTERS)}")
        if self.defaults.max_tokens is None:
            object.__setattr__(self, "defaults", replace(
                self.defaults, max_tokens=min(DEFAULT_MAX_TOKENS, self.max_tokens_cap)))

    @property
    def drafters(self) -> tuple[str, ...]:
        """What a request may choose in speculative.draft."""
        return DRAFTERS[self.drafter]


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.param, self.headers = status, kind, param, headers or {}


def _error(status: int, message: str, *, kind: str = "invalid_request_error",
           param: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(schemas.error_body(message, kind=kind, param=param), status_code=status,
                        headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 as soon as it crosses the
    limit, whether it came with a Content-Length or chunked."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:  # read the body here, bounded, then hand it on
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(scope, receive, send)
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, scope, receive, send) -> None:
        response = _error(413, f"request body over {self.limit} bytes")
        await response(scope, receive, send)


def _replay(messages: list, then=None):
    async def receive():
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}
    return receive


class KeyGuard:
    """ASGI middleware: the API (/v1/, /metrics) answers only a known key (401 otherwise), and
    each request learns its key's partition (`request.state.partition`). Plain ASGI, not
    Starlette's BaseHTTPMiddleware: behind that, a route's `request.is_disconnected()` never
    saw a client leave, so a non-streaming request whose client had gone held its slot."""

    def __init__(self, app, keys: tuple[str, ...]) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.keys:
            path = scope["path"]
            if path.startswith("/v1/") or path == "/metrics":
                given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
                token = given[7:] if given.lower().startswith("bearer ") else ""
                if not any(hmac.compare_digest(token.encode(), k.encode()) for k in self.keys):
                    response = _error(401, "invalid or missing API key: send 'Authorization: "
                                           "Bearer KEY'", kind="authentication_error")
                    return await response(scope, receive, send)
                scope.setdefault("state", {})["partition"] = partition_of(token)
        return await self.app(scope, receive, send)


def partition_of(token: str) -> str:
    """An API key's suffix-tree partition: a digest, so the key itself is kept nowhere."""
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else ""


def create_app(engine: Engine, settings: ServeSettings) -> FastAPI:
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        # uvicorn has given in-flight requests their grace and cancelled the rest; the event
        # loop is still open here, so the jobs' callbacks can still reach it
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: engine.shutdown(cancel_after=0.0))

    app = FastAPI(title="specpair", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.engine, app.state.settings, app.state.metrics = engine, settings, metrics
    engine.observe(lambda job, stats: metrics.record(stats, stats.cached_tokens))
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(KeyGuard, keys=settings.api_keys)

    # -- errors: always an OpenAI-style body, never a traceback --------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "json_invalid":
            return _error(400, "the request body is not valid JSON")
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        return _error(400, f"{loc or 'body'}: {msg}", param=loc or None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        metrics.requests.labels(endpoint=request.url.path, status=str(exc.status)).inc()
        return _error(exc.status, str(exc), kind=exc.kind, param=exc.param, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), kind="not_found_error"
                      if exc.status_code == 404 else "invalid_request_error")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.error("internal error on %s", request.url.path, exc_info=exc)
        return _error(500, f"internal error: {type(exc).__name__}", kind="server_error")

    # -- routes ---------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        return {"status": "ok", "model": settings.model, "busy": engine.busy,
                "slots": engine.slots, "busy_slots": engine.busy_slots,
                "queue": engine.queue_length, "drafter": settings.drafter,
                "drafters": list(settings.drafters)}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": settings.model, "object": "model",
                                            "created": 0, "owned_by": "specpair"}]}

    @app.get("/metrics")
    async def metrics_route():
        metrics.waiting.set(engine.queue_length)
        metrics.running.set(engine.busy_slots)
        metrics.slots.set(engine.slots)
        metrics.set_batch(engine.scheduler.stats.to_dict())
        metrics.set_suffix(engine.suffix_stats())
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return resources.files("specpair.serve").joinpath("static/index.html").read_text()

    @app.post("/v1/chat/completions")
    async def chat(body: schemas.ChatRequest, request: Request):
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        return await _generate(request, body, messages, "chat")

    @app.post("/v1/completions")
    async def completions(body: schemas.CompletionRequest, request: Request):
        try:
            text = body.text()
        except ValueError as e:
            raise ApiError(400, str(e), param="prompt") from None
        return await _generate(request, body, text, "completion")

    async def _generate(request: Request, body, content, kind: str):
        partition = getattr(request.state, "partition", "")
        gen = await asyncio.get_running_loop().run_in_executor(
            None, lambda: _build_request(engine, settings, body, content, kind, partition))
        rid = schemas.new_id("chatcmpl" if kind == "chat" else "cmpl")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        t0 = time.perf_counter()

        def post(event) -> None:  # from the worker thread; the loop may be gone at shutdown
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(events.put_nowait, event)

        job = Job(gen, lambda piece: post(("piece", piece)),
                  lambda stats, error, internal: post(("done", stats, error, internal)))
        try:
            engine.submit(job)
        except QueueFull as e:
            raise ApiError(429, f"server busy: {e}; retry later", kind="rate_limit_error",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        endpoint = request.url.path

        def finished(status: int) -> None:
            metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            metrics.request_seconds.observe(time.perf_counter() - t0)

        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventSourceResponse(
                _stream(engine, job, events, kind, rid, settings.model, include_usage,
                        finished), ping=15, sep="\n")
        return await _collect(engine, job, events, request, kind, rid, settings.model, finished)

    return app


def _build_request(engine: Engine, settings: ServeSettings, body, content, kind: str,
                   partition: str) -> GenRequest:
    """Validate a request against the server's limits, resolve its call (its fields over the
    server's defaults, over the pair's options) and tokenize it."""
    spec = body.speculative or schemas.Speculative()
    if spec.draft is not None and spec.draft not in settings.drafters:
        raise ApiError(400, f"speculative.draft {spec.draft!r}: this server drafts with "
                            f"{settings.drafter!r}; a request may choose "
                            f"{', '.join(settings.drafters)}", param="speculative.draft")
    said = CallOptions.of(
        max_tokens=body.limit(), temperature=body.temperature, top_k=body.top_k,
        top_p=body.top_p, min_p=body.min_p, seed=body.seed, stop=body.stops() or None,
        draft=None if spec.draft == "model" else spec.draft,  # "model": the pair's own
        draft_tokens=min(spec.k, MAX_DRAFT_TOKENS) if spec.k else None)
    options = said.over(settings.defaults)
    limit = options.max_tokens or 0
    if limit > settings.max_tokens_cap:
        raise ApiError(400, f"max_tokens {limit} is over this server's cap of "
                            f"{settings.max_tokens_cap}", param="max_tokens")
    try:  # the same checks a generation would make, before it queues
        call = engine.pair.resolve(options, partition=partition)
        prompt = encode_prompt(engine.target, content, chat=kind == "chat")
    except SpecpairError as e:
        raise ApiError(400, str(e)) from None
    if not prompt:
        raise ApiError(400, "the prompt is empty", param="prompt")
    if len(prompt) >= engine.target.n_ctx:
        raise ApiError(400, f"the prompt is {len(prompt)} tokens but the context holds "
                            f"{engine.target.n_ctx}: shorten it", param="messages"
                       if kind == "chat" else "prompt")
    return GenRequest(prompt=prompt, call=call, kind=kind)


DISCONNECT_CHECK = 0.1  # seconds between looks for a non-streaming client that left


def _status(error: str, internal: bool) -> int:
    return 503 if "shutting down" in error else 500 if internal else 400


async def _collect(engine: Engine, job: Job, events: asyncio.Queue, request: Request, kind: str,
                   rid: str, model: str, finished):
    """A non-streaming response: wait for the job, cancelling it if the client leaves (or the
    server shuts down and cancels this handler). The client is looked for every
    DISCONNECT_CHECK seconds whether or not text is flowing (it once was only after a quarter
    second without a piece: a client that left a request producing text held its slot to the
    end)."""
    try:
        pieces: list[str] = []
        checked = time.perf_counter()
        while True:
            try:
                event = await asyncio.wait_for(events.get(), timeout=DISCONNECT_CHECK)
            except (asyncio.TimeoutError, TimeoutError):  # distinct types before Python 3.11
                event = None
            if time.perf_counter() - checked >= DISCONNECT_CHECK or event is None:
                checked = time.perf_counter()
                if await request.is_disconnected():
                    engine.cancel(job)
            if event is None:
                continue
            if event[0] == "piece":
                pieces.append(event[1].text)
                continue
            _, stats, error, internal = event
            if error is not None:
                status = _status(error, internal)
                finished(status)
                return _error(status, error, kind="invalid_request_error" if status == 400
                              else "server_error")
            finished(200)
            return schemas.completion(kind, model, rid, "".join(pieces), stats,
                                      job.result.drafter, stats.cached_tokens)
    finally:
        engine.cancel(job)  # a no-op once the job is done


async def _stream(engine: Engine, job: Job, events: asyncio.Queue, kind: str, rid: str,
                  model: str, include_usage: bool, finished):
    """SSE events: a role chunk, one chunk per piece of text (with where it came from), a final
    chunk with the finish reason and `speculative` statistics, the usage chunk when asked, then
    [DONE]. A client that disconnects cancels the job."""
    try:
        if kind == "chat":
            yield {"data": json.dumps(schemas.chunk(kind, model, rid, role=True, text=""))}
        while True:
            event = await events.get()
            if event[0] == "piece":
                piece = event[1]
                if piece.text or piece.tokens:
                    yield {"data": json.dumps(schemas.chunk(
                        kind, model, rid, text=piece.text,
                        pieces=[[piece.text, piece.from_draft, len(piece.tokens)]]))}
                continue
            _, stats, error, internal = event
            if error is not None:
                finished(_status(error, internal))
                yield {"data": json.dumps(schemas.error_body(
                    error, kind="server_error" if internal else "invalid_request_error"))}
                break
            final = schemas.chunk(kind, model, rid, text="" if kind == "chat" else None,
                                  finish=schemas.finish_reason(stats))
            final["speculative"] = schemas.speculative(stats, job.result.drafter,
                                                       stats.cached_tokens)
            yield {"data": json.dumps(final)}
            if include_usage:
                tail = {"id": rid, "object": final["object"], "created": final["created"],
                        "model": model, "choices": [],
                        "usage": schemas.usage(stats, stats.cached_tokens)}
                yield {"data": json.dumps(tail)}
            finished(200)
            break
        yield {"data": "[DONE]"}
    finally:
        # normally a no-op (the job is done); if the client went away mid-stream, this
        # stops the generation within one verification round and frees the model
        engine.cancel(job)
