"""`specpair serve` on the real models: the OpenAI client gets what `specpair generate` prints, a
bounded load test of 16 concurrent clients, SIGTERM, and the chat page in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import specpair
from specpair.backends import BackendConfig, load_backend
from specpair.cli import main
from specpair.core.prompt import encode_prompt
from specpair.measure.agreement import check_tokens
from specpair.serve.app import ServeSettings, create_app
from specpair.serve.engine import Engine

from .conftest import unavailable
from .serving import running

pytestmark = pytest.mark.real

try:
    import openai
except ImportError:
    unavailable("the openai client is not installed: pip install -e '.[test]'", module=True)

PROMPTS = ["Write a haiku about tides.", "List three prime numbers.",
           "Repeat exactly: red green blue red green blue red green blue",
           "What is the capital of France?"]


@pytest.fixture(scope="module")
def server(draft_path):
    """The 0.5B as the target (fast enough for a load test), n-gram drafting, queue of 16."""
    config = BackendConfig(n_ctx=2048)
    target = load_backend(draft_path, config)
    engine = Engine(specpair.load(target, draft="ngram"), max_queue=16)
    app = create_app(engine, ServeSettings(model="qwen-0.5b", drafter="ngram"))
    with running(app) as url:
        yield url
    engine.shutdown(cancel_after=1)
    target.close()


def chat(url, prompt, *, stream=False, max_tokens=24):
    c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": prompt}]
    if not stream:
        r = c.chat.completions.create(model="m", messages=messages, max_tokens=max_tokens)
        return r.choices[0].message.content, r.model_extra["speculative"]
    text, spec = "", None
    for ch in c.chat.completions.create(model="m", messages=messages, max_tokens=max_tokens,
                                        stream=True):
        if ch.choices and ch.choices[0].delta.content:
            text += ch.choices[0].delta.content
        spec = ch.model_extra.get("speculative") or spec
    return text, spec


def test_greedy_output_equals_specpair_generate(server, draft_path, capsys):
    prompt = PROMPTS[2]
    text, spec = chat(server, prompt)
    assert spec["drafted"] > 0 and 0 < spec["completion_tokens"] <= 24
    code = main(["generate", prompt, "--chat", "--target", draft_path, "--draft", "ngram",
                 "-n", "24", "--json", "--n-ctx", "2048"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["text"] == text
    streamed, _ = chat(server, prompt, stream=True)
    assert streamed == text


def test_load_16_concurrent_clients(server, draft_path):
    """Bounded: 32 requests, 16 at a time, each at most 24 tokens, 120 s timeout each. Every
    request completes with a well-formed response or a 429, and none is corrupted: each text
    equals the same request run alone, or, where it differs, every one of its tokens is the
    target's own choice up to a numerical near-tie. (The KV cache keeps the prefix a request
    shares with the previous one, so a prompt's cache was computed in other batch sizes than
    when it ran alone, and llama.cpp's kernels depend on batch size: see agreement.py.)"""
    alone = {p: chat(server, p)[0] for p in PROMPTS}
    jobs = [(PROMPTS[i % len(PROMPTS)], i % 2 == 0) for i in range(32)]
    latencies, texts, statuses = [], [], []

    def one(job):
        prompt, stream = job
        t0 = time.perf_counter()
        try:
            text, spec = chat(server, prompt, stream=stream)
            statuses.append(200)
        except openai.RateLimitError:
            statuses.append(429)
            return
        latencies.append(time.perf_counter() - t0)
        texts.append((prompt, text, spec["completion_tokens"]))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, jobs))
    wall = time.perf_counter() - t0
    assert len(statuses) == 32 and set(statuses) <= {200, 429}
    differ = [(p, t) for p, t, _ in texts if t != alone[p]]
    if differ:
        checker = load_backend(draft_path, BackendConfig(n_ctx=2048))
        for prompt, text in differ:
            tokens = checker.tokenize(text, add_bos=False)
            if checker.tokenize(alone[prompt], add_bos=False)[: len(tokens)] == tokens:
                continue  # a prefix of the same text: stopped early
            check = check_tokens(checker, encode_prompt(checker, prompt, chat=True), tokens)
            assert check.ok, (prompt, text, check.describe())
        checker.close()
    tokens = sum(n for _, _, n in texts)
    p50, p99 = np.percentile(latencies, [50, 99])
    print(f"\nload: {len(texts)} ok, {statuses.count(429)} x 429, "
          f"{len(texts) - len(differ)} identical to alone, {len(differ)} differing at near-ties, "
          f"p50 {p50:.2f} s, p99 {p99:.2f} s, {tokens / wall:.1f} tokens/s aggregate")


