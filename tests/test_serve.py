"""`specpair serve` over HTTP on loopback, with a toy model behind it: the OpenAI client works
against it, every bad request gets a 4xx with an OpenAI-style body, the queue answers 429 when
full, a client that disconnects frees the model, and /metrics agrees with the responses."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest

import specpair
from specpair.call import CallOptions
from specpair.serve.app import ServeSettings, create_app
from specpair.serve.engine import Engine

from .conftest import unavailable
from .serving import running
from .toy import MultiToy, ToyBackend, walk_table

try:
    import openai
except ImportError:
    unavailable("the openai client is not installed: pip install -e '.[test]'", module=True)



class SlowToy(ToyBackend):
    """Every eval takes `delay` seconds: long enough to hold the model while others queue."""

    def __init__(self, *args, delay: float = 0.0, **kw) -> None:
        super().__init__(*args, **kw)
        self.delay = delay

    def eval(self, tokens, *, all_logits=True):
        time.sleep(self.delay)
        return super().eval(tokens, all_logits=all_logits)


def make_app(*, delay=0.0, max_queue=4, n_ctx=256, draft="ngram", table=None,
             defaults: CallOptions | None = None, **settings):
    """A toy server drafting with `draft`; `defaults`: its generation flags."""
    backend = SlowToy(walk_table() if table is None else table, n_ctx=n_ctx, delay=delay)
    pair = specpair.load(backend, draft=draft, n_ctx=n_ctx, fresh=True)
    engine = Engine(pair, max_queue=max_queue)
    opts = {"model": "toy", "drafter": draft, "max_tokens_cap": 64,
            "defaults": defaults or CallOptions()} | settings
    return create_app(engine, ServeSettings(**opts)), engine


@pytest.fixture
def server():
    app, engine = make_app()
    with running(app) as url:
        yield url, engine


def client(url, key="none"):
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


def test_chat_and_completion_streaming_and_not(server):
    url, _ = server
    c = client(url)
    chat = c.chat.completions.create(model="toy", messages=[{"role": "user", "content": "abc"}],
                                     max_tokens=6)
    assert chat.choices[0].message.content == "defghi"
    assert chat.usage.completion_tokens == 6 and chat.choices[0].finish_reason == "length"
    spec = chat.model_extra["speculative"]
    assert spec["drafter"] == "ngram" and spec["completion_tokens"] == 6
    comp = c.completions.create(model="toy", prompt="klm", max_tokens=4)
    assert comp.choices[0].text == "nopq"
    pieces, final = [], None
    for ch in c.chat.completions.create(model="toy", stream=True, max_tokens=5,
                                        messages=[{"role": "user", "content": "abc"}],
                                        stream_options={"include_usage": True}):
        if ch.choices and ch.choices[0].delta.content:
            pieces.append(ch.choices[0].delta.content)
        if ch.model_extra.get("speculative"):
            final = ch.model_extra["speculative"]
        if ch.usage:
            assert ch.usage.completion_tokens == 5
    assert "".join(pieces) == "defgh" and final["completion_tokens"] == 5
    text = "".join(ch.choices[0].text for ch in c.completions.create(
        model="toy", prompt="klm", max_tokens=3, stream=True) if ch.choices)
    assert text == "nop"
    assert c.models.list().data[0].id == "toy"


def test_stop_strings_and_per_request_drafter(server):
    url, _ = server
    r = httpx.post(url + "/v1/completions", json={
        "prompt": "abc", "max_tokens": 20, "stop": ["gh"],
        "speculative": {"draft": "none"}}).json()
    assert r["choices"][0]["text"] == "def" and r["choices"][0]["finish_reason"] == "stop"
    assert r["speculative"]["drafter"] == "none" and r["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize("body, words", [
    ('{"messages": [', "not valid JSON"),
    ({"messages": [{"role": "user", "content": "abc"}], "max_tokens": "many"}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "abc"}], "temperature": -1}, "temperature"),
    ({"messages": [{"role": "user", "content": "abc"}], "max_tokens": 65}, "cap of 64"),
    ({"messages": [{"role": "user", "content": "abc"}], "n": 2}, "n"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "abcdefghij" * 30}]}, "context holds"),
    ({"messages": [{"role": "user", "content": "abc"}], "speculative": {"draft": "x"}},
     "speculative"),
    ({"messages": [{"role": "user", "content": "abc"}], "speculative": {"draft": "model"}},
     "may choose ngram, none"),
    # fields the server does not implement are refused unless neutral, never silently ignored
    ({"messages": [{"role": "user", "content": "abc"}], "logprobs": True}, "logprobs"),
    ({"messages": [{"role": "user", "content": "abc"}], "top_logprobs": 3}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "abc"}], "frequency_penalty": 0.5},
     "frequency_penalty is not supported"),
    ({"messages": [{"role": "user", "content": "abc"}], "presence_penalty": -1},
     "presence_penalty"),
    ({"messages": [{"role": "user", "content": "abc"}], "logit_bias": {"5": 100}},
     "logit_bias"),
    # stops are bounded as OpenAI bounds them: each is scanned after every token
    ({"messages": [{"role": "user", "content": "abc"}], "stop": ["a", "b", "c", "d", "e"]},
     "at most 4 stop"),
    ({"messages": [{"role": "user", "content": "abc"}], "stop": "x" * 300},
     "at most 256 characters"),
])
def test_bad_requests_get_400_with_an_openai_error_body(server, body, words):
    url, _ = server
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(url + "/v1/chat/completions", content=content,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and words in error["message"]
    assert "Traceback" not in r.text


def test_unknown_fields_are_accepted_and_ignored(server):
    url, _ = server
    r = httpx.post(url + "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "abc"}], "max_tokens": 2, "user": "me",
        "frequency_penalty": 0, "presence_penalty": 0.0, "logprobs": False, "logit_bias": {}})
    assert r.status_code == 200


class TemplateToy(SlowToy):
    """Renders each message as role letter + content, so a dropped turn shows."""

    seen: list = []

    def chat_prompt(self, messages):
        TemplateToy.seen.append([m["role"] for m in messages])
        return super().chat_prompt(messages)


def test_a_developer_message_is_the_system_prompt_not_dropped():
    backend = TemplateToy(walk_table(), n_ctx=256)
    pair = specpair.load(backend, draft="none", n_ctx=256, fresh=True)
    engine = Engine(pair, max_queue=2)
    app = create_app(engine, ServeSettings(model="toy", drafter="none", max_tokens_cap=64,
                                           defaults=CallOptions()))
    TemplateToy.seen.clear()
    with running(app) as url:
        r = httpx.post(url + "/v1/chat/completions", json={
            "messages": [{"role": "developer", "content": "ab"},
                         {"role": "user", "content": "cd"}], "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert TemplateToy.seen and TemplateToy.seen[-1] == ["system", "user"]


def test_api_key_and_body_size_limit():
    app, _ = make_app(api_keys=("s3cret",), max_body_bytes=2000)
    with running(app) as url:
        body = {"messages": [{"role": "user", "content": "abc"}], "max_tokens": 2}
        assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 401
        wrong = httpx.post(url + "/v1/chat/completions", json=body,
                           headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == \
            "authentication_error"
        assert httpx.get(url + "/metrics").status_code == 401
        assert httpx.get(url + "/health").status_code == 200  # health stays open
        ok = client(url, "s3cret").chat.completions.create(
            model="toy", messages=body["messages"], max_tokens=2)
        assert ok.choices[0].message.content == "de"
        big = {"messages": [{"role": "user", "content": "a" * 5000}]}
        r = httpx.post(url + "/v1/chat/completions", json=big,
                       headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 413 and "error" in r.json()


def test_a_full_queue_answers_429_at_once():
    app, engine = make_app(delay=0.05, max_queue=1)
    with running(app) as url:
        body = {"messages": [{"role": "user", "content": "abc"}], "max_tokens": 30,
                "speculative": {"draft": "none"}}
        results: list[httpx.Response] = []

        def call():
            results.append(httpx.post(url + "/v1/chat/completions", json=body, timeout=30))

        first = threading.Thread(target=call)
        first.start()
        while not engine.busy:
            time.sleep(0.01)
        second = threading.Thread(target=call)
        second.start()
        while engine.queue_length < 1:
            time.sleep(0.01)
        t0 = time.monotonic()
        third = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
        assert time.monotonic() - t0 < 1.0  # at once, not after the others
        assert third.status_code == 429 and third.headers["retry-after"]
        assert third.json()["error"]["type"] == "rate_limit_error"
        first.join()
        second.join()
        assert [r.status_code for r in results] == [200, 200]


def test_a_client_that_disconnects_mid_stream_frees_the_model():
    app, engine = make_app(delay=0.05, max_queue=2)
    with running(app) as url:
        body = {"messages": [{"role": "user", "content": "abc"}], "max_tokens": 60,
                "stream": True, "speculative": {"draft": "none"}}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data:") and '"content": "d"' in line:
                    break  # one token in: hang up
        t0 = time.monotonic()
        while engine.busy:
            assert time.monotonic() - t0 < 2.0, "the generation was not cancelled"
            time.sleep(0.01)
        # 60 tokens at 0.05 s would take 3 s: it stopped within a round or two
        metrics = httpx.get(url + "/metrics").text
        assert "specpair:generation_tokens_total" in metrics
        generated = _metric(metrics, "specpair:generation_tokens_total")
        assert generated < 20
        after = httpx.post(url + "/v1/chat/completions", json=body | {"stream": False,
                                                                      "max_tokens": 3})
        assert after.json()["choices"][0]["message"]["content"] == "def"


def _metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return 0.0


def test_metrics_agree_with_the_responses_and_the_second_turn_reuses_the_prompt(server):
    url, _ = server
    c = client(url)
    messages = [{"role": "user", "content": "abcdefabcdef"}]
    first = c.chat.completions.create(model="toy", messages=messages, max_tokens=12)
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "xyz"}]
    second = c.chat.completions.create(model="toy", messages=messages, max_tokens=12)
    specs = [first.model_extra["speculative"], second.model_extra["speculative"]]
    # the whole first conversation is a prefix of the second: it is not evaluated again
    assert specs[1]["prompt_tokens_reused"] >= first.usage.prompt_tokens
    assert second.usage.prompt_tokens_details.cached_tokens == specs[1]["prompt_tokens_reused"]
    text = httpx.get(url + "/metrics").text
    assert _metric(text, "specpair:spec_decode_num_draft_tokens_total") == sum(
        s["drafted"] for s in specs)
    assert _metric(text, "specpair:spec_decode_num_accepted_tokens_total") == sum(
        s["accepted"] for s in specs)
    assert _metric(text, "specpair:spec_decode_num_drafts_total") == sum(s["drafts"]
                                                                        for s in specs)
    per_pos = _metric(text, "specpair:spec_decode_num_accepted_tokens_per_pos_total",
                      '{position="0"}')
    assert per_pos == sum(round(s["acceptance_by_position"][0] * s["drafts"]) for s in specs
                          if s["drafts"])
    assert 'specpair:requests_total{endpoint="/v1/chat/completions",status="200"} 2.0' in text
    assert "specpair:tokens_per_second_bucket" in text and "specpair:num_requests_waiting" in text


def test_the_chat_page_is_served_self_contained(server):
    url, _ = server
    page = httpx.get(url + "/").text
    assert "<script>" in page and "/v1/chat/completions" in page
    assert "http://" not in page and "https://" not in page  # no CDN, no external asset


def test_a_chunked_body_is_size_checked_and_still_read():
    app, _ = make_app(max_body_bytes=2000)
    with running(app) as url:
        def chunks(payload):
            yield payload[:10]
            yield payload[10:]

        ok = json.dumps({"prompt": "abc", "max_tokens": 2}).encode()
        r = httpx.post(url + "/v1/completions", content=chunks(ok),
                       headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == "de"
        big = json.dumps({"prompt": "a" * 5000}).encode()
        r = httpx.post(url + "/v1/completions", content=chunks(big),
                       headers={"content-type": "application/json"})
        assert r.status_code == 413


# -- what a request asks for is what it gets; what it leaves out is the server's -------------
CHAT = [{"role": "user", "content": "abc"}]


def test_the_servers_sampling_defaults_hold_where_a_request_is_silent():
    """`serve --temperature 0.9`: a request without a temperature samples at 0.9 (three seeds,
    not three identical greedy answers); one that says temperature 0 is greedy."""
    table = np.random.default_rng(0).normal(size=(26, 26)).astype(np.float32)
    app, _ = make_app(draft="none", table=table, defaults=CallOptions(temperature=0.9))
    with running(app) as url:
        def ask(**fields):
            r = httpx.post(url + "/v1/chat/completions", timeout=30,
                           json={"messages": CHAT, "max_tokens": 12, **fields})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"]

        sampled = {ask(seed=s) for s in (1, 2, 3)}
        greedy = {ask(seed=s, temperature=0) for s in (1, 2, 3)}
    assert len(sampled) > 1
    assert len(greedy) == 1


def _cached(url: str, key: str, content: str) -> int:
    r = httpx.post(url + "/v1/chat/completions", timeout=30,
                   headers={"authorization": f"Bearer {key}"},
                   json={"messages": [{"role": "user", "content": content}], "max_tokens": 4})
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens_details"]["cached_tokens"]


@pytest.mark.parametrize("scope", ["key", "global"])
def test_a_cached_prompt_prefix_is_reused_only_within_one_key(scope):
    """Client B must not learn from cached_tokens (or its prefill time) whether A's last
    prompt began with a given text; under --suffix-cache global everyone is one domain."""
    app, _ = make_app(api_keys=("key-a", "key-b"), defaults=CallOptions(suffix_cache=scope))
    prompt = "abcdefghijklmnop"
    with running(app) as url:
        _cached(url, "key-a", prompt)
        assert _cached(url, "key-a", prompt) > 0  # the same key: the prefix is reused
        b = _cached(url, "key-b", prompt)
    assert (b > 0) == (scope == "global")


def test_a_request_may_not_choose_a_drafter_the_server_was_not_started_with():
    app, _ = make_app(draft="none")
    with running(app) as url:
        r = httpx.post(url + "/v1/chat/completions", timeout=30, json={
            "messages": CHAT, "max_tokens": 4, "speculative": {"draft": "auto"}})
        assert r.status_code == 400
        assert "may choose none" in r.json()["error"]["message"]
        health = httpx.get(url + "/health").json()
        ok = httpx.post(url + "/v1/chat/completions", timeout=30, json={
            "messages": CHAT, "max_tokens": 4, "speculative": {"draft": "none"}})
    assert health["drafter"] == "none" and health["drafters"] == ["none"]
    assert ok.status_code == 200


def test_max_queue_0_runs_one_request_and_queues_none():
    app, engine = make_app(delay=0.05, max_queue=0)
    with running(app) as url:
        body = {"messages": CHAT, "max_tokens": 20}
        assert httpx.post(url + "/v1/chat/completions", json=body, timeout=30).status_code == 200
        results: list[httpx.Response] = []
        first = threading.Thread(target=lambda: results.append(
            httpx.post(url + "/v1/chat/completions", json=body, timeout=30)))
        first.start()
        while not engine.busy:
            time.sleep(0.01)
        second = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
        first.join()
    assert second.status_code == 429 and results[0].status_code == 200


class BlockingToy(ToyBackend):
    """An eval that does not return until released: a long prefill, which no cancel stops."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.entered, self.release = threading.Event(), threading.Event()
        self.closed_during_eval = False
        self._in_eval = False

    def eval(self, tokens, *, all_logits=True):
        self._in_eval = True
        self.entered.set()
        self.release.wait(30)
        self._in_eval = False
        return super().eval(tokens, all_logits=all_logits)

    def close(self) -> None:
        self.closed_during_eval |= self._in_eval


