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
        return f"{s.ratio:.2f}x"
    return f"{s.ratio:.2f}x [{s.ci_low:.2f}, {s.ci_high:.2f}]"


def table(report: dict, title: str) -> list[str]:
    """Every mode overall (with a 95% interval), then, where requests carry a category, one
    row per category with a column per mode (a few requests each: no interval)."""
    if any(e.get("load") for e in report["endpoints"]):
        return load_table(report, title)
    by_label = {e["label"]: e for e in report["endpoints"]}
    modes = [e for e in report["endpoints"] if e["label"] not in PLAIN.values()]

    def pairs(e: dict, cat: str | None = None) -> tuple[list[float], list[float]]:
        base = by_label[PLAIN[engine(e["label"])]]["runs"]
        idx = [i for i, r in enumerate(e["runs"]) if cat is None or r.get("category") == cat]
        return ([base[i]["tokens_per_second"] for i in idx],
                [e["runs"][i]["tokens_per_second"] for i in idx])

    lines = [f"### {title}", "", "| mode | speedup over its engine's plain | drafted tokens "
             "per output token | acceptance |", "|---|---|---|---|"]
    for e in modes:  # from every response's own statistics (llama.cpp: `timings.draft_n`)
        runs = [r for r in e["runs"] if r.get("drafted") is not None]
        drafted = sum(r["drafted"] for r in runs)
        out = sum(r["completion_tokens"] for r in runs) or 1
        acc = (f"{drafted / out:.2f} | {sum(r['accepted'] for r in runs) / drafted:.0%}"
               if drafted else "0 | -")
        lines.append(f"| {e['label']} | {ratio_cell(*pairs(e))} | {acc} |")
    cats = _categories(report)
    if cats:
        n = sum(r.get("category") == cats[0] for r in modes[0]["runs"])
        lines += ["", f"Per category ({n} requests each: {TOO_FEW}):", "",
                  "| category | " + " | ".join(e["label"] for e in modes) + " |",
                  "|---|" + "---|" * len(modes)]
        for cat in cats:
            lines.append(f"| {cat} | " + " | ".join(ratio_cell(*pairs(e, cat))
                                                    for e in modes) + " |")
    plain = {k: float(np.mean([r["tokens_per_second"] for r in by_label[v]["runs"]]))
             for k, v in PLAIN.items() if v in by_label}
    lines += ["", "plain tokens/s end to end (mean over requests): " + ", ".join(
        f"{k} {v:.2f}" for k, v in plain.items())]
    return lines


def load_table(report: dict, title: str) -> list[str]:
    """SPECPAIR_ANCHORS=concurrency: each endpoint's closed loops, one row per endpoint and
    level, its aggregate over the first endpoint's at the same level."""
    first = report["endpoints"][0].get("load") or {}
    lines = [f"### {title}, under load", "", "| endpoint | in flight | aggregate tok/s | vs "
             f"{report['endpoints'][0]['label']} | p50 / p99 s | time to first token s | "
             "drafted / accepted | a round: K (offered) / accepted | batch cost predicted / "
             "measured |", "|---|---|---|---|---|---|---|---|---|"]
    for e in report["endpoints"]:
        for level, p in sorted((e.get("load") or {}).items(), key=lambda kv: int(kv[0])):
            ref = first.get(level)
            vs = f"{p['tokens_per_second'] / ref['tokens_per_second']:.2f}x" if ref else "-"
            spec = (f"{p['drafted']:.0f} / {p['accepted']:.0f}" if p.get("drafted")
                    else "-")
            b = p.get("batch")  # a specpair scheduler's account of its rounds
            rounds = (f"{b['k_per_round']:.2f} ({b['offered_per_round']:.1f}) / "
                      f"{b['accepted_per_round']:.2f}" if b else "-")
            ratio = f"{b['cost_predicted_over_measured']:.2f}" if b and \
                b["cost_predicted_over_measured"] else "-"
            lines.append(f"| {e['label']} | {level} | {p['tokens_per_second']:.1f} | {vs} | "
                         f"{p['p50']:.1f} / {p['p99']:.1f} | {p['ttft_p50']:.2f} | {spec} | "
                         f"{rounds} | {ratio} |")
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
