"""Tables from bench/run_anchors.sh's reports: each mode's end-to-end speedup over its own
engine's plain decoding (geometric mean of paired per-request ratios), overall and per category,
with acceptance, and this machine's ceiling k / cost(k) beside them.

    python bench/anchors_table.py OUT/bench-spec-bench.json OUT/bench-repeated_task.json \
        --ceiling OUT/ceiling.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from specpair.measure.benchstats import TOO_FEW, speedup

PLAIN = {"specpair": "specpair plain", "llama-server": "llama-server plain"}


def engine(label: str) -> str:
    return label.split()[0]


def ratio_cell(base: list[float], mine: list[float]) -> str:
    s = speedup(base, mine)
    if math.isnan(s.ci_low):
        return f"{s.ratio:.2f}x ({s.n} runs: {TOO_FEW})" if s.n > 1 else f"{s.ratio:.2f}x"
    return f"{s.ratio:.2f}x [{s.ci_low:.2f}, {s.ci_high:.2f}]"


def table(report: dict, title: str) -> list[str]:
    by_label = {e["label"]: e for e in report["endpoints"]}
    modes = [e for e in report["endpoints"] if e["label"] not in PLAIN.values()]
    lines = [f"### {title}", "", "| mode | all | acceptance |" + "".join(
        f" {c} |" for c in _categories(report)), "|---|---|---|" + "---|" * len(
        _categories(report))]
    for e in modes:
        base = by_label[PLAIN[engine(e["label"])]]
        tps = [r["tokens_per_second"] for r in e["runs"]]
        btps = [r["tokens_per_second"] for r in base["runs"]]
        spec = e.get("speculative") or {}
        acc = (f"{spec['acceptance_rate']:.0%}, {spec['mean_acceptance_length']:.2f}"
               if spec.get("mean_acceptance_length") else "-")
        cells = []
        for cat in _categories(report):
            idx = [i for i, r in enumerate(e["runs"]) if r.get("category") == cat]
            cells.append(ratio_cell([btps[i] for i in idx], [tps[i] for i in idx]))
        lines.append(f"| {e['label']} | {ratio_cell(btps, tps)} | {acc} |"
                     + "".join(f" {c} |" for c in cells))
    plain = {k: float(np.mean([r["tokens_per_second"] for r in by_label[v]["runs"]]))
             for k, v in PLAIN.items() if v in by_label}
    lines += ["", "plain tokens/s end to end (mean over requests): " + ", ".join(
        f"{k} {v:.2f}" for k, v in plain.items())]
    return lines


def _categories(report: dict) -> list[str]:
    cats = [r.get("category") for r in report["endpoints"][0]["runs"]]
    return list(dict.fromkeys(c for c in cats if c))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("reports", nargs="+")
    p.add_argument("--ceiling")
    args = p.parse_args()
    out = []
    for path in args.reports:
        report = json.loads(Path(path).read_text())
        out += table(report, f"{Path(path).stem}: {report['runs']} requests, up to "
                             f"{report['max_tokens']} tokens, greedy") + [""]
    if args.ceiling:
        c = json.loads(Path(args.ceiling).read_text())
        out.append(f"ceiling on {c['machine']} (a free drafter at full acceptance, "
                   "k / cost(k)): " + ", ".join(
                       f"k={k}: cost {v['cost']:.2f}, ceiling {v['ceiling']:.2f}x"
                       for k, v in c["ceiling"].items()))
    print("\n".join(out))


if __name__ == "__main__":
    main()
