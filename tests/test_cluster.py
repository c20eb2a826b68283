"""Beyond one machine: `deploy` commands (golden, and refusals), the what-if calculator (it
reproduces the adviser), and reading servers' speculative counters."""

import json

import pytest

from specpair.cli import main
from specpair.deploy.plan import (
    VLLM_SPECULATIVE_KEYS,
    model_info,
    plan_llama_server,
    plan_vllm,
)
from specpair.deploy.whatif import verify_curve, what_if
from specpair.errors import SpecpairError
from specpair.measure.advise import Calibration, advise
from specpair.measure.endpoint import batch_counters, parse_metrics, spec_counters

from .test_check import CORPUS, OTHER_CORPUS, save, train

# (hidden, layers, heads, kv heads, intermediate, vocab): real models' shapes
LLAMA_8B = (4096, 32, 32, 8, 14336, 128256)
LLAMA_70B = (8192, 80, 64, 8, 28672, 128256)
LLAMA_405B = (16384, 126, 128, 8, 53248, 128256)
LLAMA_1B = (2048, 16, 32, 8, 8192, 128256)


@pytest.fixture(scope="module")
def tokenizers():
    return train(CORPUS), train(OTHER_CORPUS)


def model_folder(tmp_path, name, shape, tokenizer, *, dtype="bfloat16"):
    h, layers, heads, kv, inter, vocab = shape
    folder = tmp_path / name
    save(folder, tokenizer)
    config = {"hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv, "intermediate_size": inter, "vocab_size": vocab,
              "torch_dtype": dtype, "tie_word_embeddings": False}
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_sizes_come_from_the_config_not_the_name(tmp_path, tokenizers):
    path = model_folder(tmp_path, "tiny-1b-but-really-8b", LLAMA_8B, tokenizers[0])
    info = model_info(path)
    assert 7.9e9 < info.params < 8.1e9  # Llama 3.1 8B has 8.03B parameters
    assert info.bytes == info.params * 2 and info.dtype == "bfloat16"
    (tmp_path / "tiny-1b-but-really-8b" / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 16_060_522_496}}))
    assert model_info(path).bytes == 16_060_522_496  # stored size wins over the estimate


@pytest.mark.parametrize("shape, gpus, memory, tp, pp", [
    (LLAMA_8B, 1, 80, 1, 1),
    (LLAMA_70B, 4, 80, 4, 1),
    (LLAMA_70B, 8, 40, 8, 1),
    (LLAMA_405B, 16, 80, 8, 2),
])
def test_vllm_command_golden(tmp_path, tokenizers, shape, gpus, memory, tp, pp):
    target = model_folder(tmp_path, "target", shape, tokenizers[0])
    draft = model_folder(tmp_path, "draft", LLAMA_1B, tokenizers[0])
    plan = plan_vllm(target, draft, gpus=gpus, gpu_memory_gb=memory, k=5, sampled=True)
    expected = ["vllm", "serve", target, "--tensor-parallel-size", str(tp)]
    if pp > 1:
        expected += ["--pipeline-parallel-size", str(pp)]
    spec = {"method": "draft_model", "model": draft, "num_speculative_tokens": 5,
            "draft_tensor_parallel_size": 1}
    assert plan.command == expected + ["--speculative-config", json.dumps(spec)]
    config = json.loads(plan.command[-1])
    assert set(config) <= VLLM_SPECULATIVE_KEYS  # only fields vLLM's SpeculativeConfig has


def test_vllm_cross_vocabulary_greedy_only(tmp_path, tokenizers):
    target = model_folder(tmp_path, "target", LLAMA_8B, tokenizers[0])
    draft = model_folder(tmp_path, "draft", LLAMA_1B, tokenizers[1])
    plan = plan_vllm(target, draft, gpus=1, gpu_memory_gb=80, k=4, sampled=False)
    assert json.loads(plan.command[-1])["use_heterogeneous_vocab"] is True
    with pytest.raises(SpecpairError, match="greedy draft sampling only") as e:
        plan_vllm(target, draft, gpus=1, gpu_memory_gb=80, k=4, sampled=True)
    assert e.value.exit_code == 3


@pytest.mark.parametrize("gpus, memory, words", [(1, 80, "need 16 GPUs"),
                                                (2, 24, "need 56 GPUs")])
def test_vllm_refuses_what_does_not_fit(tmp_path, tokenizers, gpus, memory, words):
    target = model_folder(tmp_path, "target", LLAMA_405B, tokenizers[0])
    draft = model_folder(tmp_path, "draft", LLAMA_8B, tokenizers[0])
    with pytest.raises(SpecpairError, match=words):
        plan_vllm(target, draft, gpus=gpus, gpu_memory_gb=memory, k=4, sampled=False)


def test_a_draft_larger_than_the_target_is_refused(tmp_path, tokenizers):
    small = model_folder(tmp_path, "small", LLAMA_1B, tokenizers[0])
    big = model_folder(tmp_path, "big", LLAMA_8B, tokenizers[0])
    with pytest.raises(SpecpairError, match="not smaller"):
        plan_vllm(small, big, gpus=1, gpu_memory_gb=80, k=4, sampled=False)


