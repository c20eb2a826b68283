"""`specpair bench --endpoint` against running servers on loopback: specpair's own and
llama-cpp-python's (a server no one here wrote), with and without its prompt-lookup draft."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

import specpair
from specpair.backends import BackendConfig, load_backend
from specpair.cli import main
from specpair.serve.app import ServeSettings, create_app
from specpair.serve.engine import Engine

from .conftest import unavailable
from .serving import running

pytestmark = pytest.mark.real


@contextlib.contextmanager
def llama_cpp_server(model: str, port: int, *extra: str):
    """llama-cpp-python's OpenAI-compatible server, on 127.0.0.1, stopped afterwards."""
    try:
        import llama_cpp.server  # noqa: F401
        import pydantic_settings  # noqa: F401
    except ImportError as e:
        unavailable(f"llama-cpp-python[server] is not installed ({e.name})")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model,
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                             "--verbose", "false", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama-cpp-python's server did not start: {proc.stderr.read()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_bench_endpoint_against_llama_cpp_python_and_specpair(draft_path, tmp_path, capsys):
    port = 19000 + os.getpid() % 500
    config = BackendConfig(n_ctx=2048)
    target = load_backend(draft_path, config)
    engine = Engine(specpair.load(target, draft="ngram"), max_queue=4)
    app = create_app(engine, ServeSettings(model="qwen-0.5b", drafter="ngram"))
    with running(app) as ours, \
            llama_cpp_server(draft_path, port) as plain, \
            llama_cpp_server(draft_path, port + 1, "--draft_model",
                             "prompt-lookup-decoding") as lookup:
        out = tmp_path / "endpoints.json"
        code = main(["bench", "--endpoint", plain, "--endpoint", lookup, "--endpoint", ours,
                     "--label", "llama-cpp-python", "--label", "llama-cpp-python+lookup",
                     "--label", "specpair ngram", "--suite", "edit", "--runs", "2", "-n", "24",
                     "--concurrency", "2", "--json", str(out)])
        assert code == 0, capsys.readouterr().err
    engine.shutdown(cancel_after=1)
    target.close()
    report = json.loads(out.read_text())
    plain_r, lookup_r, ours_r = report["endpoints"]
    for r in report["endpoints"]:
        assert r["tokens_per_second"]["n"] == 2 and r["tokens_per_second"]["mean"] > 0
        assert r["ttft"]["mean"] > 0
        assert [row["run"] for row in r["runs"]] == [0, 1]
        point = r["load"]["2"]  # a closed loop of 2 in flight, 4 x 2 requests
        assert point["ok"] == 8 and point["p99"] >= point["p50"] > 0
    # (llama-cpp-python's server interrupts a stream when another request arrives: its
    # answers under load can be empty, so time to first token is checked on ours)
    assert ours_r["load"]["2"]["ttft_p50"] > 0
    for r in (lookup_r, ours_r):
        assert r["speedup"]["ratio"] > 0 and "agreement" in r
    # specpair's server reports its drafts; llama-cpp-python exposes no counters
    assert ours_r["speculative"]["source"] == "speculative"
    assert ours_r["speculative"]["drafted"] > 0
    assert ours_r["load"]["2"]["drafted"] > 0  # from its /metrics over the load point
    assert "speculative" not in plain_r
    terminal = capsys.readouterr().out
    assert "as fast as llama-cpp-python" in terminal
