"""Rendering a benchmark report (the dict from `bench.run_bench`): terminal, Markdown, PNG."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table


def _ci(ci: list[float]) -> str:
    lo, hi = ci
    return "(too few runs for an interval)" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"


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
    if report.get("per_category"):
        headers, rows = _category_table(report)
        table = Table(*headers, title="speedup end to end per category (paired runs)")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if report.get("ceiling"):
        console.print(_ceiling_line(report["ceiling"]), soft_wrap=True)


def _category_table(report: dict) -> tuple[list[str], list[list[str]]]:
    names = [m["name"] for m in report["modes"] if "speedup" in m]
    rows = []
    for cat, by_mode in report["per_category"].items():
        rows.append([cat, *(f"{by_mode[n]['ratio']:.2f}x {_ci(by_mode[n]['ci95'])} "
                            f"({by_mode[n]['n']})" for n in names)])
    return ["category", *names], rows


def _ceiling_line(ceiling: dict) -> str:
    points = ", ".join(f"k={k}: {c['cost']:.2f} steps, ceiling {c['ceiling']:.2f}x"
                       for k, c in ceiling.items())
    return ("this machine's verify curve (a free drafter at full acceptance can reach at most "
            f"k / cost(k)): {points}")


def markdown(report: dict) -> str:
    headers, rows = _table(report)
    lines = [f"### {_title(report)}", "", "| " + " | ".join(headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines.append("")
    lines += [f"**{v}**" for v in report["verdict"]]
    if report.get("per_category"):
        headers, rows = _category_table(report)
        lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    if report.get("ceiling"):
        lines += ["", _ceiling_line(report["ceiling"])]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> None:
    """The speedup of each mode over plain with its 95% interval (end to end), and
    acceptance by draft position."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    spec = [m for m in report["modes"] if "speedup" in m]
    for i, m in enumerate(spec):
        s = m["speedup"]
        lo, hi = s["ci95"]
        err = None if math.isnan(lo) else [[s["ratio"] - lo], [hi - s["ratio"]]]
        left.errorbar([i], [s["ratio"]], yerr=err, fmt="o", capsize=6)
        if "acceptance_by_position" in m:
            acc = m["alphas"]
            right.plot(range(1, len(acc) + 1), acc, marker="o", label=m["name"])
    left.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    left.set_xticks(range(len(spec)), [m["name"] for m in spec], rotation=20, fontsize=8)
    left.set(ylabel="speedup over plain, end to end",
             title="speedup [95% CI] (no bar: too few runs)")
    right.set(xlabel="draft position", ylabel="P(accepted | reached)",
              title="acceptance by draft position", ylim=(0, 1.05))
    if right.lines:
        right.legend()
    fig.suptitle(_title(report), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
