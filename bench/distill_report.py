"""Markdown tables of docs/DISTILL.md from the eval.json of one or more `specpair distill` runs.

    python bench/distill_report.py LABEL=DIR [LABEL=DIR ...]
"""

import json
import sys
from pathlib import Path


def _row(label: str, kind: str, mode: str, k: str, r: dict) -> str:
    lo, hi = r["gain_ci95"]
    return (f"| {label} | {kind} | {mode} | {k} | {r['prompts']} | {r['rate_before']:.3f} | "
            f"{r['rate_after']:.3f} | {r['gain']:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
            f"{r['length_before']:.2f} → {r['length_after']:.2f} |")


def main(args: list[str]) -> None:
    print("| run | held-out kind | mode | K | prompts | acceptance before | after | "
          "gain [95% CI] | mean accepted |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    reports = []
    for arg in args:
        label, _, folder = arg.partition("=")
        r = json.loads((Path(folder) / "eval.json").read_text())
        reports.append((label, r))
        for kind, by_mode in r["by_kind"].items():
            for mode in ("greedy", "sampled"):
                for k, row in by_mode[mode].items():
                    print(_row(label, kind, mode, k, row))
    print()
    print("| run | draft ms/token before | with the LoRA | LoRA cost | target step ms | "
          "predicted K=4 greedy, this machine | flat curve |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, r in reports:
        c, s = r["costs"], r["predicted_speedup"]["greedy"]["4"]
        print(f"| {label} | {1000 * c['draft_seconds_per_token']['before']:.1f} | "
              f"{1000 * c['draft_seconds_per_token']['after']:.1f} | "
              f"{100 * c['lora_overhead']:+.0f}% | {1000 * c['target_step_seconds']:.1f} | "
              f"{s['before']['this_machine']:.2f}x → {s['after']['this_machine']:.2f}x | "
              f"{s['before']['flat_curve']:.2f}x → {s['after']['flat_curve']:.2f}x |")
    print()
    print("| run | acceptance by position (greedy, K = 8, code), P(at least j accepted) |")
    print("| --- | --- |")
    for label, r in reports:
        row = r["by_kind"].get("code", r)["greedy"]["8"]
        before = " ".join(f"{x:.2f}" for x in row["by_position_before"])
        after = " ".join(f"{x:.2f}" for x in row["by_position_after"])
        print(f"| {label} | before: {before}<br>after: {after} |")


if __name__ == "__main__":
    main(sys.argv[1:])
