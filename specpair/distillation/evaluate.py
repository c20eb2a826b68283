"""Stage 4: what the trained draft gains, on held-out prompts, before and after.

Acceptance is read off the target's own completions, teacher-forced, which is what exact
verification accepts:
- greedy: a round that starts at completion position i accepts the draft's argmax tokens while
  they equal the target's greedy tokens (the completion), at most K. Every position is taken
  as a start (a decode's rounds start at some of them), so a prompt's figure is the mean over
  its positions.
- sampled: a draft token is accepted with probability alpha_i = sum_x min(p(x), q(x)), p and q
  after the same temperature (Leviathan et al.), along a completion sampled from the target
  (the accepted prefix is distributed as the target's own text); a round from i accepts
  E = sum_{j<=K} prod_{l<j} alpha_{i+l} tokens.
Both models are evaluated on llama.cpp, the draft with its LoRA as it will draft: one batched
evaluation per sequence each. Intervals are paired over prompts (t-interval of the
differences). The draft's cost per token, with and without the LoRA, and the target's verify
curve are measured here, and turn acceptance into a predicted speedup on this machine and on
a flat (GPU-like) curve with `advise --what-if`'s formula.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..auto.costmodel import CostModel, predicted_speedup
from ..auto.costs import measure_costs
from ..backends import BackendConfig, load_backend
from ..core.backend import Backend
from ..core.drafter import fit_width
from ..core.files import write_atomic
from ..errors import InvalidOption
from .data import Scored
from .prompts import Prompt

EVAL_KS = (4, 8)


def completion_logits(model: Backend, seq: Scored) -> np.ndarray:
    """A model's logits at every completion position [n, V] (one batched evaluation)."""
    model.rewind(0)
    if len(seq.prompt) > 1:
        model.eval(list(seq.prompt[:-1]), all_logits=False)
    rows = model.eval([int(seq.prompt[-1]), *map(int, seq.completion[:-1])], all_logits=True)
    return np.asarray(rows, dtype=np.float32)


def runs(match: np.ndarray, k: int) -> np.ndarray:
    """For each start i, how many of positions i, i+1, ... match in a row, at most k."""
    n = len(match)
    out = np.zeros(n, dtype=np.int64)
    run = 0
    for i in range(n - 1, -1, -1):
        run = run + 1 if match[i] else 0
        out[i] = min(run, k)
    return out


def expected_runs(alpha: np.ndarray, k: int) -> np.ndarray:
    """[n, k]: for each start i, P(at least j tokens accepted), j = 1..k (positions past the
    completion's end count as rejected)."""
    n = len(alpha)
    out = np.zeros((n, k))
    for i in range(n):
        reach = 1.0
        for j in range(k):
            reach *= alpha[i + j] if i + j < n else 0.0
            out[i, j] = reach
    return out


def alphas(p_logits: np.ndarray, q_logits: np.ndarray, temperature: float) -> np.ndarray:
    """alpha_i = sum_x min(p_i(x), q_i(x)) after the temperature (both distributions). The
    two models' widths may differ by padding rows (a 7B Qwen has 152,064, the 0.5B 151,936):
    q is fitted to the target's width as the decode loop fits a draft (`fit_width`)."""
    def probs(x):
        z = x.astype(np.float64) / temperature
        z -= z.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)
    p = probs(p_logits)
    return np.minimum(p, fit_width(probs(q_logits), p.shape[-1])).sum(-1)


@dataclass
class Side:
    """One draft's acceptance on one prompt: per K, P(>= j accepted) for j = 1..K."""

    survival: dict[int, np.ndarray]

    def mean_length(self, k: int) -> float:
        return float(self.survival[k].sum())

    def rate(self, k: int) -> float:
        return self.mean_length(k) / k


def greedy_side(logits: np.ndarray, seq: Scored) -> Side:
    match = logits.argmax(-1) == seq.completion
    out = {}
    for k in EVAL_KS:
        r = runs(match, k)
        out[k] = np.array([(r >= j).mean() for j in range(1, k + 1)])
    return Side(out)


def sampled_side(alpha: np.ndarray) -> Side:
    return Side({k: expected_runs(alpha, k).mean(0) for k in EVAL_KS})


