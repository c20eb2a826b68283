"""Rendering a benchmark report (the dict from `bench.run_bench`): terminal, Markdown, PNG."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table


def _ci(ci: list[float]) -> str:
    lo, hi = ci
    return "n/a" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"


def _columns(m: dict) -> list[str]:
    """One mode's column of the report table, in the order of METRICS."""
    e2e, tps = m["end_to_end_tokens_per_second"], m["tokens_per_second"]
    column = [f"{e2e['mean']:.2f} {_ci(e2e['ci95'])}", f"{tps['mean']:.2f} {_ci(tps['ci95'])}",
              f"{m['setup_seconds'] / max(len(m['runs']), 1):.2f}"]
    if "speedup" not in m:
        return column + ["1.00x (reference)", "", "", "", "", "",
                         f"- / {m['target_seconds']:.1f}", "reference"]
    s, steady, agreement = m["speedup"], m["speedup_steady_state"], m["agreement"]
    return column + [
        f"{s['ratio']:.2f}x {_ci(s['ci95'])}",
        "n/a" if math.isnan(s["p_value"]) else f"{s['p_value']:.3g}",
        f"{steady['ratio']:.2f}x",
        f"{m['acceptance_rate']:.1%} of {m['drafts']} drafts" if m["drafts"] else "no drafts",
        f"{m['mean_acceptance_length']:.2f}" if m["drafts"] else "-",
        " ".join(f"{a:.2f}" for a in m["acceptance_by_position"][:8])
        + (" ..." if len(m["acceptance_by_position"]) > 8 else ""),
        f"{m['draft_seconds']:.1f} / {m['target_seconds']:.1f}",
        "n/a (sampled)" if not agreement["checked"] else
        f"{agreement['tokens_checked']} checked: {agreement['tokens_near_tie']} near-tie, "
        f"{agreement['tokens_bad']} bad; {agreement['identical']}/{len(m['runs'])} identical",
    ]


METRICS = ["tokens/s end to end [95% CI]", "tokens/s steady state [95% CI]",
           "one-time setup s/run", "speedup end to end [95% CI]", "p-value (paired)",
           "speedup steady state", "acceptance rate", "mean acceptance length",
           "acceptance by position", "draft / target seconds", "every token vs target"]


def _table(report: dict) -> tuple[list[str], list[list[str]]]:
    """Metrics as rows, modes as columns: narrow enough for a terminal."""
    columns = [_columns(m) for m in report["modes"]]
    headers = ["", *(m["name"] for m in report["modes"])]
    return headers, [[metric, *(c[i] for c in columns)] for i, metric in enumerate(METRICS)]


def _title(report: dict) -> str:
    c = report["config"]
    return (f"{c.get('target', '?')} <- {c.get('draft', '?')}: suite {c['suite']}, "
            f"{c['runs']} runs, up to {c['max_tokens']} new tokens, "
            f"{'greedy' if c['sampling']['temperature'] == 0 else 'sampled'}, "
            f"{report['machine']['cpus']} CPUs")


def print_report(report: dict, console: Console) -> None:
    headers, rows = _table(report)
    table = Table(*headers, title=_title(report))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for m in report["modes"]:
        agreement = m.get("agreement", {})
        for line in agreement.get("details", []):
            if "vs plain: identical" not in line or "thin" in line:
                console.print(f"  {m['name']} {line}", soft_wrap=True)
        if agreement.get("close_to_threshold"):
            console.print(f"  [yellow]{m['name']}: {agreement['close_to_threshold']} token(s) "
                          f"passed within {agreement['worst_deficit']:.3f} logits of the "
                          f"target's best, close to the {agreement['threshold']} near-tie "
                          "threshold (specpair/agreement.py says how it was measured)[/yellow]",
                          soft_wrap=True)
    for line in report["verdict"]:
        console.print(f"[bold]{line}[/bold]", soft_wrap=True)


def markdown(report: dict) -> str:
    headers, rows = _table(report)
    lines = [f"### {_title(report)}", "", "| " + " | ".join(headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines.append("")
    lines += [f"**{v}**" for v in report["verdict"]]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> None:
    """Tokens/s per run per mode, and acceptance by draft position."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for m in report["modes"]:
        runs = m["runs"]
        left.plot([r["run"] for r in runs],
                  [r["stats"]["end_to_end_tokens_per_second"] for r in runs],
                  marker="o", label=m["name"])
        if "acceptance_by_position" in m:
            acc = m["alphas"]
            right.plot(range(1, len(acc) + 1), acc, marker="o", label=m["name"])
    left.set(xlabel="run", ylabel="tokens/s, end to end", title="speed per run")
    left.set_xticks([r["run"] for r in report["modes"][0]["runs"]])
    left.set_ylim(bottom=0)
    left.legend()
    right.set(xlabel="draft position", ylabel="P(accepted | reached)",
              title="acceptance by draft position", ylim=(0, 1.05))
    if right.lines:
        right.legend()
    fig.suptitle(_title(report), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
