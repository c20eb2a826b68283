"""A short bench on the real pair produces the whole report, in every output format."""

import json
import math
from pathlib import Path

import pytest

from specpair.cli import main
from specpair.measure.suites import BUILTIN_SUITES, load_suite

pytestmark = pytest.mark.real


def test_short_bench_report_has_every_field(tmp_path, capsys, target_path, draft_path):
    out = tmp_path / "report.json"
    md = tmp_path / "report.md"
    png = tmp_path / "report.png"
    code = main(["bench", "--target", target_path, "--draft", draft_path, "--runs", "2",
                 "-n", "12", "-k", "1", "3", "--draft-p-min", "0",  # always K: fixed lengths
                 "--json", str(out), "--markdown", str(md),
                 "--plot", str(png), "--no-ceiling"])
    assert code == 0
    terminal = capsys.readouterr().out
    # two paired runs: a ratio, but no bootstrap interval pretending to 95%
    assert "too few runs for an interval" in terminal
    report = json.loads(out.read_text())
    # the seed's experiment (plain vs the model draft at each K), and the default: auto
    assert [m["name"] for m in report["modes"]] == ["plain", "spec K=1", "spec K=3", "auto"]
    plain, k1, k3, auto = report["modes"]
    for mode in report["modes"]:
        for key in ("tokens_per_second", "end_to_end_tokens_per_second"):
            tps = mode[key]
            assert tps["n"] == 2 and tps["mean"] > 0 and tps["ci95"][0] <= tps["mean"]
        # end to end includes the prompt and every one-time cost: never faster
        assert mode["end_to_end_tokens_per_second"]["mean"] <= mode["tokens_per_second"]["mean"]
        assert len(mode["runs"]) == 2
        assert {"draft_seconds", "target_seconds", "new_tokens", "setup_seconds"} <= set(mode)
    assert auto["setup_seconds"] > 0  # auto's planning is paid, and counted, every run
    for mode in (k1, k3, auto):
        assert mode["speedup"]["ratio"] > 0 and math.isnan(mode["speedup"]["ci95"][0])
        assert mode["speedup_steady_state"]["ratio"] > 0
        assert math.isnan(mode["speedup"]["p_value"]) or 0 <= mode["speedup"]["p_value"] <= 1
        assert 0 <= mode["acceptance_rate"] <= 1
        agreement = mode["agreement"]
        assert agreement["checked"] and agreement["not_ok"] == 0 and agreement["tokens_bad"] == 0
        # every token of every run is checked, not only up to a first divergence
        assert agreement["tokens_checked"] == mode["new_tokens"]
        assert len(agreement["details"]) == 2 and len(agreement["near_tie_per_run"]) == 2
    assert k1["mean_acceptance_length"] >= 1
    assert len(k1["acceptance_by_position"]) == 1 and len(k3["acceptance_by_position"]) == 3
    assert len(report["verdict"]) == 3
    assert "| speedup end to end [95% CI] |" in md.read_text()
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("suite", BUILTIN_SUITES)
def test_builtin_suites_load(suite):
    assert len(load_suite(suite)) >= 3


def test_the_long_copy_workload_reports_its_three_kinds():
    """bench/long_copy.jsonl (issue 25's workload): conversations keep their category too."""
    path = Path(__file__).parent.parent / "bench" / "long_copy.jsonl"
    prompts = load_suite(str(path))
    assert {p.category for p in prompts} == {"file-edit", "quote", "repeat-answer"}
    assert any(isinstance(p.text, list) for p in prompts)


def test_bad_suite_and_runs_are_one_line_errors(capsys, tmp_path):
    assert main(["bench", "--suite", "nonsense", "--target", "/x.gguf"]) == 2
    assert "suite 'nonsense' not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt key"}\n')
    assert main(["bench", "--suite", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    assert main(["bench", "--runs", "0"]) == 2
    assert "--runs" in capsys.readouterr().err