def test_shutdown_waits_for_a_prefill_before_the_models_are_freed():
    """On SIGTERM the server cancels what runs and then frees the models: a prefill cannot be
    interrupted, so shutdown must wait for it (it used to give up after max(5, grace) s)."""
    from specpair.serve.engine import Job
    from specpair.serve.engine import Request as GenRequest

    backend = BlockingToy(walk_table())
    pair = specpair.load(backend, draft="none")
    engine = Engine(pair, max_queue=1)
    done = threading.Event()
    engine.submit(Job(GenRequest(prompt=[0, 1, 2, 3], call=pair.resolve(), kind="completion"),
                      lambda piece: None, lambda stats, error, internal: done.set()))
    assert backend.entered.wait(10)

    def stop():  # what `specpair serve` does on SIGTERM
        engine.shutdown(cancel_after=0.0)
        pair.close()

    stopper = threading.Thread(target=stop)
    stopper.start()
    stopper.join(6.0)  # longer than the old max(5, grace) timeout
    still_waiting = stopper.is_alive()
    backend.release.set()
    stopper.join(10)
    assert still_waiting and done.is_set()
    assert not backend.closed_during_eval


# -- several requests at once (--parallel) ------------------------------------------------------


class SlowMultiToy(MultiToy):
    def __init__(self, *args, delay: float = 0.0, **kw) -> None:
        super().__init__(*args, **kw)
        self.delay = delay

    def eval_many(self, parts):
        time.sleep(self.delay)
        return super().eval_many(parts)


