"""specpair distill on what can be checked by hand: the losses on hand-made distributions, the
kept top-k, acceptance read off teacher-forced logits, the prompt file and DIR's checks, and a
toy pair (tiny randomly initialised transformers models of one vocabulary) trained for a few
seconds: it must get closer to its target and be accepted more, and an interrupted training
resumed must give the same adapter as one that ran through."""

import json
import math

import numpy as np
import pytest

pytestmark = pytest.mark.engine  # torch, transformers and peft (the [distill] extra)

from .conftest import unavailable  # noqa: E402

try:
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
except ImportError as e:
    unavailable(f"the [distill] extra ({e.name}) is not installed: pip install -e '.[distill]'",
                module=True)

from specpair.distillation import evaluate as ev  # noqa: E402
from specpair.distillation.data import Scored, top_k  # noqa: E402
from specpair.distillation.job import (  # noqa: E402
    ADAPTER_FILE,
    DistillConfig,
    _manifest,
    export_done,
    record_losses,
)
from specpair.distillation.loss import distill_loss, divergences  # noqa: E402
from specpair.distillation.prompts import read_prompts, split  # noqa: E402
from specpair.distillation.train import TrainConfig, prepare, train  # noqa: E402
from specpair.errors import InvalidOption  # noqa: E402

# -- the losses ---------------------------------------------------------------------------------


def test_kl_tv_and_cross_entropy_equal_their_formulas_on_a_hand_made_distribution():
    # the target keeps 2 of 4 tokens: p = (0.5, 0.3) and 0.2 for the rest
    ids = torch.tensor([[2, 0]])
    logp = torch.log(torch.tensor([[0.5, 0.3]]))
    rest = torch.tensor([0.2])
    q = torch.tensor([0.25, 0.25, 0.4, 0.1])  # the draft: q(2) = 0.4, q(0) = 0.25, rest 0.35
    logits = q.log().unsqueeze(0)
    kl = 0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.25) + 0.2 * math.log(0.2 / 0.35)
    tv = 0.5 * (abs(0.5 - 0.4) + abs(0.3 - 0.25) + abs(0.2 - 0.35))
    ce = -math.log(0.25)  # the completion's token is 1
    token = torch.tensor([1])
    got = divergences(logits, ids, logp, rest)
    assert got["kl"] == pytest.approx(kl, abs=1e-6) and got["tv"] == pytest.approx(tv, abs=1e-6)
    assert float(distill_loss(logits, ids, logp, rest, token, loss="kl", ce_weight=0.5)
                 ) == pytest.approx(kl + 0.5 * ce, abs=1e-6)
    assert float(distill_loss(logits, ids, logp, rest, token, loss="tv", ce_weight=0.0)
                 ) == pytest.approx(tv, abs=1e-6)


def test_a_draft_equal_to_its_target_has_no_divergence():
    logits = torch.randn(3, 10)
    ids, logp, rest = (torch.as_tensor(a) for a in top_k(logits.numpy(), 4))
    got = divergences(logits, ids, logp, rest)
    assert got["kl"] == pytest.approx(0, abs=1e-5) and got["tv"] == pytest.approx(0, abs=1e-5)


def test_the_kept_top_k_is_most_likely_first_and_the_rest_is_what_is_left():
    logits = np.log(np.array([[0.1, 0.6, 0.05, 0.25]]))
    ids, logp, rest = top_k(logits, 2)
    assert ids.tolist() == [[1, 3]]
    assert np.exp(logp)[0].tolist() == pytest.approx([0.6, 0.25], abs=1e-6)
    assert rest.tolist() == pytest.approx([0.15], abs=1e-6)


# -- acceptance off teacher-forced logits -------------------------------------------------------


def test_greedy_acceptance_counts_the_matching_run_from_every_position():
    assert ev.runs(np.array([1, 1, 0, 1, 1, 1]), 2).tolist() == [2, 1, 0, 2, 2, 1]
    # a completion of 4 tokens; the draft's argmax matches at positions 0, 1 and 3
    seq = Scored(np.array([7]), np.array([1, 2, 3, 0]), np.zeros((4, 1)), np.zeros((4, 1)),
                 np.zeros(4))
    logits = np.full((4, 5), -9.0)
    for i, t in enumerate([1, 2, 4, 0]):
        logits[i, t] = 0
    side = ev.greedy_side(logits, seq)
    # K = 4: runs from each start are 2, 1, 0, 1: P(>= 1) = 3/4, P(>= 2) = 1/4
    assert side.survival[4].tolist() == [0.75, 0.25, 0.0, 0.0]
    assert side.mean_length(4) == pytest.approx(1.0) and side.rate(4) == pytest.approx(0.25)


def test_sampled_acceptance_is_one_minus_total_variation_chained_over_positions():
    p = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    q = np.log(np.array([[0.8, 0.2], [0.9, 0.1]]))
    a = ev.alphas(p, q, 1.0)
    assert a.tolist() == pytest.approx([0.7, 1.0])
    runs = ev.expected_runs(a, 2)
    assert runs.ravel().tolist() == pytest.approx([0.7, 0.7, 1.0, 0.0])  # past the end: 0
    assert ev.conditional([0.8, 0.4]) == pytest.approx([0.8, 0.5])


