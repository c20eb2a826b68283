"""Issue 12's measurements: drafting through text, against the same-vocabulary path.

    python bench/crossvocab_bench.py [--suites story code edit] [-n 128] [--runs 2]

For each suite, one interleaved bench (specpair's run_bench): plain; Gemma 3 270M drafting for
Qwen2.5-Coder-1.5B through text (K = 4); Qwen2.5-Coder-0.5B through text (K = 4, the same draft
forced through the text-level path); the 0.5B through its shared vocabulary (K = 4, p-min 0 so
that both 0.5B modes draft alike). Prints acceptance, mean acceptance length, speed vs plain, and
the share of drafting time spent translating; every output token is checked against the target.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from specpair.backends import BackendConfig, load_backend  # noqa: E402
from specpair.core.prompt import encode_prompt  # noqa: E402
from specpair.core.sampling import SamplingConfig  # noqa: E402
from specpair.drafters import ModelDrafter  # noqa: E402
from specpair.drafters.crossvocab import TextDrafter  # noqa: E402
from specpair.measure.bench import BenchConfig, fixed, run_bench  # noqa: E402
from specpair.measure.suites import load_suite  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--suites", nargs="+", default=["story", "code", "edit"])
    p.add_argument("-n", type=int, default=128)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    config = BackendConfig(n_ctx=4096)
    target = load_backend("qwen2.5-coder-1.5b", config)
    gemma = load_backend("gemma-3-270m", config)
    qwen_text = load_backend("qwen2.5-coder-0.5b", config)
    qwen_same = load_backend("qwen2.5-coder-0.5b", config)
    greedy = SamplingConfig()
    out = {}
    for suite in args.suites:
        prompts = [encode_prompt(target, q.text, chat=q.chat) for q in load_suite(suite)]
        drafters = {"gemma 270M, text": TextDrafter(gemma, target),
                    "qwen 0.5B, text": TextDrafter(qwen_text, target),
                    "qwen 0.5B, same vocab": ModelDrafter(qwen_same, sampling=greedy,
                                                          rng=np.random.default_rng(0))}
        modes = [fixed("plain", 0, None)] + [fixed(name, 4, d) for name, d in drafters.items()]
        report = run_bench(target, modes, prompts,
                           BenchConfig(suite=suite, runs=args.runs, max_tokens=args.n))
        rows = []
        for m in report["modes"][1:]:
            d = drafters[m["name"]]
            translate = getattr(d, "translate_seconds", 0.0)
            # run_bench decodes a warm-up too: the share uses the measured runs' draft time
            # against all translation, so it is an upper bound
            share = translate / m["draft_seconds"] if m["draft_seconds"] else 0.0
            a = m["agreement"]
            rows.append({"mode": m["name"], "speedup": m["speedup"]["ratio"],
                         "ci95": m["speedup"]["ci95"], "acceptance": m["acceptance_rate"],
                         "mean_acceptance_length": m["mean_acceptance_length"],
                         "by_position": m["acceptance_by_position"],
                         "translate_share_of_draft": share,
                         "tokens_checked": a["tokens_checked"], "bad": a["tokens_bad"]})
            print(f"{suite:5s} {m['name']:22s} {m['speedup']['ratio']:.2f}x "
                  f"[{m['speedup']['ci95'][0]:.2f}, {m['speedup']['ci95'][1]:.2f}] acceptance "
                  f"{m['acceptance_rate']:.1%} MAL {m['mean_acceptance_length']:.2f} by position "
                  f"{' '.join(f'{x:.2f}' for x in m['acceptance_by_position'])} translating "
                  f"{share:.1%} of draft time; {a['tokens_checked']} tokens checked, "
                  f"{a['tokens_bad']} bad", flush=True)
        out[suite] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