def make_parallel_app(*, slots=3, delay=0.0, max_queue=4, draft="none"):
    backend = SlowMultiToy(walk_table(), n_seq=slots, delay=delay)
    pair = specpair.load(backend, draft=draft, fresh=True)
    engine = Engine(pair, max_queue=max_queue)
    app = create_app(engine, ServeSettings(model="toy", drafter=draft, max_tokens_cap=64,
                                           defaults=CallOptions()))
    return app, engine, backend


def test_parallel_slots_decode_concurrent_requests_in_one_batch_each_as_alone():
    app, engine, backend = make_parallel_app(slots=3, delay=0.01)
    prompts = ["abc", "klm", "xyz", "fgh"]
    with running(app) as url:
        health = httpx.get(url + "/health").json()
        assert health["slots"] == 3 and health["busy_slots"] == 0
        out: dict[str, str] = {}

        def ask(p):
            r = httpx.post(url + "/v1/completions", json={"prompt": p, "max_tokens": 12},
                           timeout=30)
            out[p] = r.json()["choices"][0]["text"]

        threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        metrics = httpx.get(url + "/metrics").text
    for p in prompts:  # the walk: each letter's successor, whatever shares the batch
        start = "abcdefghijklmnopqrstuvwxyz".index(p[-1]) + 1
        assert out[p] == "".join("abcdefghijklmnopqrstuvwxyz"[(start + i) % 26]
                                 for i in range(12)), p
    assert max(len(b) for b in backend.batches) == 3  # three requests' rows in one call
    assert _metric(metrics, "specpair:num_slots") == 3
    # the scheduler's own account: every request's 12 tokens came from rounds of the batch
    assert _metric(metrics, "specpair:batch_slot_rounds_total") >= 4 * 12 - 4
    assert _metric(metrics, "specpair:batch_steps_total") < _metric(
        metrics, "specpair:batch_slot_rounds_total")  # several slots' rounds per step
    assert _metric(metrics, "specpair:batch_seconds_total") > 0


