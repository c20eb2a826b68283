"""`specpair bench`: plain vs speculative decoding, side by side, with statistics (local models),
or any OpenAI-compatible servers (`--endpoint`)."""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..errors import InvalidOption
from .common import (
    add_model_options,
    add_sampling_options,
    check_writable,
    load_kwargs,
    sampling_config,
    sampling_kwargs,
    write_json,
)

CEILING_KS = (2, 4, 8, 16, 32, 64)


def add(sub) -> None:
    from ..core.decode import DEFAULT_DRAFT_TOKENS
    from ..measure.bench import DEFAULT_BENCH_TOKENS, DEFAULT_RUNS
    from ..measure.suites import BUILTIN_SUITES, DEFAULT_PER_CATEGORY, SPEC_BENCH
    from ..models import DEFAULT_DRAFT

    bench = sub.add_parser(
        "bench", help="plain vs speculative decoding, side by side, with statistics",
        description="The reference experiment: each run decodes the next prompt of the suite "
                    "plainly, with each --draft drafter at each K, and with auto (interleaved, "
                    "after a warm-up); reports tokens/s with 95%% CIs (end to end, one-time "
                    "costs included, and steady state), the speedup from paired runs with a "
                    "bootstrap CI and p-value, acceptance (overall and by draft position), the "
                    "draft/target time split, per category for suites that have categories, "
                    "this machine's ceiling k/cost(k), and every output token checked "
                    "against the target.")
    add_model_options(bench, draft_default=DEFAULT_DRAFT, drafts="many")
    bench.add_argument("--suite", default="story", metavar="SUITE",
                       help=f"{'|'.join(BUILTIN_SUITES)}, {SPEC_BENCH}[:CATEGORY] or a .jsonl "
                            'file of {"prompt": ...} lines (default story)')
    bench.add_argument("--per-category", type=int, default=None, metavar="N",
                       help=f"suites with categories: the first N prompts of each (default "
                            f"{DEFAULT_PER_CATEGORY} for {SPEC_BENCH}: a 2-core CPU cannot run "
                            "all 480)")
    bench.add_argument("--runs", type=int, default=None, metavar="N",
                       help=f"paired runs (default {DEFAULT_RUNS}; with categories: one per "
                            "prompt)")
    bench.add_argument("--max-tokens", "-n", type=int, default=DEFAULT_BENCH_TOKENS, metavar="N",
                       help=f"new tokens per run (default {DEFAULT_BENCH_TOKENS})")
    bench.add_argument("--draft-tokens", "-k", type=int, nargs="+", default=None,
                       metavar="K", help="draft lengths to compare, e.g. -k 1 2 4 "
                                         f"(default {DEFAULT_DRAFT_TOKENS}); with --adaptive, "
                                         "the largest K")
    bench.add_argument("--no-auto", dest="auto", action="store_false",
                       help="leave out the auto column (generate's default drafter, rebuilt "
                            "every run with its setup cost counted)")
    bench.add_argument("--endpoint", action="append", default=[], metavar="URL",
                       help="benchmark running OpenAI-compatible servers instead of local "
                            "models (repeatable: the first is the reference; runs interleave)")
    bench.add_argument("--label", action="append", default=[], metavar="NAME",
                       help="a name for each --endpoint, in order")
    bench.add_argument("--api-key", default=None, metavar="KEY",
                       help="--endpoint: sent as 'Authorization: Bearer KEY'")
    bench.add_argument("--model", default=None, metavar="NAME",
                       help="--endpoint: the model field of each request")
    bench.add_argument("--concurrency", type=int, nargs="+", default=[1], metavar="C",
                       help="--endpoint: also measure each endpoint under load, one closed "
                            "loop per C (exactly C requests in flight, at least 4C requests, "
                            "endpoints interleaved): aggregate tokens/s, p50/p99 latency, time "
                            "to first token, drafted and accepted tokens. Example: "
                            "--concurrency 1 2 4 8")
    bench.add_argument("--timeout", type=float, default=300.0, metavar="S",
                       help="--endpoint: seconds before a request is abandoned (default 300)")
    bench.add_argument("--cold", action="store_true",
                       help="run auto as on a new machine every run: no stored costs or "
                            "acceptance, nothing remembered")
    bench.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                       help="skip measuring this machine's verify curve for the ceiling")
    add_sampling_options(bench)
    bench.add_argument("--json", metavar="FILE", help="write the full report as JSON (- = stdout)")
    bench.add_argument("--markdown", metavar="FILE", help="write the report table as Markdown")
    bench.add_argument("--plot", metavar="FILE", help="write a PNG: speedup per mode with its "
                                                      "interval, acceptance by draft position")
    bench.set_defaults(run=run)