def paired_interval(before: Sequence[float], after: Sequence[float]) -> tuple[float, float,
                                                                              float]:
    """(mean of after - before, the 95% t-interval's ends) over paired values. The t-interval
    of measure/benchstats, written again in three lines: measurement tools sit above the API
    layer this stage belongs to."""
    from scipy import stats as sps

    d = np.asarray(after, float) - np.asarray(before, float)
    if d.size < 2:
        return float(d.mean()) if d.size else float("nan"), float("nan"), float("nan")
    half = sps.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def compare(before: Sequence[Side], after: Sequence[Side]) -> dict:
    """Per K: acceptance rate and mean acceptance length before, after, and the paired
    difference with its 95% interval; acceptance by position."""
    out = {}
    for k in EVAL_KS:
        b = [s.rate(k) for s in before]
        a = [s.rate(k) for s in after]
        diff = paired_interval(b, a)
        out[str(k)] = {
            "prompts": len(b),
            "rate_before": float(np.mean(b)), "rate_after": float(np.mean(a)),
            "gain": diff[0], "gain_ci95": [diff[1], diff[2]],
            "length_before": float(np.mean([s.mean_length(k) for s in before])),
            "length_after": float(np.mean([s.mean_length(k) for s in after])),
            "by_position_before": np.mean([s.survival[k] for s in before], 0).tolist(),
            "by_position_after": np.mean([s.survival[k] for s in after], 0).tolist()}
    return out


def conditional(survival: Sequence[float]) -> list[float]:
    """Per-position acceptance alpha_j = P(>= j) / P(>= j - 1), as the cost model reads it."""
    out, prev = [], 1.0
    for s in survival:
        out.append(float(s / prev) if prev > 0 else 0.0)
        prev = s
    return out


def speedups(result: dict, *, verify: Sequence[float], draft_cost: dict[str, float]) -> dict:
    """Predicted speedup at each K, before and after: on this machine's measured verify curve
    and draft costs (seconds), and on a flat curve (verification of K+1 tokens at the price of
    one, the draft at its measured cost relative to the target)."""
    out = {}
    step = verify[0]
    for mode in ("greedy", "sampled"):
        for k in EVAL_KS:
            row = result[mode][str(k)]
            for when in ("before", "after"):
                a = conditional(row[f"by_position_{when}"])
                c = draft_cost[when]
                here = CostModel(tuple(verify), c)
                flat = CostModel((step,) * (k + 1), c)
                out.setdefault(mode, {}).setdefault(str(k), {})[when] = {
                    "this_machine": predicted_speedup(here, a, k) if len(verify) > k else None,
                    "flat_curve": predicted_speedup(flat, a, k)}
    return out


def costs(target: Backend, base: Backend, tuned: Backend, prompt: Sequence[int], *,
          max_n: int = 9, repeats: int = 5) -> tuple[tuple[float, ...], dict[str, float]]:
    """The target's verify curve (batches of 1..max_n) and each draft's seconds per token,
    measured one after the other on the same prompt, several times each."""
    verify = measure_costs(target, prompt, range(1, max_n + 1), repeats=repeats)
    rounds = [(measure_costs(base, prompt, [1], repeats=repeats)[1],
               measure_costs(tuned, prompt, [1], repeats=repeats)[1]) for _ in range(3)]
    return (tuple(verify[n] for n in range(1, max_n + 1)),
            {"before": float(np.median([r[0] for r in rounds])),
             "after": float(np.median([r[1] for r in rounds]))})


def _side_to_json(side: Side) -> dict:
    return {str(k): v.tolist() for k, v in side.survival.items()}


def _side_from_json(data: dict) -> Side:
    return Side({int(k): np.asarray(v) for k, v in data.items()})


def measure_prompts(folder: Path, held: list[Prompt], measure: Callable[[Prompt], dict | None],
                    *, advance, out_of_time) -> list[dict] | None:
    """Each held-out prompt's sides, measured once: a prompt's result is kept in
    `folder`/ID.json (written whole) as stage 1 keeps each sequence, so a run stopped by its
    time limit resumes at the first prompt without one. `measure` returns
    {"kind", "greedy": {"before", "after"}, "sampled": {...}} of Sides, or None for a prompt
    with no completion. None: out of time."""
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for p in held:
        path = folder / f"{p.id}.json"
        if path.exists():
            data = json.loads(path.read_text())
        else:
            if out_of_time():
                return None
            got = measure(p)
            data = {"empty": True} if got is None else {
                "kind": got["kind"],
                **{mode: {when: _side_to_json(got[mode][when]) for when in ("before", "after")}
                   for mode in ("greedy", "sampled")}}
            write_atomic(path, json.dumps(data) + "\n")
        advance(1)
        if not data.get("empty"):
            results.append({"kind": data["kind"], **{
                mode: {when: _side_from_json(data[mode][when]) for when in ("before", "after")}
                for mode in ("greedy", "sampled")}})
    return results


