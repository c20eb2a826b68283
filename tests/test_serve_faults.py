"""The server's defects found by reading its code, each with a test that failed before the fix
(toy model behind it, loopback only, bounded in time)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import httpx
import pytest

from specpair.call import CallOptions
from specpair.errors import EngineError

from .serving import running
from .test_serve import make_app

MESSAGE = {"messages": [{"role": "user", "content": "abc"}], "max_tokens": 4}


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\ud800"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "x\udfff"}]}]}),
    ("/v1/completions", {"prompt": "a\ud83d"}),
    ("/v1/completions", {"prompt": "abc", "stop": ["\ud800"]}),
    ("/v1/chat/completions", {"messages": [{"role": "user"}]}),  # no content
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}], "seed": -1}),
])
def test_text_the_model_cannot_read_is_a_400_not_a_500(path, body):
    app, _ = make_app()
    with running(app) as url:  # valid JSON: the surrogates travel as \\uXXXX escapes
        r = httpx.post(url + path, content=json.dumps(body), timeout=10,
                       headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert set(r.json()["error"]) >= {"message", "type", "param"}


def test_an_internal_error_is_a_500_with_an_openai_body_and_a_logged_traceback(caplog):
    app, engine = make_app()

    def broken(tokens, *, all_logits=True):
        raise RuntimeError("engine fell over")

    with running(app) as url:
        engine.target.eval = broken
        with caplog.at_level(logging.ERROR, logger="specpair.serve"):
            r = httpx.post(url + "/v1/chat/completions", json=MESSAGE, timeout=10)
            s = httpx.post(url + "/v1/chat/completions", json=MESSAGE | {"stream": True},
                           timeout=10)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"
    assert "Traceback" not in r.text and "engine fell over" not in r.text
    assert "internal error" in s.text and "Traceback" not in s.text
    assert any(rec.exc_info for rec in caplog.records)  # the log has the traceback


def test_an_engine_error_a_user_caused_is_still_a_400():
    app, engine = make_app()

    def refuses(tokens, *, all_logits=True):
        raise EngineError("the engine refused this input: shorten it")

    with running(app) as url:
        engine.target.eval = refuses
        r = httpx.post(url + "/v1/chat/completions", json=MESSAGE, timeout=10)
    assert r.status_code == 400 and "shorten it" in r.json()["error"]["message"]


def test_clients_that_left_the_queue_do_not_count_against_max_queue():
    app, engine = make_app(delay=0.05, max_queue=1)
    slow = MESSAGE | {"max_tokens": 40, "speculative": {"draft": "none"}}
    with running(app) as url:
        first = threading.Thread(target=lambda: httpx.post(url + "/v1/chat/completions",
                                                           json=slow, timeout=30))
        first.start()
        while not engine.busy:
            time.sleep(0.01)
        with httpx.Client(timeout=0.3) as c:  # waits in the queue, then gives up
            with pytest.raises(httpx.ReadTimeout):
                c.post(url + "/v1/chat/completions", json=slow)
        deadline = time.monotonic() + 5
        while engine.queue_length and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.queue_length == 0  # its place is free again
        r = httpx.post(url + "/v1/chat/completions", json=MESSAGE, timeout=30)
        assert r.status_code == 200
        first.join()


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_all_read():
    """The body limit reads chunks as they come and answers 413 once they cross it: of a 2 MB
    chunked body, the app asks for three 1 kB chunks, not two thousand."""
    from specpair.serve.app import BodyLimit

    reached = []

    async def app(scope, receive, send):  # what the limit protects: never reached here
        reached.append(scope)

    read = []

    async def receive():
        read.append(1)
        return {"type": "http.request", "body": b"a" * 1000, "more_body": len(read) < 2000}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimit(app, limit=2000)(scope, receive, send))
    assert sent[0]["status"] == 413 and not reached
    assert len(read) == 3


def _suffix_app(scope: str):
    return make_app(draft="suffix", defaults=CallOptions(suffix_cache=scope),
                    api_keys=("key-a", "key-b"), max_tokens_cap=64)


def _ask(url: str, key: str) -> dict:
    return httpx.post(url + "/v1/completions", timeout=30, headers={
        "Authorization": f"Bearer {key}"}, json={"prompt": "a", "max_tokens": 20}).json()


@pytest.mark.parametrize("scope", ["key", "global"])
def test_a_proposal_never_comes_from_another_keys_outputs(scope):
    """The walk a -> b -> c ... has no repetition within 20 tokens: a request drafts only from
    earlier outputs. Per key (the default), B's request finds nothing of A's; shared
    (--suffix-cache global), it drafts A's text."""
    app, engine = _suffix_app(scope)
    with running(app) as url:
        a = _ask(url, "key-a")
        b = _ask(url, "key-b")
        a2 = _ask(url, "key-a")
    assert a["choices"][0]["text"] == b["choices"][0]["text"] == a2["choices"][0]["text"]
    assert a["speculative"]["drafted"] == 0
    assert a2["speculative"]["accepted"] > 10  # a key drafts from its own earlier outputs
    if scope == "key":
        assert b["speculative"]["drafted"] == 0
        assert len(engine.pair.suffix_caches()) == 2
    else:
        assert b["speculative"]["accepted"] > 10


def test_metrics_report_the_suffix_trees_size():
    app, _ = _suffix_app("key")
    with running(app) as url:
        _ask(url, "key-a")
        text = httpx.get(url + "/metrics", headers={"Authorization": "Bearer key-a"}).text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("specpair:suffix_tree_")}
    assert values["specpair:suffix_tree_requests"] == 1
    assert values["specpair:suffix_tree_tokens"] == 20
    assert values["specpair:suffix_tree_bytes"] > 0


@pytest.mark.parametrize("options, words", [
    (["--max-tokens", "10", "--max-tokens-cap", "5"], ["--max-tokens", "(5)"]),
    (["--max-tokens-cap", "0"], ["--max-tokens-cap"]),
    (["--max-queue", "-1"], ["--max-queue"]),
])
def test_serve_refuses_bad_options_in_one_line_before_loading(capsys, options, words):
    from specpair.cli import main

    from .test_cli import assert_one_line_error

    assert main(["serve", "--target", "not-loaded.gguf", *options]) == 2
    assert_one_line_error(capsys.readouterr().err, *words)


def test_bench_counts_an_error_chunk_mid_stream_as_an_error_not_a_short_completion():
    """A server that streams a few tokens and then `data: {"error": ...}` (as vLLM and
    specpair do when a request fails mid-stream) failed that request: `bench --endpoint` raised
    nothing before and counted it as a 2-token completion."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from specpair.core.sampling import SamplingConfig
    from specpair.measure.endpoint import Client, Endpoint, EndpointError
    from specpair.measure.suites import Prompt

    app = FastAPI()

    @app.post("/v1/chat/completions")
    def failing() -> StreamingResponse:
        def events():
            yield 'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
            yield 'data: {"error": {"message": "the engine failed", "type": "server_error"}}\n\n'
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    with running(app) as url:
        client = Client(Endpoint(url, "failing"), timeout=10)
        with pytest.raises(EndpointError, match="error mid-stream: the engine failed"):
            client.request(Prompt("hello"), max_tokens=8, sampling=SamplingConfig(), seed=0)