def _modes(pair, args, sampling, ks: list[int]) -> list:
    """plain; each --draft drafter at each K (lookups: `name` or `name:off` for no global tree;
    with --adaptive, each drafter under auto's choice of K); and auto, rebuilt for every run so
    that its planning is paid, learning across runs as repeated `generate` calls do."""
    from ..measure.bench import fixed

    modes = [fixed("plain", 0, None)]
    rng = np.random.default_rng(args.seed)
    for spec in args.draft:
        if spec in ("auto", "none"):
            continue
        name, _, scope = spec.partition(":")
        if name in ("ngram", "suffix"):
            scope = scope or "key"
            label = name if scope == "key" else f"{name} ({scope})"
            for k in ks:
                modes.append(_lookup_mode(pair, args, name, scope, label, k))
            continue
        drafter = pair.model_drafter(spec, sampling=sampling, rng=rng)
        load = pair.resolver.load_seconds.get(spec, 0.0)
        modes += [fixed(f"spec K={k}", k, drafter, load) for k in ks]
        if args.draft_lora:  # the same draft with its LoRA, side by side
            tuned = pair.model_drafter(spec, sampling=sampling, rng=rng, lora=args.draft_lora)
            load = pair.resolver.load_seconds.get(f"{spec} + {args.draft_lora}", 0.0)
            modes += [fixed(f"spec+LoRA K={k}", k, tuned, load) for k in ks]
    if args.auto or args.draft == ["auto"]:
        modes.append(_auto_mode(pair, args, rng))
    return modes


def _lookup_mode(pair, args, name: str, scope: str, label: str, k: int):
    from ..call import CallOptions
    from ..measure.bench import Mode

    partition = f"bench {label}"  # each mode learns from its own outputs only
    mode_name = f"{label} adaptive" if args.adaptive else f"{label} K={k}"

    def setup():
        t0 = time.perf_counter()
        call = pair.resolve(CallOptions(draft=name, suffix_cache=scope, draft_tokens=k,
                                        **sampling_kwargs(args)), partition=partition)
        d = pair.drafting(call, rng=np.random.default_rng(args.seed), kind=args.suite,
                          fresh=args.cold)
        state["drafting"] = d
        return d.drafter, time.perf_counter() - t0

    def after(drafter) -> None:
        pair.remember(state["drafting"], fresh=args.cold)

    state: dict = {}
    return Mode(mode_name, k, setup, after, lambda: pair.forget_suffix(partition))


