"""Fault injection against `specpair serve` with the real 0.5B as target, on loopback, bounded in
count and time: malformed bodies (Hypothesis), clients that leave at random points, SIGTERM
under load, and a soak of 1,000 short requests whose memory must not grow."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specpair
from specpair.call import CallOptions
from specpair.core.prompt import encode_prompt
from specpair.measure.agreement import check_tokens
from specpair.serve.app import ServeSettings, create_app
from specpair.serve.engine import Engine

from .serving import running

pytestmark = pytest.mark.real

CAP = 8  # every generation is short: the suite stays bounded in time


@pytest.fixture(scope="module")
def served(draft_path):
    pair = specpair.load(draft_path, draft="suffix", n_ctx=2048)
    engine = Engine(pair, max_queue=4)
    app = create_app(engine, ServeSettings(model="m", drafter="suffix", max_tokens_cap=CAP,
                                           defaults=CallOptions(max_tokens=4)))
    with running(app) as url:
        yield url, engine, pair
    engine.shutdown(cancel_after=1)
    pair.close()


junk = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12)
fields = st.fixed_dictionaries({}, optional={
    "model": junk, "max_tokens": junk | st.integers(-5, 10**12), "temperature": junk,
    "top_p": junk, "top_k": junk, "min_p": junk, "seed": junk, "stop": junk, "n": junk,
    "stream": st.booleans() | junk, "stream_options": junk, "speculative": junk,
    "logprobs": junk, "extra": junk})
messages = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "robot"]) | junk},
    optional={"content": st.text(max_size=60) | junk}), max_size=3) | junk
chat_bodies = st.builds(lambda f, m: f | {"messages": m}, fields, messages) | junk
completion_bodies = st.builds(lambda f, p: f | {"prompt": p}, fields,
                              st.text(max_size=60) | st.lists(st.text(max_size=20),
                                                              max_size=2) | junk) | junk


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert isinstance(err["message"], str) and "type" in err
    elif "text/event-stream" in r.headers.get("content-type", ""):
        assert r.text.rstrip().endswith("data: [DONE]") or '"error"' in r.text
    else:
        assert r.json()["choices"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=chat_bodies)
def test_malformed_chat_bodies_get_2xx_or_4xx(served, body):
    url, _, _ = served
    _check(httpx.post(url + "/v1/chat/completions", content=json.dumps(body),
                      headers={"content-type": "application/json"}, timeout=60))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=completion_bodies)
def test_malformed_completion_bodies_get_2xx_or_4xx(served, body):
    url, _, _ = served
    _check(httpx.post(url + "/v1/completions", content=json.dumps(body),
                      headers={"content-type": "application/json"}, timeout=60))


def test_the_server_still_answers_after_the_junk(served):
    url, engine, _ = served
    assert httpx.get(url + "/health", timeout=5).json()["status"] == "ok"


PROMPT = {"role": "user", "content": "List the planets of the solar system, one per line."}


def _wait_idle(engine, seconds=30.0) -> None:
    deadline = time.monotonic() + seconds
    while (engine.busy or engine.queue_length) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.busy and engine.queue_length == 0


def test_clients_that_leave_at_random_points_leave_nothing_behind(served, draft_path):
    url, engine, _ = served
    rng = random.Random(0)
    long_prompt = {"role": "user", "content": "Summarize: " + "the quick brown fox " * 300}

    def leave_mid_stream(after_chunks: int) -> None:
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=60, json={
                "messages": [PROMPT], "max_tokens": CAP, "stream": True}) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i >= after_chunks:
                    break

    def leave_early(body: dict, after: float) -> None:
        try:
            httpx.post(url + "/v1/chat/completions", json=body, timeout=after)
        except httpx.TimeoutException:
            pass

    for _ in range(6):
        leave_mid_stream(rng.randint(0, 4))
    for _ in range(4):  # during prefill: a long prompt, gone after a few milliseconds
        leave_early({"messages": [long_prompt], "max_tokens": CAP}, rng.uniform(0.01, 0.2))
    # while queued: one holds the model, others wait and leave
    holder = threading.Thread(target=leave_early, args=(
        {"messages": [long_prompt], "max_tokens": CAP}, 60))
    holder.start()
    while not engine.busy:
        time.sleep(0.01)
    for _ in range(3):
        leave_early({"messages": [PROMPT], "max_tokens": CAP}, 0.05)
    holder.join()
    _wait_idle(engine)
    health = httpx.get(url + "/health", timeout=5).json()
    assert health["busy"] is False and health["queue"] == 0
    got = httpx.post(url + "/v1/chat/completions", timeout=60, json={
        "messages": [PROMPT], "max_tokens": CAP, "temperature": 0}).json()
    text = got["choices"][0]["message"]["content"]
    with specpair.load(draft_path, draft="none", n_ctx=2048) as fresh:
        if text != fresh.generate(messages=[PROMPT], max_tokens=CAP).text:
            # plain greedy output up to llama.cpp's near-ties (batch kernels differ by CPU):
            # every token the target's argmax given its prefix, or within the near-tie margin
            target = fresh.target
            check = check_tokens(target, encode_prompt(target, [PROMPT], chat=True),
                                 target.tokenize(text, add_bos=False))
            assert check.ok and check.near_tie, check.describe()


def _start_server(model: str, port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "specpair", "serve", "--target", model, "--draft", "suffix",
         "--port", str(port), "--threads", "2", "--n-ctx", "2048", *extra],
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"the server did not start: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)


def test_sigterm_under_load_exits_0_and_every_client_gets_an_answer(draft_path):
    port = 18500 + os.getpid() % 400
    grace = 2.0
    proc = _start_server(draft_path, port, "--shutdown-grace", str(grace), "--max-queue", "8")
    url = f"http://127.0.0.1:{port}"
    outcomes: list[str] = []

    def ask(stream: bool) -> None:
        body = {"messages": [PROMPT], "max_tokens": 400, "stream": stream}
        try:
            if stream:
                with httpx.stream("POST", url + "/v1/chat/completions", json=body,
                                  timeout=60) as r:
                    text = "".join(r.iter_lines())
                outcomes.append("complete" if "[DONE]" in text else "closed stream")
            else:
                r = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
                outcomes.append("complete" if r.status_code == 200 else
                                f"error {r.status_code} {r.json()['error']['type']}")
        except httpx.HTTPError as e:
            outcomes.append(f"closed: {type(e).__name__}")

    try:
        clients = [threading.Thread(target=ask, args=(i % 2 == 0,)) for i in range(5)]
        for c in clients:
            c.start()
            time.sleep(0.1)
        time.sleep(1.0)  # one decoding, four queued
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(timeout=grace + 30) == 0
        assert time.monotonic() - t0 < grace + 15
        for c in clients:
            c.join(timeout=30)
        assert len(outcomes) == 5, outcomes
        assert all(o == "complete" or o.startswith(("error 503", "closed")) for o in outcomes)
        log = proc.stderr.read()
        assert "Traceback" not in log and "Event loop is closed" not in log, log[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_soak_of_1000_short_requests_does_not_grow_memory(draft_path):
    psutil = pytest.importorskip("psutil")
    port = 18900 + os.getpid() % 90
    bound = 1000  # tokens the global suffix tree may hold
    proc = _start_server(draft_path, port, "--max-tokens-cap", "2",
                         "--suffix-max-cached-tokens", str(bound))
    url = f"http://127.0.0.1:{port}"
    rss = {}
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(1, 1001):
                r = c.post("/v1/chat/completions", json={"max_tokens": 1 + i % 2, "messages": [
                    {"role": "user", "content": f"Say the number {i % 37}."}]})
                assert r.status_code == 200
                if i in (100, 1000):
                    rss[i] = psutil.Process(proc.pid).memory_info().rss
        growth = rss[1000] / rss[100] - 1
        metrics = httpx.get(url + "/metrics", timeout=10).text
        tree = {line.split()[0].rsplit("_", 1)[-1]: float(line.split()[1])
                for line in metrics.splitlines() if line.startswith("specpair:suffix_tree_")}
        print(f"\nsoak: RSS {rss[100] / 2**20:.1f} MiB after 100 requests, "
              f"{rss[1000] / 2**20:.1f} MiB after 1000 ({growth:+.1%}); global suffix tree "
              f"{tree['tokens']:.0f} tokens (bound {bound}), {tree['nodes']:.0f} nodes, "
              f"~{tree['bytes'] / 2**10:.0f} KiB")
        assert growth < 0.05
        assert 0 < tree["tokens"] <= bound and tree["bytes"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