def test_a_non_streaming_client_that_leaves_frees_its_slot_within_a_round():
    app, engine, _ = make_parallel_app(slots=2, delay=0.05)
    with running(app) as url:
        body = {"prompt": "abc", "max_tokens": 60}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/completions", json=body, timeout=0.5)  # text is flowing
        t0 = time.monotonic()
        while engine.busy:
            assert time.monotonic() - t0 < 1.0, "the slot was not freed"
            time.sleep(0.01)
        generated = _metric(httpx.get(url + "/metrics").text,
                            "specpair:generation_tokens_total")
    assert generated < 30  # 60 tokens at 0.05 s would take 3 s


def test_shutdown_with_busy_slots_cancels_them_cleanly():
    from specpair.serve.engine import Job
    from specpair.serve.engine import Request as GenRequest

    backend = SlowMultiToy(walk_table(), n_seq=3, delay=0.02)
    pair = specpair.load(backend, draft="none")
    engine = Engine(pair, max_queue=2)
    results: list = []
    for p in ([0, 1], [5, 6], [9, 10], [3, 4]):
        engine.submit(Job(GenRequest(prompt=p, call=pair.resolve(CallOptions(max_tokens=60)),
                                     kind="completion"), lambda piece: None,
                          lambda stats, error, internal: results.append((stats, error))))
    time.sleep(0.2)
    assert engine.busy_slots == 3
    engine.shutdown(cancel_after=0.1)
    assert len(results) == 4 and not engine.busy
    assert sum(1 for _, e in results if e and "shutting down" in e) == 1  # the waiting one
    assert all(len(backend.seq_tokens(i)) < 60 for i in range(3))
