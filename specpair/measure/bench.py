"""`specpair bench`: plain vs speculative decoding, side by side, with statistics.

Each run takes the next prompt of the suite and decodes it once per mode (plain, then each
drafter and K, then auto), interleaved, after a warm-up, so drift on a noisy machine hits every
mode alike. A mode's one-time costs (loading a drafter, auto's planning) are paid on every run,
as a user pays them on every `specpair generate`, and are part of its end-to-end time; the
target's own load is common to all modes and left out. The result is plain data (a dict, the JSON
report); `report.py` renders it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..backends import Backend
from ..backends.device import machine_id, usable_cpus
from ..core.decode import DecodeConfig
from ..core.drafter import Drafter
from ..core.sampling import SamplingConfig
from ..core.stats import DecodeStats
from ..errors import InvalidOption
from ..generation import stream_pieces
from ..version import __version__
from .agreement import NEAR_TIE_MARGIN, check_tokens, compare_outputs
from .benchstats import describe_speedup, speedup, summarize

DEFAULT_RUNS = 5
DEFAULT_BENCH_TOKENS = 500
WARMUP_TOKENS = 16


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    suite: str = "story"
    runs: int = DEFAULT_RUNS
    max_tokens: int = DEFAULT_BENCH_TOKENS
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise InvalidOption(f"--runs must be >= 1, got {self.runs}")
        DecodeConfig(max_tokens=self.max_tokens)  # validates max_tokens, same message


# A mode's drafter for one run: (drafter or None for plain, its one-time setup seconds)
Setup = Callable[[], tuple[Drafter | None, float]]


@dataclass(frozen=True)
class Mode:
    name: str
    draft_tokens: int  # 0: plain decoding; else K (auto: the largest K it may choose)
    setup: Setup
    after: Callable[[Drafter | None], None] = lambda d: None  # e.g. auto remembers what it learned
    reset: Callable[[], None] = lambda: None  # after the warm-up: forget what it learned there

    @property
    def plain(self) -> bool:
        return self.draft_tokens == 0


def fixed(name: str, k: int, drafter: Drafter | None, setup_seconds: float = 0.0) -> Mode:
    """A mode whose drafter is built once; `setup_seconds` (its load time) is charged to every
    run, as every `generate` would pay it."""
    return Mode(name, k, lambda: (drafter, setup_seconds))


def _decode(target, mode: Mode, prompt, max_tokens: int, sampling, seed: int,
            advance: Callable[[int], None]) -> tuple[list[int], DecodeStats]:
    target.rewind(0)  # every mode evaluates the prompt the same way (same kernels, same KV)
    drafter, setup_seconds = mode.setup()
    stats = DecodeStats(prompt_tokens=len(prompt), setup_seconds=setup_seconds)
    tokens: list[int] = []
    config = DecodeConfig(max_tokens=max_tokens, draft_tokens=max(mode.draft_tokens, 1),
                          sampling=sampling)
    for piece in stream_pieces(target, drafter, prompt, config=config,
                               rng=np.random.default_rng(seed), stats=stats):
        tokens += piece.tokens
        advance(len(piece.tokens))
    advance(max_tokens - len(tokens))  # ended early (EOS): the bar still fills
    mode.after(drafter)
    return tokens, stats


def run_bench(
    target: Backend,
    modes: Sequence[Mode],
    prompts: Sequence[Sequence[int]],
    config: BenchConfig,
    *,
    advance: Callable[[int], None] = lambda n: None,
    describe: dict | None = None,
    categories: Sequence[str] | None = None,
    ceiling_ks: Sequence[int] = (),
) -> dict:
    """Run the experiment over encoded `prompts` (with a category each, for suites that have
    them); return the report as a dict (README). `ceiling_ks`: batch sizes whose cost is
    measured first, for the ceiling a free drafter can reach on this machine."""
    if not modes or not modes[0].plain:
        raise ValueError("the first mode must be plain decoding: it is the reference")
    seed = config.sampling.seed or 0
    warmup = {}
    for mode in modes:  # warm-up: page weights in, fill caches; not measured
        t0 = time.perf_counter()
        _decode(target, mode, prompts[0], WARMUP_TOKENS, config.sampling, seed, lambda n: None)
        warmup[mode.name] = time.perf_counter() - t0
        mode.reset()
    ceiling = measure_ceiling(target, prompts[0], ceiling_ks) if ceiling_ks else {}

    per_mode: dict[str, list[dict]] = {m.name: [] for m in modes}
    totals = {m.name: DecodeStats() for m in modes}
    for run in range(config.runs):
        index = run % len(prompts)
        prompt = prompts[index]
        outputs = {}
        for mode in modes:
            tokens, stats = _decode(target, mode, prompt, config.max_tokens, config.sampling,
                                    seed + run, advance)
            outputs[mode.name] = tokens
            totals[mode.name].merge(stats)
            per_mode[mode.name].append({"run": run, "prompt_index": index,
                                        "stats": stats.to_dict(),
                                        "category": categories[index] if categories else None})
        if config.sampling.greedy:
            for mode in modes[1:]:
                first = compare_outputs(target, prompt, outputs["plain"], outputs[mode.name])
                every = check_tokens(target, prompt, outputs[mode.name])
                per_mode[mode.name][-1]["agreement"] = first.to_dict() | {
                    "description": first.describe(), "tokens": every.to_dict(),
                    "tokens_description": every.describe()}

    plain_rows = per_mode["plain"]
    report_modes = []
    for mode in modes:
        rows = per_mode[mode.name]
        total = totals[mode.name]
        entry = {
            "name": mode.name,
            "draft_tokens": mode.draft_tokens,
            "tokens_per_second": summarize(_rates(rows, "tokens_per_second")).to_dict(),
            "end_to_end_tokens_per_second":
                summarize(_rates(rows, "end_to_end_tokens_per_second")).to_dict(),
            "new_tokens": total.new_tokens,
            "setup_seconds": total.setup_seconds,
            "draft_seconds": total.draft_seconds,
            "target_seconds": total.target_seconds,
            "decode_seconds": total.decode_seconds,
            "warmup_seconds": warmup[mode.name],
            "runs": rows,
        }
        if not mode.plain:
            e2e = speedup(_rates(plain_rows, "end_to_end_tokens_per_second"),
                          _rates(rows, "end_to_end_tokens_per_second"), seed=seed)
            steady = speedup(_rates(plain_rows, "tokens_per_second"),
                             _rates(rows, "tokens_per_second"), seed=seed)
            entry |= {
                "speedup": e2e.to_dict(),
                "speedup_steady_state": steady.to_dict(),
                "verdict": describe_speedup(e2e, what=f"{mode.name}, end to end,"),
                "drafts": total.drafts,
                "acceptance_rate": total.acceptance_rate,
                "mean_acceptance_length": total.mean_acceptance_length,
                "acceptance_by_position": total.acceptance_by_position,
                "alphas": total.alphas,
                "agreement": _agreement_summary(rows, config.sampling),
            }
        report_modes.append(entry)
    return {
        "specpair_version": __version__,
        "machine": {"cpus": usable_cpus(), "cpu": machine_id(), "platform": platform.platform(),
                    "device": target.device},
        "config": (describe or {}) | {
            "suite": config.suite, "prompts": len(prompts), "runs": config.runs,
            "max_tokens": config.max_tokens,
            "sampling": {"temperature": config.sampling.temperature, "top_k": config.sampling.top_k,
                         "top_p": config.sampling.top_p, "min_p": config.sampling.min_p,
                         "seed": config.sampling.seed},
        },
        "modes": report_modes,
        "verdict": [m["verdict"] for m in report_modes if "verdict" in m],
        "per_category": _per_category(per_mode, modes, seed) if categories else {},
        "ceiling": ceiling,
    }


def _per_category(per_mode: dict[str, list[dict]], modes: Sequence[Mode], seed: int) -> dict:
    """The end-to-end speedup of each mode over plain, per category (paired runs)."""
    plain = per_mode[modes[0].name]
    out: dict[str, dict] = {}
    for cat in dict.fromkeys(r["category"] for r in plain):
        idx = [i for i, r in enumerate(plain) if r["category"] == cat]
        base = [plain[i]["stats"]["end_to_end_tokens_per_second"] for i in idx]
        out[cat] = {m.name: speedup(base, [per_mode[m.name][i]["stats"][
            "end_to_end_tokens_per_second"] for i in idx], seed=seed).to_dict()
            for m in modes[1:]}
    return out


def measure_ceiling(target: Backend, prompt: Sequence[int], ks: Sequence[int]) -> dict:
    """cost(k) in single steps and k / cost(k) for each batch size k: the most a free drafter
    could gain at full acceptance here (a round that verifies k - 1 drafts in one batch of k
    yields k tokens)."""
    from ..auto.costs import measure_costs

    sizes = [k for k in ks if 1 < k < target.n_ctx - len(prompt)]
    if not sizes:
        return {}
    costs = measure_costs(target, prompt, [1, *sizes])
    return {str(k): {"cost": costs[k] / costs[1], "ceiling": k / (costs[k] / costs[1])}
            for k in sizes}


def _rates(rows: list[dict], key: str) -> list[float]:
    return [r["stats"][key] for r in rows]


def _agreement_summary(rows: list[dict], sampling: SamplingConfig) -> dict:
    if not sampling.greedy:
        return {"checked": False, "why": "sampled outputs differ by design; the distribution "
                                         "is what is exact (see the test suite)"}
    found = [r["agreement"] for r in rows]
    tokens = [a["tokens"] for a in found]
    return {
        "checked": True,
        "identical": sum(a["identical"] for a in found),
        "near_tie": sum(a["near_tie"] and not a["identical"] for a in found),
        # every token validated, not only up to the first divergence
        "tokens_checked": sum(t["checked"] for t in tokens),
        "tokens_near_tie": sum(t["near_tie"] for t in tokens),
        "tokens_bad": sum(len(t["bad"]) for t in tokens),
        "near_tie_per_run": [t["near_tie"] for t in tokens],
        "worst_deficit": max((t["worst_deficit"] for t in tokens), default=0.0),
        "close_to_threshold": sum(len(t["close"]) for t in tokens),
        "threshold": NEAR_TIE_MARGIN,
        "not_ok": sum(not (a["ok"] and a["tokens"]["ok"]) for a in found),
        "details": [f"run {r['run']}: vs plain: {r['agreement']['description']}; every token: "
                    f"{r['agreement']['tokens_description']}" for r in rows],
    }