def _auto_mode(pair, args, rng):
    from ..auto.planner import AUTO_MAX_K
    from ..call import CallOptions
    from ..measure.bench import Mode

    state: dict = {}

    def setup():
        before = set(pair.resolver.load_seconds)
        call = pair.resolve(CallOptions(draft="auto", draft_tokens=args.draft_tokens_max,
                                        **sampling_kwargs(args)), partition="bench auto")
        d = pair.drafting(call, rng=rng, kind=args.suite, fresh=args.cold)
        state["drafting"] = d
        loads = pair.resolver.load_seconds
        planning = d.setup_seconds - sum(v for s, v in loads.items() if s not in before)
        # every run pays the loading of the models it drafts with, as every `generate` would
        return d.drafter, planning + sum(loads[s] for s in d.models)

    def after(drafter) -> None:
        pair.remember(state["drafting"], fresh=args.cold)

    name = "auto (cold)" if args.cold else "auto"
    return Mode(name, min(args.draft_tokens_max or AUTO_MAX_K, AUTO_MAX_K), setup, after,
                lambda: pair.forget_suffix("bench auto"))


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import load
    from ..core.console import stderr_console
    from ..core.decode import DEFAULT_DRAFT_TOKENS, DecodeConfig
    from ..core.prompt import encode_prompt
    from ..measure import report as render
    from ..measure.bench import DEFAULT_RUNS, BenchConfig, run_bench
    from ..measure.suites import DEFAULT_PER_CATEGORY, SPEC_BENCH, load_suite
    from .common import require

    require("bench", "scipy", "specpair bench")
    if args.plot:
        require("plot", "matplotlib", "--plot")
    if args.endpoint:
        require("bench", "httpx", "bench --endpoint")
        from .deploy import bench_endpoints

        return bench_endpoints(args)
    if any(d in ("none", "") for d in args.draft) and len(args.draft) == 1:
        raise InvalidOption("bench compares plain with speculative decoding: give a --draft")
    ks = [DEFAULT_DRAFT_TOKENS] if args.draft_tokens is None else args.draft_tokens
    for k in ks:
        DecodeConfig(draft_tokens=k)  # validates K with the usual message
    if args.adaptive:
        ks = [max(ks) if args.draft_tokens else 16]
    args.draft_tokens_max = max(args.draft_tokens) if args.draft_tokens else None
    per_category = args.per_category
    if per_category is None and args.suite.startswith(SPEC_BENCH):
        per_category = DEFAULT_PER_CATEGORY
    if args.runs is not None and args.runs < 1:
        raise InvalidOption(f"--runs must be >= 1, got {args.runs}")
    texts = load_suite(args.suite, per_category=per_category)
    categories = [p.category for p in texts] if any(p.category for p in texts) else None
    runs = args.runs or (len(texts) if categories else DEFAULT_RUNS)
    sampling = sampling_config(args)
    config = BenchConfig(suite=args.suite, runs=runs, max_tokens=args.max_tokens,
                         sampling=sampling)
    for path in (args.json, args.markdown, args.plot):
        if path and path != "-":
            check_writable(path)
    kwargs = load_kwargs(args, draft="none")
    kwargs["adaptive"] = args.adaptive
    pair = load(args.target, **kwargs)
    target = pair.target
    prompts = [encode_prompt(target, p.text, chat=p.chat) for p in texts]
    modes = _modes(pair, args, sampling, ks)
    total = config.runs * len(modes) * config.max_tokens
    progress = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("tokens"), TimeElapsedColumn(), console=stderr_console(),
                        transient=True)
    drafts = [d for d in args.draft if d != "none"]
    with progress:
        task = progress.add_task("bench", total=total)
        result = run_bench(target, modes, prompts, config,
                           advance=lambda n: progress.advance(task, n),
                           describe={"target": target.name, "draft": " ".join(drafts) or "auto",
                                     "device": target.device},
                           categories=categories,
                           ceiling_ks=CEILING_KS if args.ceiling else ())
    render.print_report(result, stderr_console() if args.json == "-" else Console())
    if not sampling.greedy:
        stderr_console().print(
            "sampled: each output follows the target's distribution up to how far llama.cpp's "
            "batched evaluation moves it (on the 1.5B, a total-variation distance of about "
            "0.01-0.02 per position); `specpair exactness` measures it on this machine",
            soft_wrap=True)
    write_json(result, args.json)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render.markdown(result))
    if args.plot:
        render.plot(result, args.plot)
    pair.close()
    return 0
