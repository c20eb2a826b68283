"""How far do llama.cpp's logits move between single-token and batched evaluation?

The measurement behind NEAR_TIE_MARGIN (specpair/agreement.py). For each prompt, decode greedily
one token at a time (the kernels of plain decoding), keeping each position's ten best logits;
then re-evaluate the same sequence in batches of b = 2..K+1 tokens (the kernels of verifying K
draft tokens) and record, per position, how much the margin between the single-token top-2 moved,
and the largest move of any of the ten best logits relative to the best one.

    python scripts/near_tie_study.py --suites story:3 edit:3 code:2 -n 250 --batches 2 3 4 5 9

(SUITE:N takes the first N prompts of a suite; SUITE:A-B prompts A to B-1.)

Prints, per batch size, the mean, 99th and 99.9th percentile and maximum of both, over all
positions of all prompts.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from specpair.backends import BackendConfig, load_backend, sync
from specpair.backends.device import machine_id
from specpair.core.prompt import encode_prompt
from specpair.measure.suites import load_suite
from specpair.models import DEFAULT_TARGET

TOP = 10


def study(target, prompt: list[int], n: int, batch_sizes: list[int]) -> dict[int, np.ndarray]:
    # plain greedy, one token at a time: the reference rows
    ids, ref, tokens = [], [], []
    row = sync(target, prompt)[0]
    for _ in range(n):
        top = np.argpartition(row, -TOP)[-TOP:]
        ids.append(top)
        ref.append(row[top])
        token = int(np.argmax(row))
        if token in target.eos_ids:
            break
        tokens.append(token)
        row = target.eval([token])[0]
    ids, ref = ids[: len(tokens)], np.array(ref[: len(tokens)])
    out = {}
    for b in batch_sizes:
        moved = []
        sync(target, prompt)
        target.rewind(len(prompt) - 1)
        seq = [prompt[-1], *tokens]
        rows = []
        for lo in range(0, len(tokens), b):  # windows of b tokens, as verification sees them
            chunk = seq[lo : lo + b]
            logits = target.eval(chunk)
            rows += [logits[i] for i in range(len(chunk))]
        for i in range(len(tokens)):
            single = ref[i] - ref[i].max()
            batch = rows[i][ids[i]]
            batch = batch - batch[np.argmax(ref[i])]
            moved.append(float(np.abs(single - batch).max()))
        out[b] = np.array(moved)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--suites", nargs="+", default=["story", "edit"])
    p.add_argument("-n", type=int, default=400, help="tokens per prompt")
    p.add_argument("--prompts", type=int, default=3, help="prompts per suite")
    p.add_argument("--max-k", type=int, default=8)
    p.add_argument("--batches", type=int, nargs="+", default=None,
                   help="batch sizes to compare with single tokens (default 2..max-k+1)")
    p.add_argument("--json", help="write the per-batch-size summary here")
    args = p.parse_args()
    target = load_backend(args.target, BackendConfig(n_ctx=4096))
    sizes = args.batches or list(range(2, args.max_k + 2))
    moved: dict[int, list[np.ndarray]] = {b: [] for b in sizes}
    total = 0
    for suite in args.suites:
        # SUITE:N takes the first N prompts; SUITE:A-B prompts A..B-1 (a top-up run)
        spec = suite.split(":")[1] if ":" in suite else str(args.prompts)
        lo, hi = (int(x) for x in spec.split("-")) if "-" in spec else (0, int(spec))
        suite = suite.split(":")[0]
        for prompt in load_suite(suite)[lo:hi]:
            tokens = encode_prompt(target, prompt.text, chat=prompt.chat)
            result = study(target, tokens, args.n, sizes)
            total += len(result[sizes[0]])
            for b in sizes:
                moved[b].append(result[b])
            print(f"{suite}: {len(result[sizes[0]])} tokens", file=sys.stderr)
    summary = {"target": target.name, "cpu": machine_id(), "tokens": total,
               "suites": args.suites, "by_batch": {}}
    print(f"{total} positions, {target.name}, {machine_id()}")
    print("batch  mean    p99     p99.9   max   (largest move of a top-10 logit vs the best)")
    for b in sizes:
        x = np.concatenate(moved[b])
        row = {"mean": float(x.mean()), "p99": float(np.quantile(x, 0.99)),
               "p999": float(np.quantile(x, 0.999)), "max": float(x.max())}
        summary["by_batch"][b] = row
        print(f"{b:5d}  {row['mean']:.3f}  {row['p99']:.3f}  {row['p999']:.3f}  "
              f"{row['max']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