def test_acceptance_and_loss_take_a_target_wider_than_its_draft():
    """A 7B Qwen has 152,064 logit rows, the 0.5B draft 151,936: the evaluation's alphas and
    the loss's top-k gather used to raise a broadcast/index error after an hour of training."""
    p = np.log(np.array([[0.5, 0.3, 0.2, 1e-12, 1e-12]]))  # the target: 5 ids, 2 of padding
    q = np.log(np.array([[0.8, 0.1, 0.1]]))  # the draft: 3 ids
    assert ev.alphas(p, q, 1.0).tolist() == pytest.approx([0.5 + 0.1 + 0.1])
    # and the other way round: a draft wider than its target is cut and renormalised
    q_wide = np.log(np.array([[0.4, 0.05, 0.05, 0.5]]))
    p_narrow = np.log(np.array([[0.5, 0.3, 0.2]]))
    assert ev.alphas(p_narrow, q_wide, 1.0).tolist() == pytest.approx([0.5 + 0.1 + 0.1])
    # the loss: the target's top-k holds an id (4) past the draft's width (3)
    ids = torch.tensor([[0, 4]])
    logp = torch.log(torch.tensor([[0.6, 0.1]]))
    rest = torch.tensor([0.3])
    logits = torch.log(torch.tensor([[0.6, 0.2, 0.2]]))
    got = divergences(logits, ids, logp, rest)
    assert math.isfinite(got["kl"]) and got["tv"] == pytest.approx(0.5 * (0.1 + 0.1), abs=1e-6)
    loss = distill_loss(logits, ids, logp, rest, torch.tensor([1]))
    assert math.isfinite(float(loss))


def test_the_evaluation_keeps_each_prompt_and_resumes_after_the_time_limit(tmp_path):
    """An evaluation longer than --max-minutes used to restart from nothing on every run."""
    prompts = read_prompts(_jsonl(tmp_path, [f"prompt {i}" for i in range(5)]))
    measured: list[str] = []

    def measure(p):
        measured.append(p.id)
        side = ev.Side({k: np.full(k, 0.5) for k in ev.EVAL_KS})
        return {"kind": "code", "greedy": {"before": side, "after": side},
                "sampled": {"before": side, "after": side}}

    clock = iter([False, False, True])
    first = ev.measure_prompts(tmp_path / "eval", prompts, measure, advance=lambda n: None,
                               out_of_time=lambda: next(clock))
    assert first is None and len(measured) == 2
    second = ev.measure_prompts(tmp_path / "eval", prompts, measure, advance=lambda n: None,
                                out_of_time=lambda: False)
    assert len(second) == 5 and len(measured) == 5  # the first two were not measured again
    assert second[0]["greedy"]["after"].rate(4) == pytest.approx(0.5)


def test_an_interrupted_merge_is_retried_and_losses_of_every_session_are_kept(tmp_path):
    config = DistillConfig()
    (tmp_path / ADAPTER_FILE).write_bytes(b"gguf")
    assert not export_done(tmp_path, config)  # the adapter without DIR/merged: not done
    assert export_done(tmp_path, DistillConfig(merged=False))
    (tmp_path / "merged").mkdir()
    assert export_done(tmp_path, config)
    path = tmp_path / "losses.json"
    record_losses(path, [{"step": 5, "loss": 2.0}, {"step": 10, "loss": 1.5}])
    # resumed from the checkpoint at step 5: steps 10.. are redone, 5 is kept
    record_losses(path, [{"step": 10, "loss": 1.4}, {"step": 15, "loss": 1.2}])
    assert json.loads(path.read_text()) == [{"step": 5, "loss": 2.0}, {"step": 10, "loss": 1.4},
                                            {"step": 15, "loss": 1.2}]


def test_a_bad_held_out_fraction_is_refused_before_the_dir_is_written():
    with pytest.raises(InvalidOption, match="held_out must be between 0 and 1"):
        DistillConfig(held_out=20)


def _jsonl(tmp_path, prompts) -> str:
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return str(f)


# -- prompts and DIR ----------------------------------------------------------------------


@pytest.mark.parametrize("line, why", [
    ("not json", "not JSON"), ('{"text": "x"}', "neither a prompt"),
    ('{"prompt": "  "}', "an empty prompt"),
    ('{"messages": [{"role": "user"}]}', "a message without role")])
def test_a_bad_prompt_line_is_a_one_line_error_naming_the_line(tmp_path, line, why):
    f = tmp_path / "p.jsonl"
    f.write_text('"a good one"\n' + line + "\n")
    with pytest.raises(InvalidOption, match=f"p.jsonl line 2: {why}") as e:
        read_prompts(str(f))
    assert "\n" not in str(e.value)