def fake_gguf(path, arch="llama", size=0, vocab=("a", "b")):
    """A GGUF file with a header only (enough for model_info), padded to `size` bytes."""
    import struct

    def s(text):
        b = text.encode()
        return struct.pack("<Q", len(b)) + b

    kv = [("general.architecture", 8, s(arch)),
          (f"{arch}.attention.head_count", 4, struct.pack("<I", 32)),
          ("general.file_type", 4, struct.pack("<I", 15))]
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for key, kind, value in kv:
        body += s(key) + struct.pack("<I", kind) + value
    path.write_bytes(body + b"\0" * max(0, size - len(body)))
    return str(path)


def test_llama_server_command_golden(tmp_path, monkeypatch):
    target = fake_gguf(tmp_path / "t.gguf", size=4_000_000)
    draft = fake_gguf(tmp_path / "d.gguf", size=1_000_000)
    monkeypatch.setattr("specpair.deploy.plan._verdict", lambda t, d: "identical")
    plan = plan_llama_server(target, draft, gpus=2, gpu_memory_gb=24, k=6, sampled=False)
    assert plan.command == [
        "llama-server", "-m", target, "--spec-type", "draft-simple", "--spec-draft-model",
        draft, "--spec-draft-n-max", "6", "--spec-draft-n-min", "0", "--spec-draft-p-min",
        "0.7", "-ngl", "all", "--spec-draft-ngl", "all", "--split-mode", "layer"]
    monkeypatch.setattr("specpair.deploy.plan._verdict", lambda t, d: "text-level")
    with pytest.raises(SpecpairError, match="no re-tokenizing mode"):
        plan_llama_server(target, draft, gpus=1, gpu_memory_gb=24, k=4, sampled=False)


def test_deploy_cli_prints_the_engine_version_and_exits_3_on_refusal(tmp_path, tokenizers,
                                                                    capsys):
    target = model_folder(tmp_path, "target", LLAMA_70B, tokenizers[0])
    draft = model_folder(tmp_path, "draft", LLAMA_1B, tokenizers[0])
    assert main(["deploy", "vllm", target, draft, "--gpus", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# for vLLM") and "--speculative-config" in out
    assert main(["deploy", "vllm", target, draft, "--gpus", "1", "--gpu-memory", "24"]) == 3
    assert "cannot deploy" in capsys.readouterr().err
    assert main(["deploy", "llama-server", target, draft]) == 3


def test_what_if_reproduces_the_advisers_predictions():
    verify = (0.040, 0.064, 0.080, 0.100, 0.120, 0.148, 0.172, 0.248, 0.260)
    cal = Calibration("qwen-0.5b", (0.8, 0.75, 0.7, 0.7), 0.024, 100, 80)
    advice = advise(verify, [cal], max_k=8)
    r = what_if(draft_cost=cal.draft_per_token / verify[0],
                verify=[v / verify[0] for v in verify], alphas=cal.alphas, max_k=8)
    for (_, k, _, s), (k2, s2) in zip(advice.table, r.table):
        assert k == k2 and s == pytest.approx(s2)


def test_what_if_curves_and_a_gpu_case():
    assert verify_curve("gpu", 3) == (1.0, 1.0, 1.0, 1.0)
    assert verify_curve("linear:0.5", 2) == (1.0, 1.5, 2.0)
    assert verify_curve("cpu", 10)[:3] == (1.0, 1.6, 2.0)
    with pytest.raises(SpecpairError):
        verify_curve("warp", 4)
    # 8B drafting for 405B on GPUs, alpha 0.8: a clear win; on a 2-core CPU curve it loses
    gpu = what_if(draft_cost=0.05, verify=verify_curve("gpu", 8), alphas=[0.8], max_k=8)
    assert gpu.best and gpu.best[1] > 2.5
    cpu = what_if(draft_cost=0.6, verify=verify_curve("cpu", 8), alphas=[0.6], max_k=8)
    assert cpu.best is None


def test_counters_from_every_known_family():
    text = """# HELP vllm:spec_decode_num_drafts x
vllm:spec_decode_num_drafts_total{model_name="m"} 10.0
vllm:spec_decode_num_draft_tokens_total{model_name="m"} 40.0
vllm:spec_decode_num_accepted_tokens_total{model_name="m"} 25.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="0"} 9.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="1"} 7.0
llamacpp:spec_decode_num_drafts 3
specpair:requests_total{endpoint="/v1",status="200"} 4.0
"""
    parsed = parse_metrics(text)
    assert len(parsed) == 6  # the requests counter is not a speculative one
    c = spec_counters(parsed)
    assert c["drafts"] == 13 and c["draft_tokens"] == 40 and c["accepted"] == 25
    assert c["per_pos"] == {0: 9.0, 1: 7.0}
    assert batch_counters(parsed) is None  # only a specpair scheduler keeps these


def test_a_specpair_schedulers_rounds_per_load_point():
    """bench --concurrency reports, from a specpair server's counters, the K its batch chose
    per round, what the drafters offered, and the batch cost predicted against measured."""
    text = """specpair:batch_steps_total 100.0
specpair:batch_slot_rounds_total 400.0
specpair:batch_rows_total 1000.0
specpair:batch_offered_total 2000.0
specpair:batch_drafted_total 600.0
specpair:batch_predicted_seconds_total 11.0
specpair:batch_seconds_total 10.0
specpair:spec_decode_num_draft_tokens_total 600.0
"""
    b = batch_counters(parse_metrics(text))
    assert b is not None and b["k_per_round"] == 1.5 and b["offered_per_round"] == 5.0
    assert b["rows_per_step"] == 10.0 and abs(b["cost_predicted_over_measured"] - 1.1) < 1e-9
