"""`specpair generate` as a user runs it: exit codes, one-line errors, JSON output."""

import json

import pytest

from specpair.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err, *words):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("specpair: error:"), err
    for w in words:
        assert w in lines[0]


@pytest.mark.parametrize(
    "option, words",
    [
        (["--max-tokens", "0"], ["--max-tokens"]),
        (["--temperature", "-1"], ["--temperature"]),
        (["--draft-tokens", "0"], ["--draft-tokens"]),
        (["--top-p", "2"], ["--top-p"]),
        (["--threads", "0"], ["--threads"]),
    ],
)
def test_bad_option_values_exit_2_before_loading_anything(capsys, option, words):
    code, _, err = run_cli(capsys, "generate", "hi", "--target", "/nonexistent.gguf", *option)
    assert code == 2
    assert_one_line_error(err, *words)


def test_missing_model_file(capsys):
    code, _, err = run_cli(capsys, "generate", "hi", "--target", "/no/such/model.gguf",
                           "--draft", "none")
    assert code == 2
    assert_one_line_error(err, "not found")


def test_file_that_is_not_gguf(capsys, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"this is not a model" * 100)
    code, _, err = run_cli(capsys, "generate", "hi", "--target", str(bad), "--draft", "none")
    assert code == 2
    assert_one_line_error(err, "not a GGUF")


@pytest.mark.real
def test_truncated_gguf(capsys, tmp_path, draft_path):
    cut = tmp_path / "cut.gguf"
    with open(draft_path, "rb") as f:
        cut.write_bytes(f.read(1_000_000))  # inside the tokenizer's metadata
    code, _, err = run_cli(capsys, "generate", "hi", "--target", str(cut), "--draft", "none")
    assert code == 2
    assert_one_line_error(err, "truncated or corrupt")
    cut.write_bytes(open(draft_path, "rb").read(50_000_000))  # header intact, tensors cut
    code, _, err = run_cli(capsys, "generate", "hi", "--target", str(cut), "--draft", "none")
    assert code == 2
    assert_one_line_error(err, "could not load")


@pytest.mark.real
def test_prompt_longer_than_context(capsys, draft_path):
    code, _, err = run_cli(capsys, "generate", "word " * 100, "--target", draft_path,
                           "--draft", "none", "--n-ctx", "32")
    assert code == 2
    assert_one_line_error(err, "--n-ctx")


@pytest.mark.real
def test_incompatible_pair_exits_3_and_names_the_check(capsys, target_path, gemma_path):
    code, _, err = run_cli(capsys, "generate", "hi", "--target", target_path, "--draft",
                           gemma_path)
    assert code == 3
    assert_one_line_error(err, "does not line up", "specpair check")


@pytest.mark.real
def test_json_output_has_every_field(capsys, draft_path):
    code, out, _ = run_cli(capsys, "generate", "def add(a, b):", "--target", draft_path,
                           "--draft", draft_path, "--max-tokens", "12", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"text", "tokens", "stats"}
    for field in ("new_tokens", "drafted", "accepted", "acceptance_rate",
                  "mean_accepted_length", "tokens_per_second", "draft_seconds",
                  "target_seconds"):
        assert field in result["stats"], field
    assert result["stats"]["new_tokens"] == len(result["tokens"]) <= 12
    assert result["text"]


@pytest.mark.real
def test_streaming_output_and_summary(capsys, target_path, draft_path):
    code, out, err = run_cli(capsys, "generate", "Write a haiku about tides.", "--chat",
                             "--target", target_path, "--draft", draft_path, "-n", "24")
    assert code == 0
    assert out.strip() and "<|im_end|>" not in out
    assert "tokens/s" in err and "accepted" in err


@pytest.mark.real
def test_draft_auto_completes_and_says_what_it_chose(capsys, target_path):
    code, out, err = run_cli(capsys, "generate", "Write a haiku about tides.", "--chat",
                             "--target", target_path, "--draft", "auto", "-n", "16", "--json")
    assert code == 0
    result = json.loads(out)
    auto = result["auto"]
    assert auto["reason"] and {c["drafter"] for c in auto["calibrations"]} >= {"ngram"}
    assert len(auto["verify_seconds"]) >= 2
    assert 0 < len(auto["k_chosen"]) <= result["stats"]["steps"]  # one per round it drafted for
    assert "specpair: auto:" in err


@pytest.mark.real
def test_ngram_drafter_from_the_cli(capsys, target_path):
    code, out, _ = run_cli(capsys, "generate", "Repeat exactly: alpha beta gamma delta alpha "
                           "beta gamma delta", "--chat", "--target", target_path, "--draft",
                           "ngram", "-n", "16", "--json")
    assert code == 0
    assert json.loads(out)["stats"]["drafted"] > 0
