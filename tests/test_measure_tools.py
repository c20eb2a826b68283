"""Measurement tools that need no model: the loop-overhead benchmark, the Spec-Bench suite
loader, the GPU check's dry run on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from specpair.cli import main
from specpair.errors import SpecpairError
from specpair.measure.suites import SPEC_BENCH_ENV, load_suite

from .conftest import need


def test_overhead_measures_every_combination_and_prints_the_share(capsys):
    assert main(["overhead", "--rounds", "10", "--device", "none", "--json", "-"]) == 0
    out = capsys.readouterr().out
    assert "decode loop overhead" in out  # the table, then the JSON
    rows = json.loads(out[out.index("{"):])["rows"]
    assert all(r["share_of_10ms_step"] == pytest.approx(r["ms_per_round"] / 10) for r in rows)
    assert {(r["sampling"], r["k"]) for r in rows} == {
        (s, k) for s in ("greedy", "sampled") for k in (1, 4, 8, 16)}
    greedy = [r for r in rows if r["sampling"] == "greedy"]
    assert all(r["acceptance"] == 1.0 and r["ms_per_round"] > 0 for r in greedy)


def _spec_bench(tmp_path, monkeypatch) -> Path:
    rows = [{"question_id": i, "category": cat, "turns": [f"{cat} question {i}", "second"]}
            for i, cat in enumerate(["writing", "writing", "writing", "rag", "rag", "math"])]
    path = tmp_path / "question.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv(SPEC_BENCH_ENV, str(path))
    return path


def test_spec_bench_takes_n_per_category_interleaved(tmp_path, monkeypatch):
    _spec_bench(tmp_path, monkeypatch)
    prompts = load_suite("spec-bench", per_category=2)
    assert [p.category for p in prompts] == ["writing", "rag", "math", "writing", "rag"]
    assert prompts[0].text == "writing question 0" and prompts[0].chat  # the first turn
    assert [p.text for p in load_suite("spec-bench:rag")] == ["rag question 3",
                                                             "rag question 4"]
    with pytest.raises(SpecpairError, match="no prompts in category"):
        load_suite("spec-bench:poetry")


def test_spec_bench_missing_says_where_to_get_it(monkeypatch, capsys):
    monkeypatch.delenv(SPEC_BENCH_ENV, raising=False)
    assert main(["bench", "--suite", "spec-bench", "--target", "/nonexistent.gguf"]) == 2
    err = capsys.readouterr().err
    assert "hemingkx/Spec-Bench" in err and SPEC_BENCH_ENV in err


@pytest.mark.engine
def test_gpu_check_runs_on_the_cpu_with_tiny_shapes(tmp_path):
    need("transformers", "hf")
    out = tmp_path / "gpu.json"
    script = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), "--device", "cpu", "--tiny",
                           "--repeats", "1", "--tokens", "8", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["target"], r["mode"]) for r in rows] == [("llama3-8b", "eager"),
                                                        ("qwen2.5-1.5b", "eager")]
    for r in rows:
        assert len(r["verify_curve"]) == 17 and r["verify_curve"][0] == 1.0
        assert r["self_draft"]["self K=4"]["acceptance"] == 1.0  # a model drafting for itself
        assert r["predicted"] and r["bandwidth_floor_ms"] > 0
    assert "| pair | mode |" in proc.stdout
