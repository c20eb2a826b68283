"""What speculation costs on a GPU: the verify curve and a draft's cost per token, measured with
randomly initialised models of Qwen2.5-Coder-1.5B's and 0.5B's shapes (no weights reach the
lent GPU machines; costs depend on shapes, not values), through specpair's transformers backend.

    python scripts/gpu_costs.py [--out costs.json]

Prints the target's cost for batches of 1..17 tokens relative to one, the draft/target cost
ratio, what auto would decide with them (load the draft or not, and the best K at a few
acceptance rates), and checks the decode loop on the GPU: a model drafting for itself (shared
weights) must accept everything and reproduce plain greedy output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from specpair.advise import CostModel, best_k, measure_verify_costs  # noqa: E402
from specpair.auto import LOAD_MARGIN, best_possible_speedup  # noqa: E402
from specpair.backends import BackendConfig  # noqa: E402
from specpair.backends.hf import HFBackend  # noqa: E402
from specpair.decode import DecodeConfig, decode_steps  # noqa: E402
from specpair.drafters import ModelDrafter  # noqa: E402
from specpair.sampling import SamplingConfig  # noqa: E402
from specpair.stats import DecodeStats  # noqa: E402

SHAPES = {  # Qwen2.5-Coder-1.5B and -0.5B (config.json)
    "target-1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                        num_key_value_heads=2, intermediate_size=8960),
    "draft-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, intermediate_size=4864),
}


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 10,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def model(name: str, seed: int, device: str, dry: bool):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    shape = SHAPES[name] if not dry else dict(hidden_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2,
                                              intermediate_size=128)
    config = Qwen2Config(vocab_size=151936 if not dry else 1000, max_position_embeddings=4096,
                         eos_token_id=0, tie_word_embeddings=True, **shape)
    with torch.device(device):
        return Qwen2ForCausalLM(config).to(torch.bfloat16 if not dry else torch.float32).eval()


def per_token_seconds(backend: HFBackend, prompt: list[int], n: int = 32) -> float:
    backend.rewind(0)
    backend.eval(prompt)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        backend.eval([prompt[i % len(prompt)]])
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    p.add_argument("--dry", action="store_true", help="tiny models on the CPU: a rehearsal")
    args = p.parse_args()
    device = "cpu" if args.dry else "cuda"
    cfg = BackendConfig(n_ctx=4096, device=device,
                        dtype="float32" if args.dry else "bfloat16")
    tok = tokenizer()
    target = HFBackend("target-1.5b", cfg, model=model("target-1.5b", 0, device, args.dry),
                       tokenizer=tok)
    draft = HFBackend("draft-0.5b", cfg, model=model("draft-0.5b", 1, device, args.dry),
                      tokenizer=tok)
    top = 150000 if not args.dry else 900
    prompt = [int(x) for x in np.random.default_rng(0).integers(10, top, size=256)]
    for b in (target, draft):  # warm-up: kernels, allocator
        b.eval(prompt)
        b.rewind(0)
    verify = measure_verify_costs(target, prompt, max_n=17, repeats=7)
    draft_cost = per_token_seconds(draft, prompt)
    c = draft_cost / verify[0]
    ratios = [v / verify[0] for v in verify]
    best = best_possible_speedup(verify, draft_cost, 16)
    out = {"device": torch.cuda.get_device_name(0) if not args.dry else "cpu (dry run)",
           "torch": torch.__version__,
           "target_ms": verify[0] * 1000, "draft_ms": draft_cost * 1000,
           "draft_over_target": c, "verify_ratios": ratios,
           "best_at_full_acceptance": best, "auto_loads_draft": best >= LOAD_MARGIN,
           "best_k": {}}
    cost = CostModel(verify, draft_cost)
    for alpha in (0.5, 0.7, 0.9):
        k, s = best_k(cost, [alpha] * 16, max_k=16)
        out["best_k"][str(alpha)] = {"k": k, "predicted_speedup": s}

    # the decode loop on the GPU: self-draft (shared weights) accepts everything, equals plain
    self_draft = HFBackend("self", cfg, model=target.model, tokenizer=tok)
    stats_plain, stats_spec = DecodeStats(), DecodeStats()
    plain, spec = [], []
    for s in decode_steps(target, None, prompt[:32], rng=np.random.default_rng(0),
                          config=DecodeConfig(max_tokens=64)):
        plain += s.tokens
        stats_plain.add(s)
    drafter = ModelDrafter(self_draft, sampling=SamplingConfig(), rng=np.random.default_rng(0))
    for s in decode_steps(target, drafter, prompt[:32], rng=np.random.default_rng(0),
                          config=DecodeConfig(max_tokens=64, draft_tokens=4)):
        spec += s.tokens
        stats_spec.add(s)
    first_diff = next((i for i, (a, b) in enumerate(zip(plain, spec)) if a != b), None)
    margin = None
    if first_diff is not None:  # a numerical near-tie of bf16 kernels, or a real difference?
        from specpair.agreement import top2_margin
        from specpair.backends import sync

        margin = top2_margin(sync(target, [*prompt[:32], *plain[:first_diff]])[0])
    out["self_draft"] = {"acceptance_rate": stats_spec.acceptance_rate,
                         "identical_to_plain": plain == spec, "first_difference": first_diff,
                         "top2_margin_there": margin,
                         "plain_target_seconds_per_step": stats_plain.target_seconds
                         / max(1, stats_plain.steps),
                         "plain_seconds_per_step": stats_plain.decode_seconds
                         / max(1, stats_plain.steps),
                         "plain_tokens_per_second": stats_plain.tokens_per_second,
                         "self_draft_tokens_per_second": stats_spec.tokens_per_second}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