def test_the_split_is_stable_as_the_file_grows_and_held_out_lines_are_never_trained(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps(f"prompt {i}") + "\n" for i in range(40)))
    train1, held1 = split(read_prompts(str(f)), 0.25)
    with open(f, "a") as out:
        out.write("".join(json.dumps(f"prompt {i}") + "\n" for i in range(40, 80)))
        out.write(json.dumps({"prompt": "other kind", "kind": "prose", "held_out": True}) + "\n")
    train2, held2 = split(read_prompts(str(f)), 0.25)
    assert {p.id for p in held1} <= {p.id for p in held2}
    assert {p.id for p in train1} <= {p.id for p in train2}
    assert any(p.kind == "prose" for p in held2) and all(p.kind != "prose" for p in train2)


def test_a_dir_of_another_pair_or_recipe_is_refused(tmp_path):
    t, d, other = (tmp_path / n for n in ("t.gguf", "d.gguf", "o.gguf"))
    for f, size in ((t, 10), (d, 5), (other, 7)):
        f.write_bytes(b"x" * size)
    out = tmp_path / "dir"
    _manifest(out, str(t), str(d), DistillConfig())
    _manifest(out, str(t), str(d), DistillConfig(merged=False))  # the same recipe: resumes
    with pytest.raises(InvalidOption, match="was made for draft d.gguf, not o.gguf"):
        _manifest(out, str(t), str(other), DistillConfig())
    with pytest.raises(InvalidOption, match="was made with rank 16; this run asks for 8"):
        _manifest(out, str(t), str(d), DistillConfig(rank=8))


# -- a toy pair ---------------------------------------------------------------------------

VOCAB, PROMPT, COMPLETION = 48, 6, 20
SHARPEN = 16.0  # sharper than the default init, so the distributions are not flat


def _model(seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # sharper than the default init, so the distributions are not flat
        model.lm_head.weight.mul_(SHARPEN)
    return model.eval()


@torch.no_grad()
def _sequences(target, n: int, seed: int) -> list[Scored]:
    """The target's greedy completions of random prompts, with its top-k at each position."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tokens = rng.integers(0, VOCAB, PROMPT).tolist()
        for _ in range(COMPLETION):
            tokens.append(int(target(input_ids=torch.tensor([tokens])).logits[0, -1].argmax()))
        logits = target(input_ids=torch.tensor([tokens[:-1]])).logits[0, PROMPT - 1:].numpy()
        ids, logp, rest = top_k(logits, 12)
        out.append(Scored(np.array(tokens[:PROMPT]), np.array(tokens[PROMPT:]), ids, logp,
                          rest))
    return out


@torch.no_grad()
def _measure(draft, sequences) -> tuple[float, float]:
    """Mean KL to the target and greedy acceptance at K = 4 over held-out sequences."""
    kls, rates = [], []
    for s in sequences:
        logits = draft(input_ids=torch.tensor([s.tokens[:-1].tolist()])).logits[0, PROMPT - 1:]
        kls.append(divergences(logits, torch.as_tensor(s.ids), torch.as_tensor(s.logp),
                               torch.as_tensor(s.rest))["kl"])
        rates.append(ev.greedy_side(logits.float().numpy(), s).rate(4))
    return float(np.mean(kls)), float(np.mean(rates))


@pytest.fixture(scope="module")
def toy_data():
    target = _model(0)
    return _sequences(target, 24, seed=1), _sequences(target, 12, seed=2)


TOY = TrainConfig(rank=8, alpha=16, learning_rate=3e-2, epochs=4, batch=2, save_every=3)


def test_distilling_a_toy_draft_brings_it_closer_and_raises_greedy_acceptance(toy_data,
                                                                              tmp_path):
    train_set, held = toy_data
    draft = prepare(_model(7), TOY)
    kl0, acc0 = _measure(draft, held)
    result = train(draft, train_set, out=tmp_path / "train", config=TOY)
    kl1, acc1 = _measure(draft, held)
    assert result.done and result.losses
    assert kl1 < 0.7 * kl0, (kl0, kl1)
    assert acc1 > acc0 + 0.03, (acc0, acc1)


def test_an_interrupted_training_resumed_gives_the_same_adapter(toy_data, tmp_path):
    train_set, _ = toy_data
    config = TrainConfig(rank=4, alpha=8, learning_rate=1e-2, epochs=1, batch=2, save_every=2)
    whole = prepare(_model(7), config)
    train(whole, train_set, out=tmp_path / "whole", config=config)

    steps = []
    first = prepare(_model(7), config)
    stopped = train(first, train_set, out=tmp_path / "cut", config=config,
                    advance=steps.append, out_of_time=lambda: sum(steps) >= 5)
    assert not stopped.done and stopped.steps == 5
    resumed = prepare(_model(7), config)  # a new process: the model from its file again
    done = train(resumed, train_set, out=tmp_path / "cut", config=config)
    assert done.done
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters()):
        if "lora_" in name:
            assert torch.allclose(a, b, atol=1e-6), name