def run_stage(out: Path, tpair, draft_path: str, adapter: Path, held: list[Prompt],
              kinds: dict[str, str], verify_prompt: list[int], *, eval_temperature: float,
              advance, out_of_time, n_ctx: int, threads: int | None) -> dict | None:
    """Stage 4 over the held-out prompts (None: out of time; the prompts measured so far are
    kept in DIR/eval/, and the next run goes on from them)."""
    bc = BackendConfig(n_ctx=n_ctx, threads=threads)
    base = load_backend(draft_path, bc)
    tuned = load_backend(draft_path, BackendConfig(n_ctx=n_ctx, threads=threads,
                                                   lora=str(adapter)))
    target = tpair.target

    def measure(p: Prompt) -> dict | None:
        g = Scored.load(out / "data" / "held" / f"{p.id}.greedy.npz")
        s = Scored.load(out / "data" / "held" / f"{p.id}.sampled.npz")
        if not len(g.completion) or not len(s.completion):
            return None
        p_logits = completion_logits(target, s)
        return {"kind": kinds.get(p.id, "prompt"),
                "greedy": {"before": greedy_side(completion_logits(base, g), g),
                           "after": greedy_side(completion_logits(tuned, g), g)},
                "sampled": {when: sampled_side(alphas(p_logits, completion_logits(model, s),
                                                      eval_temperature))
                            for when, model in (("before", base), ("after", tuned))}}

    try:
        results = measure_prompts(out / "eval", held, measure, advance=advance,
                                  out_of_time=out_of_time)
        if results is None:
            return None
        if not results:
            raise InvalidOption("no held-out prompt has a completion: give more prompts")
        verify, draft_cost = costs(target, base, tuned, verify_prompt)
    finally:
        base.close()
        tuned.close()
    prompt_kinds = [r["kind"] for r in results]
    report: dict = {"target": Path(target.path).name, "draft": Path(draft_path).name,
                    "adapter": adapter.name, "held_out_prompts": len(prompt_kinds),
                    "eval_temperature": eval_temperature, "device": target.device}
    for mode in ("greedy", "sampled"):
        report[mode] = compare([r[mode]["before"] for r in results],
                               [r[mode]["after"] for r in results])
        for kind in sorted(set(prompt_kinds)):
            pick = [r for r in results if r["kind"] == kind]
            report.setdefault("by_kind", {}).setdefault(kind, {})[mode] = compare(
                [r[mode]["before"] for r in pick], [r[mode]["after"] for r in pick])
    step = verify[0]
    report["costs"] = {"target_step_seconds": step, "verify_curve": [v / step for v in verify],
                       "draft_seconds_per_token": draft_cost,
                       "draft_relative_cost": {k: v / step for k, v in draft_cost.items()},
                       "lora_overhead": draft_cost["after"] / draft_cost["before"] - 1}
    report["predicted_speedup"] = speedups(report, verify=verify, draft_cost=draft_cost)
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib  # the [distill] extra, checked when the run started

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, mode in zip(axes, ("greedy", "sampled")):
        row = report[mode]["8"]
        xs = range(1, len(row["by_position_before"]) + 1)
        ax.plot(xs, row["by_position_before"], "o-", label="base draft")
        ax.plot(xs, row["by_position_after"], "s-", label="distilled")
        ax.set_title(f"{mode}: P(at least j accepted), K = 8")
        ax.set_xlabel("draft position j")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of rounds")
    axes[0].legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


__all__ = ["EVAL_KS", "Side", "alphas", "compare", "completion_logits", "conditional", "costs",
           "expected_runs", "greedy_side", "measure_prompts", "plot", "run_stage", "runs",
           "sampled_side", "speedups"]