def test_sigterm_finishes_or_cancels_in_flight_work_and_exits_0(gemma_path, tmp_path):
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "specpair.cli", "serve", "--target", gemma_path, "--draft",
         "none", "--port", str(port), "--shutdown-grace", "2"],
        stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        got: list = []

        def long_request():
            try:
                got.append(httpx.post(url + "/v1/completions", timeout=30, json={
                    "prompt": "Once upon a time", "max_tokens": 2000}).status_code)
            except httpx.HTTPError as e:
                got.append(type(e).__name__)

        t = threading.Thread(target=long_request)
        t.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - t0 < 15  # the grace (2 s) bounds it, not the 2000 tokens
        t.join(timeout=20)
        assert got  # the client got an answer or a closed connection, and did not hang
    finally:
        if proc.poll() is None:
            proc.kill()


def test_chat_page_in_a_real_browser(server, tmp_path):
    """Headless Chromium (Debian's package): send a message, see streamed tokens with their
    provenance marks, the stats panel filled in, and keep a screenshot."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        unavailable("Debian's chromium is not installed: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto(server + "/")
        page.select_option("#drafter", "ngram")  # waits for the options /health lists
        options = page.eval_on_selector_all("#drafter option", "os => os.map(o => o.value)")
        assert options == ["ngram", "none"]  # this server's drafter, and plain decoding
        page.fill("#maxtok", "40")
        page.fill("#input", PROMPTS[2])
        page.click("#send")
        page.wait_for_function(
            "document.getElementById('s-acc').textContent.includes('%')", timeout=120_000)
        assert page.locator(".assistant .tok.draft").count() > 0  # accepted from the draft
        assert page.locator(".assistant .tok.target").count() > 0  # the target's own
        assert page.text_content("#s-drafter") == "ngram"
        assert float(page.text_content("#s-tps")) > 0
        shot = tmp_path / "chat.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.read_bytes()[:4] == b"\x89PNG"


def test_a_draft_with_another_tokenizer_serves_exactly(draft_path, gemma_path, monkeypatch):
    """serve --draft gemma-3-270m for a Qwen target: drafting goes through text, and greedy
    output is what the same server gives with no draft."""
    from specpair.tokenizers import compare as compare_module
    from specpair.tokenizers.compare import TEXT_LEVEL

    pair = specpair.load(draft_path, draft=gemma_path, n_ctx=2048)
    assert pair.resolver.comparison(gemma_path).verdict == TEXT_LEVEL
    target = pair.target
    engine = Engine(pair, max_queue=4)
    with running(create_app(engine, ServeSettings(model="m", drafter="model"))) as url:
        def ask(which):
            return httpx.post(url + "/v1/chat/completions", timeout=120, json={
                "model": "m", "max_tokens": 24, "temperature": 0,
                "messages": [{"role": "user", "content": PROMPTS[2]}],
                "speculative": {"draft": which}}).json()

        spec, plain = ask("model"), ask("none")
        # sampled requests draft by token-level intersection over the pair's shared strings:
        # the map (~400k token_bytes calls) is built once per engine, not once per request
        calls = []
        real = compare_module.shared_strings
        monkeypatch.setattr(compare_module, "shared_strings",
                            lambda *a: calls.append(1) or real(*a))
        pair.resolver.comparison(gemma_path).__dict__.pop("shared", None)  # count from now
        for seed in (1, 2):
            r = httpx.post(url + "/v1/chat/completions", timeout=120, json={
                "model": "m", "max_tokens": 6, "temperature": 0.8, "seed": seed,
                "messages": [{"role": "user", "content": PROMPTS[2]}],
                "speculative": {"draft": "model"}})
            assert r.status_code == 200 and r.json()["speculative"]["drafter"].endswith("(TLI)")
        assert len(calls) == 1
    engine.shutdown(cancel_after=1)
    assert spec["speculative"]["drafter"].endswith("(text-level)")
    assert spec["speculative"]["drafted"] > 0
    text = spec["choices"][0]["message"]["content"]
    if text != plain["choices"][0]["message"]["content"]:  # only a near-tie may differ
        check = check_tokens(target, encode_prompt(target, PROMPTS[2], chat=True),
                             target.tokenize(text, add_bos=False))
        assert check.ok, check.describe()
    target.close()


def _serve(args: list[str], port: int):
    proc = subprocess.Popen([sys.executable, "-m", "specpair.cli", "serve", "--port", str(port),
                             *args], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(proc.stderr.read())
        time.sleep(0.2)


def test_parallel_slots_serve_three_at_once_each_token_the_targets_own(draft_path, draft):
    """`serve --parallel 3` on the 0.5B: three requests decode in one batch per step, each
    token of each answer is the target's argmax or a near-tie given its own prefix; two API
    keys' requests share no cached prefix; SIGTERM with busy slots exits 0."""
    port = 19000 + os.getpid() % 1000
    proc, url = _serve(["--target", draft_path, "--draft", "suffix", "--parallel", "3",
                        "--n-ctx", "512", "--api-key", "alice", "--api-key", "bob"], port)
    try:
        assert httpx.get(url + "/health").json()["slots"] == 3

        def ask(prompt, key="alice", max_tokens=24):
            r = httpx.post(url + "/v1/completions", timeout=120, json={
                "prompt": prompt, "max_tokens": max_tokens},
                headers={"Authorization": f"Bearer {key}"})
            return r.json()

        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(ask, PROMPTS[:3]))
        for prompt, answer in zip(PROMPTS[:3], answers):
            tokens = encode_prompt(draft, prompt, chat=False)
            out = draft.tokenize(answer["choices"][0]["text"], add_bos=False)
            check = check_tokens(draft, tokens, out)
            assert check.ok, check.describe()
        shared = "Here is a long shared preamble about ships and tides. " * 4
        ask(shared + "One.", "alice", 4)
        assert ask(shared + "Two.", "alice", 4)["usage"]["prompt_tokens_details"][
            "cached_tokens"] > 20
        assert ask(shared + "Two.", "bob", 4)["usage"]["prompt_tokens_details"][
            "cached_tokens"] == 0
        ends: list[str] = []

        def long_request():
            try:
                ends.append(str(ask("Once upon a time", "bob", 400).get("object")))
            except (httpx.HTTPError, ValueError) as e:  # a connection closed at shutdown
                ends.append(type(e).__name__)

        threads = [threading.Thread(target=long_request) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        assert httpx.get(url + "/health").json()["busy_slots"] >= 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        for t in threads:
            t.join(30)
        assert len(ends) == 3  # every client got an answer or a closed connection
    finally:
        if proc.poll() is None:
            proc.kill()


def test_parallel_a_non_streaming_client_that_leaves_frees_its_slot_within_a_round(draft_path):
    target = load_backend(draft_path, BackendConfig(n_ctx=512, n_seq=3))
    engine = Engine(specpair.load(target, draft="none"), max_queue=2)
    app = create_app(engine, ServeSettings(model="qwen-0.5b", drafter="none"))
    try:
        with running(app) as url:
            with pytest.raises(httpx.ReadTimeout):  # text is flowing when the client leaves
                httpx.post(url + "/v1/completions", timeout=1.5, json={
                    "prompt": "Once upon a time", "max_tokens": 400})
            t0 = time.monotonic()
            while engine.busy:
                assert time.monotonic() - t0 < 1.0, "the slot was not freed"
                time.sleep(0.01)
    finally:
        engine.shutdown(cancel_after=1)
        target.close()
