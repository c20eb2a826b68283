"""`specpair bench`: plain vs speculative decoding, side by side, with statistics.

Each run takes the next prompt of the suite and decodes it once per mode (plain, then
speculative for each K), interleaved, after a warm-up, so drift on a noisy machine hits every mode
alike. The result is plain data (a dict, the JSON report); `report.py` renders it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .agreement import compare_outputs
from .backends import Backend
from .benchstats import describe_speedup, speedup, summarize
from .decode import DecodeConfig, decode_steps
from .drafters import Drafter
from .errors import SpecpairError
from .sampling import SamplingConfig
from .stats import DecodeStats
from .suites import Prompt

DEFAULT_RUNS = 5
DEFAULT_BENCH_TOKENS = 500
WARMUP_TOKENS = 16


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    suite: str = "story"
    runs: int = DEFAULT_RUNS
    max_tokens: int = DEFAULT_BENCH_TOKENS
    draft_tokens: tuple[int, ...] = (4,)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise SpecpairError(f"--runs must be >= 1, got {self.runs}")
        for k in self.draft_tokens:  # DecodeConfig validates the values, with the same message
            DecodeConfig(max_tokens=self.max_tokens, draft_tokens=k)


@dataclass(frozen=True)
class Mode:
    name: str
    draft_tokens: int  # 0: plain decoding

    @property
    def plain(self) -> bool:
        return self.draft_tokens == 0


def modes_for(config: BenchConfig, drafter_name: str = "") -> list[Mode]:
    if drafter_name.startswith("adaptive"):
        return [Mode("plain", 0)] + [Mode(f"auto K<={k}", k) for k in config.draft_tokens]
    label = "ngram" if drafter_name == "ngram" else "spec"
    return [Mode("plain", 0)] + [Mode(f"{label} K={k}", k) for k in config.draft_tokens]


def _decode(target, drafter, prompt, mode: Mode, config: BenchConfig, seed: int,
            advance: Callable[[int], None]) -> tuple[list[int], DecodeStats]:
    stats = DecodeStats(prompt_tokens=len(prompt))
    tokens: list[int] = []
    target.rewind(0)  # every mode evaluates the prompt the same way (same kernels, same KV)
    decode_config = DecodeConfig(max_tokens=config.max_tokens,
                                 draft_tokens=max(mode.draft_tokens, 1), sampling=config.sampling)
    for step in decode_steps(target, None if mode.plain else drafter, prompt,
                             config=decode_config, rng=np.random.default_rng(seed)):
        stats.add(step)
        tokens += step.tokens
        advance(len(step.tokens))
    advance(config.max_tokens - len(tokens))  # ended early (EOS): the bar still fills
    return tokens, stats


def run_bench(
    target: Backend,
    drafter: Drafter,
    prompts: list[Prompt],
    config: BenchConfig,
    *,
    advance: Callable[[int], None] = lambda n: None,
    describe: dict | None = None,
) -> dict:
    """Run the experiment; return the report as a dict (see README for its fields)."""
    modes = modes_for(config, drafter.name)
    encoded = [target.tokenize(target.chat_prompt(p.text) if p.chat else p.text)
               for p in prompts]
    seed = config.sampling.seed or 0
    for mode in modes:  # warm-up: page weights in, fill caches; not measured
        _decode(target, drafter, encoded[0], mode,
                BenchConfig(max_tokens=WARMUP_TOKENS, draft_tokens=config.draft_tokens,
                            sampling=config.sampling), seed, lambda n: None)

    per_mode: dict[str, list[dict]] = {m.name: [] for m in modes}
    totals = {m.name: DecodeStats() for m in modes}
    for run in range(config.runs):
        index = run % len(encoded)
        prompt = encoded[index]
        outputs = {}
        for mode in modes:
            tokens, stats = _decode(target, drafter, prompt, mode, config, seed + run, advance)
            outputs[mode.name] = tokens
            totals[mode.name].merge(stats)
            row = {"run": run, "prompt_index": index, "stats": stats.to_dict()}
            per_mode[mode.name].append(row)
        if config.sampling.greedy:
            for mode in modes[1:]:
                agreement = compare_outputs(target, prompt, outputs["plain"], outputs[mode.name])
                per_mode[mode.name][-1]["agreement"] = agreement.to_dict() | {
                    "description": agreement.describe()}

    plain_tps = [r["stats"]["tokens_per_second"] for r in per_mode["plain"]]
    report_modes = []
    for mode in modes:
        rows = per_mode[mode.name]
        tps = [r["stats"]["tokens_per_second"] for r in rows]
        total = totals[mode.name]
        entry = {
            "name": mode.name,
            "draft_tokens": mode.draft_tokens,
            "tokens_per_second": summarize(tps).to_dict(),
            "new_tokens": total.new_tokens,
            "draft_seconds": total.draft_seconds,
            "target_seconds": total.target_seconds,
            "decode_seconds": total.decode_seconds,
            "runs": rows,
        }
        if not mode.plain:
            s = speedup(plain_tps, tps, seed=seed)
            entry |= {
                "speedup": s.to_dict(),
                "verdict": describe_speedup(s, what=f"speculative decoding ({mode.name})"),
                "acceptance_rate": total.acceptance_rate,
                "mean_accepted_length": total.mean_accepted_length,
                "acceptance_by_position": total.acceptance_by_position,
                "agreement": _agreement_summary(rows, config.sampling),
            }
        report_modes.append(entry)
    return {
        "specpair_version": __version__,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "config": (describe or {}) | {
            "suite": config.suite, "prompts": len(prompts), "runs": config.runs,
            "max_tokens": config.max_tokens, "draft_tokens": list(config.draft_tokens),
            "sampling": {"temperature": config.sampling.temperature, "top_k": config.sampling.top_k,
                         "top_p": config.sampling.top_p, "min_p": config.sampling.min_p,
                         "seed": config.sampling.seed},
        },
        "modes": report_modes,
        "verdict": [m["verdict"] for m in report_modes if "verdict" in m],
    }


def _agreement_summary(rows: list[dict], sampling: SamplingConfig) -> dict:
    if not sampling.greedy:
        return {"checked": False, "why": "sampled outputs differ by design; the distribution "
                                         "is what is exact (see the test suite)"}
    found = [r["agreement"] for r in rows]
    return {
        "checked": True,
        "identical": sum(a["identical"] for a in found),
        "near_tie": sum(a["near_tie"] for a in found),
        "not_ok": sum(not a["ok"] for a in found),
        "details": [f"run {r['run']}: {r['agreement']['description']}" for r in rows],
    }
