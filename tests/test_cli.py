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
        # a typical-acceptance parameter without typical acceptance: refused, not ignored
        (["--typical-epsilon", "0.3"], ["--typical-epsilon", "--accept typical"]),
        (["--typical-delta", "0.1"], ["--typical-delta", "--accept typical"]),
        # numpy takes no negative seed: it used to crash with a traceback after the load
        (["--seed", "-1", "--temperature", "0.7"], ["--seed"]),
        # accepted, or refused only after the model loaded, before (issue 43)
        (["--draft-p-min", "5"], ["--draft-p-min"]),
        (["--ngram-min", "0"], ["--ngram-min"]),
        (["--device", "tpu"], ["--device"]),
        (["--dtype", "int3"], ["--dtype"]),
        (["--suffix-store", "/dev/null/store.json"], ["--suffix-store"]),
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


@pytest.mark.engine  # llama.cpp reads the file
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
def test_a_draft_with_another_tokenizer_drafts_through_text_exactly(capsys, target_path,
                                                                    gemma_path):
    """Gemma 3 270M (SentencePiece, 262k tokens) drafting for the Qwen 1.5B: exact on every
    token, up to the near-tie rule, with acceptance by position reported."""
    from specpair.backends import BackendConfig, load_backend
    from specpair.core.prompt import encode_prompt
    from specpair.measure.agreement import check_tokens

    prompt = "Repeat exactly: the quick brown fox jumps over the lazy dog."
    code, out, err = run_cli(capsys, "generate", prompt, "--chat", "--target", target_path,
                             "--draft", gemma_path, "-n", "32", "--json", "-k", "4")
    assert code == 0, err
    result = json.loads(out)
    stats = result["stats"]
    assert stats["drafted"] > 0 and "translate_seconds" in result
    print(f"\ngemma -> qwen: acceptance {stats['acceptance_rate']:.2f}, by position "
          f"{stats['acceptance_by_position']}")
    target = load_backend(target_path, BackendConfig(n_ctx=1024))
    check = check_tokens(target, encode_prompt(target, prompt, chat=True), result["tokens"])
    assert check.ok, check.describe()


@pytest.mark.real
def test_json_output_has_every_field(capsys, draft_path):
    code, out, _ = run_cli(capsys, "generate", "def add(a, b):", "--target", draft_path,
                           "--draft", draft_path, "--max-tokens", "12", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"text", "tokens", "stats", "exact", "drafter", "finish_reason",
                           "devices"}
    assert "on CPU" in result["devices"]["target"]
    assert result["exact"] is True
    for field in ("new_tokens", "drafts", "drafted", "accepted", "acceptance_rate",
                  "mean_acceptance_length", "acceptance_by_position", "alphas",
                  "tokens_per_second", "end_to_end_tokens_per_second", "setup_seconds",
                  "draft_seconds", "target_seconds"):
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


@pytest.fixture
def cost_cache(tmp_path):
    """An empty cost cache, the first run on a new machine (conftest gives each test one)."""
    return tmp_path / "costs.json"


@pytest.mark.real
def test_default_generate_is_auto_exact_and_learns_costs(capsys, target_path, cost_cache):
    """The default drafter is auto: on a first run it measures nothing up front, does not load
    the 0.5B draft (it cannot win on a CPU), matches plain greedy output, and stores the costs
    it learned for the next run."""
    prompt = "Repeat this line exactly: the quick brown fox jumps over the lazy dog."
    code, out, err = run_cli(capsys, "generate", prompt, "--chat", "--target", target_path,
                             "-n", "24", "--json")
    assert code == 0, err
    result = json.loads(out)
    auto = result["auto"]
    assert any("learning them while decoding" in n for n in auto["notes"])
    assert not any("loaded (it can win" in n for n in auto["notes"])
    assert sum(auto["rounds"].values()) == result["stats"]["steps"]
    assert result["stats"]["setup_seconds"] >= 0
    assert result["stats"]["end_to_end_tokens_per_second"] <= result["stats"][
        "tokens_per_second"]
    code, plain_out, _ = run_cli(capsys, "generate", prompt, "--chat", "--target", target_path,
                                 "-n", "24", "--json", "--draft", "none")
    plain = json.loads(plain_out)
    n = next((i for i, (a, b) in enumerate(zip(plain["tokens"], result["tokens"])) if a != b),
             None)
    if n is not None:  # a divergence must sit at a near-tie of the target
        from specpair.backends import BackendConfig, load_backend
        from specpair.core.prompt import encode_prompt
        from specpair.measure.agreement import check_tokens

        target = load_backend(target_path, BackendConfig(n_ctx=1024))
        assert check_tokens(target, encode_prompt(target, prompt, chat=True),
                            result["tokens"]).ok
    stored = json.loads(cost_cache.read_text())["entries"]
    assert any("|verify|" in key for key in stored)
    code, out, err = run_cli(capsys, "generate", prompt, "--chat", "--target", target_path,
                             "-n", "8", "--json")
    assert not any("learning them" in n for n in json.loads(out)["auto"]["notes"])


def test_json_error_mid_stream_still_prints_partial_output(capsys, monkeypatch):
    """An error after some tokens were produced: under --json the partial text and statistics
    still go out, with an "error" field, and the exit code is the error's."""
    import specpair
    from specpair import generation
    from specpair.core.stats import Step
    from specpair.errors import SpecpairError

    from .toy import ToyBackend, random_table

    toy = ToyBackend(random_table(26, seed=0))
    real_load = specpair.load
    monkeypatch.setattr(specpair, "load", lambda target, **k: real_load(toy, **k))

    def failing(target, drafter, prompt, *, config, rng):
        yield Step(tokens=[1, 2], n_drafted=0, n_accepted=0, draft_seconds=0.0,
                   target_seconds=0.0, seconds=0.01)
        raise SpecpairError("the context is full")

    monkeypatch.setattr(generation, "decode_steps", failing)
    code, out, err = run_cli(capsys, "generate", "abc", "--json", "--draft", "none")
    assert code == 2
    result = json.loads(out)
    assert result["text"] == "bc" and result["tokens"] == [1, 2]
    assert result["error"] == "the context is full" and result["stats"]["new_tokens"] == 2


def test_unwritable_model_cache_is_a_one_line_error(capsys, monkeypatch, tmp_path):
    from specpair.models import named as models

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(models.CACHE_ENV, str(blocker / "cache"))
    monkeypatch.setattr(models, "part_paths", lambda model: [blocker])
    code, _, err = run_cli(capsys, "models", "path", "gemma-3-270m")
    assert code == 2
    assert_one_line_error(err, "cannot write model", models.CACHE_ENV)


@pytest.mark.real
def test_ngram_drafter_from_the_cli(capsys, target_path):
    code, out, _ = run_cli(capsys, "generate", "Repeat exactly: alpha beta gamma delta alpha "
                           "beta gamma delta", "--chat", "--target", target_path, "--draft",
                           "ngram", "-n", "16", "--json")
    assert code == 0
    assert json.loads(out)["stats"]["drafted"] > 0


@pytest.mark.real
def test_advise_prints_its_tables_and_stores_the_costs(capsys, draft_path):
    """The human-readable advise (not --json) ends by saying where the costs went; it used to
    crash there (a table named like the costs module)."""
    code, out, err = run_cli(capsys, "advise", "--target", draft_path, "--draft", "ngram",
                             "--max-k", "2", "--calibration-tokens", "8")
    assert code == 0, err
    assert "recommendation:" in out and "--draft auto uses them" in out
