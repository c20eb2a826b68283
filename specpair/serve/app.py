"""The HTTP layer: FastAPI routes in the shape of OpenAI's API, SSE streaming (sse-starlette),
Prometheus metrics, and the chat page. Generation runs in the engine's worker thread (engine.py);
this module validates, queues, streams and cancels."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..decode import MAX_DRAFT_TOKENS, DecodeConfig
from ..errors import SpecpairError
from ..prompt import encode_prompt
from ..sampling import SamplingConfig
from . import schemas
from .engine import Engine, Job, QueueFull
from .engine import Request as GenRequest
from .metrics import Metrics

RETRY_AFTER_SECONDS = 2


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    model: str  # the name /v1/models lists
    draft: str = "auto"  # auto | none | ngram | model
    draft_tokens: int | None = None  # None: 4 for fixed drafters, 16 for auto
    max_tokens_cap: int = 4096
    default_max_tokens: int = 256
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    sampling: SamplingConfig = SamplingConfig()  # server defaults, overridden per request
    stop: tuple[str, ...] = ()


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.param, self.headers = status, kind, param, headers or {}


def _error(status: int, message: str, *, kind: str = "invalid_request_error",
           param: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(schemas.error_body(message, kind=kind, param=param), status_code=status,
                        headers=headers)


def create_app(engine: Engine, settings: ServeSettings) -> FastAPI:
    metrics = Metrics()
    app = FastAPI(title="specpair", docs_url=None, redoc_url=None)
    app.state.engine, app.state.settings, app.state.metrics = engine, settings, metrics
    engine.observe(lambda job, stats: metrics.record(stats, job.reused_tokens))

    # -- errors: always an OpenAI-style body, never a traceback --------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "json_invalid":
            return _error(400, "the request body is not valid JSON")
        return _error(400, f"{loc or 'body'}: {first.get('msg', 'invalid value')}",
                      param=loc or None)

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
        return _error(500, f"internal error: {type(exc).__name__}", kind="server_error")

    # -- size limit and API key, before any route reads the body -------------------------
    @app.middleware("http")
    async def _guard(request: Request, call_next):
        path = request.url.path
        protected = path.startswith("/v1/") or path == "/metrics"
        if protected and settings.api_key:
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
                return _error(401, "invalid or missing API key: send 'Authorization: Bearer "
                                   "KEY'", kind="authentication_error")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return _error(413, f"request body over {settings.max_body_bytes} bytes")
        if request.method == "POST" and length is None:  # chunked: no length to check first
            body = await request.body()  # starlette keeps it for the route
            if len(body) > settings.max_body_bytes:
                return _error(413, f"request body over {settings.max_body_bytes} bytes")
        return await call_next(request)

    # -- routes ---------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        return {"status": "ok", "model": settings.model, "busy": engine.busy,
                "queue": engine.queue_length}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": settings.model, "object": "model",
                                            "created": 0, "owned_by": "specpair"}]}

    @app.get("/metrics")
    async def metrics_route():
        metrics.waiting.set(engine.queue_length)
        metrics.running.set(1 if engine.busy else 0)
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
        gen = _build_request(engine, settings, body, content, kind)
        rid = schemas.new_id("chatcmpl" if kind == "chat" else "cmpl")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        t0 = time.perf_counter()

        def on_step(text, step, pieces):
            loop.call_soon_threadsafe(events.put_nowait, ("step", text, pieces))

        def on_done(stats, error):
            loop.call_soon_threadsafe(events.put_nowait, ("done", stats, error))

        job = Job(gen, on_step, on_done)
        try:
            engine.submit(job)
        except QueueFull as e:
            raise ApiError(429, f"server busy: {e}; retry later", kind="rate_limit_error",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        endpoint = request.url.path

        def finished(stats, status: int) -> None:
            metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            metrics.request_seconds.observe(time.perf_counter() - t0)

        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventSourceResponse(
                _stream(job, events, kind, rid, settings.model, include_usage, finished),
                ping=15, sep="\n")
        return await _collect(job, events, request, kind, rid, settings.model, finished)

    return app


def _build_request(engine: Engine, settings: ServeSettings, body, content, kind: str,
                   ) -> GenRequest:
    """Validate a request against the server's limits and tokenize it."""
    limit = body.limit() or min(settings.default_max_tokens, settings.max_tokens_cap)
    if limit > settings.max_tokens_cap:
        raise ApiError(400, f"max_tokens {limit} is over this server's cap of "
                            f"{settings.max_tokens_cap}", param="max_tokens")
    spec = body.speculative or schemas.Speculative()
    draft = spec.draft or settings.draft
    if draft == "model" and engine.draft_model is None:
        raise ApiError(400, "speculative.draft 'model': this server has no draft model",
                       param="speculative.draft")
    k = spec.k or settings.draft_tokens or (16 if draft == "auto" else 4)
    try:
        sampling = SamplingConfig(
            temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
            min_p=body.min_p,
            seed=body.seed if body.seed is not None else settings.sampling.seed)
        decode = DecodeConfig(max_tokens=limit, draft_tokens=min(k, MAX_DRAFT_TOKENS),
                              sampling=sampling, stop=body.stops() or settings.stop)
        prompt = encode_prompt(engine.target, content, chat=kind == "chat")
    except SpecpairError as e:
        raise ApiError(400, str(e)) from None
    if not prompt:
        raise ApiError(400, "the prompt is empty", param="prompt")
    if len(prompt) >= engine.target.n_ctx:
        raise ApiError(400, f"the prompt is {len(prompt)} tokens but the context holds "
                            f"{engine.target.n_ctx}: shorten it", param="messages"
                       if kind == "chat" else "prompt")
    return GenRequest(prompt=prompt, decode=decode, draft=draft, kind=kind)


async def _collect(job: Job, events: asyncio.Queue, request: Request, kind: str, rid: str,
                   model: str, finished):
    """A non-streaming response: wait for the job, cancelling it if the client leaves (or the
    server shuts down and cancels this handler)."""
    try:
        return await _wait(job, events, request, kind, rid, model, finished)
    finally:
        job.cancelled.set()  # a no-op once the job is done


async def _wait(job: Job, events: asyncio.Queue, request: Request, kind: str, rid: str,
                model: str, finished):
    pieces: list[str] = []
    while True:
        try:
            event = await asyncio.wait_for(events.get(), timeout=0.25)
        except TimeoutError:
            if await request.is_disconnected():
                job.cancelled.set()
            continue
        if event[0] == "step":
            pieces.append(event[1])
            continue
        _, stats, error = event
        if error is not None:
            finished(stats, 400 if "shutting down" not in error else 503)
            status = 503 if "shutting down" in error else 400
            return _error(status, error, kind="invalid_request_error" if status == 400
                          else "server_error")
        finished(stats, 200)
        return schemas.completion(kind, model, rid, "".join(pieces), stats, job.drafter_name,
                                  job.reused_tokens)


async def _stream(job: Job, events: asyncio.Queue, kind: str, rid: str, model: str,
                  include_usage: bool, finished):
    """SSE events: a role chunk, one chunk per verification round (with where each piece of
    text came from), a final chunk with the finish reason and `speculative` statistics, the
    usage chunk when asked, then [DONE]. A client that disconnects cancels the job."""
    try:
        if kind == "chat":
            yield {"data": json.dumps(schemas.chunk(kind, model, rid, role=True, text=""))}
        while True:
            event = await events.get()
            if event[0] == "step":
                _, text, pieces = event
                if text or pieces:
                    yield {"data": json.dumps(schemas.chunk(
                        kind, model, rid, text=text, pieces=[list(p) for p in pieces]))}
                continue
            _, stats, error = event
            if error is not None:
                finished(stats, 500)
                yield {"data": json.dumps(schemas.error_body(error, kind="server_error"))}
                break
            final = schemas.chunk(kind, model, rid, text="" if kind == "chat" else None,
                                  finish=schemas.finish_reason(stats))
            final["speculative"] = schemas.speculative(stats, job.drafter_name,
                                                       job.reused_tokens)
            yield {"data": json.dumps(final)}
            if include_usage:
                tail = {"id": rid, "object": final["object"], "created": final["created"],
                        "model": model, "choices": [],
                        "usage": schemas.usage(stats, job.reused_tokens)}
                yield {"data": json.dumps(tail)}
            finished(stats, 200)
            break
        yield {"data": "[DONE]"}
    finally:
        # normally a no-op (the job is done); if the client went away mid-stream, this
        # stops the generation within one verification round and frees the model
        job.cancelled.set()
