"""`specpair advise`: measure this machine, predict every drafter and K, recommend the fastest
(plain decoding included), and store the costs auto reads; `--what-if` predicts from stated
costs with no model at all."""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..errors import InvalidOption
from .common import add_sampling_options, sampling_config


def add(sub) -> None:
    from ..backends import DEFAULT_N_CTX
    from ..drafters.ngram import DEFAULT_NGRAM_MAX, DEFAULT_NGRAM_MIN
    from ..measure.advise import DEFAULT_MAX_K
    from ..models import DEFAULT_TARGET

    adv = sub.add_parser(
        "advise", help="which drafter and K is fastest on this machine, or is plain decoding?",
        description="Measures the target's cost to evaluate k = 1..MAX_K+1 tokens at once, each "
                    "drafter's cost per token and its acceptance by position on a short "
                    "calibration decode of the suite, then predicts tokens/s for every drafter "
                    "and K (Leviathan et al.'s expected-tokens formula over the measured costs) "
                    "and recommends the fastest, plain decoding included.")
    adv.add_argument("--target", default=DEFAULT_TARGET, metavar="MODEL",
                     help=f"the target model (default {DEFAULT_TARGET})")
    adv.add_argument("--draft", nargs="+", default=None, metavar="DRAFTER",
                     help="drafters to compare: models, ngram and/or suffix (default: suffix and "
                          "every "
                          "named model smaller than the target, those with another tokenizer "
                          "too: what --draft auto weighs)")
    adv.add_argument("--draft-lora", default=None, metavar="FILE",
                     help="also calibrate each model draft with this LoRA adapter GGUF "
                          "(`specpair distill`'s DIR/draft-lora.gguf), side by side")
    adv.add_argument("--suite", default="story", metavar="SUITE",
                     help="calibration prompts: story|code|edit or a .jsonl file (default story)")
    adv.add_argument("--max-k", type=int, default=DEFAULT_MAX_K, metavar="K",
                     help=f"largest draft length to consider (default {DEFAULT_MAX_K})")
    adv.add_argument("--calibration-tokens", type=int, default=48, metavar="N",
                     help="tokens decoded per calibration prompt (default 48)")
    adv.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, metavar="N",
                     help="context length")
    adv.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads")
    adv.add_argument("--gpu-layers", default=None, metavar="N|all",
                     help="llama.cpp: layers to offload (default all where supported)")
    adv.add_argument("--draft-gpu-layers", default=None, metavar="N|all",
                     help="llama.cpp: the same for model drafts")
    adv.add_argument("--device", default="auto", metavar="DEV", help="transformers: device")
    adv.add_argument("--dtype", default="auto", metavar="TYPE", help="transformers: dtype")
    adv.add_argument("--ngram-min", type=int, default=DEFAULT_NGRAM_MIN, metavar="N",
                     help=f"ngram: shortest match (default {DEFAULT_NGRAM_MIN})")
    adv.add_argument("--ngram-max", type=int, default=DEFAULT_NGRAM_MAX, metavar="N",
                     help=f"ngram: longest match (default {DEFAULT_NGRAM_MAX})")
    add_sampling_options(adv)
    adv.add_argument("--json", action="store_true", help="print the measurements and "
                                                         "predictions as JSON")
    adv.add_argument("--what-if", action="store_true",
                     help="predict from stated costs, with no model and no hardware: "
                          "--draft-cost, --verify, --alpha (e.g. an 8B drafting for a 405B on "
                          "GPUs: --draft-cost 0.05 --verify gpu --alpha 0.8)")
    adv.add_argument("--draft-cost", type=float, default=None, metavar="C",
                     help="--what-if: the draft's cost per token, in target steps")
    adv.add_argument("--verify", default="gpu", metavar="CURVE",
                     help="--what-if: the target's cost for batches of 1..K+1 tokens: gpu "
                          "(flat: memory-bound), cpu (a 2-core CPU), linear:SLOPE, or a list "
                          "1,1.6,2.0,... (default gpu)")
    adv.add_argument("--alpha", type=float, nargs="+", default=None, metavar="A",
                     help="--what-if: acceptance per draft position (one value: the same at "
                          "every position)")
    adv.add_argument("--from-json", default=None, metavar="FILE",
                     help="--what-if: take costs and acceptance from `specpair advise --json`")

    adv.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .. import load
    from ..auto import costs
    from ..core.console import stderr_console
    from ..core.prompt import encode_prompt
    from ..measure.advise import (
        K_CALIBRATION,
        K_CALIBRATION_MODEL,
        advise,
        calibrate,
        measure_verify_costs,
    )
    from ..measure.suites import load_suite

    if not 1 <= args.max_k <= 64:
        raise InvalidOption(f"--max-k must be between 1 and 64, got {args.max_k}")
    if args.what_if:
        from .deploy import what_if

        return what_if(args)
    if args.calibration_tokens < 8:
        raise InvalidOption(f"--calibration-tokens must be >= 8, got {args.calibration_tokens}")
    sampling = sampling_config(args)
    pair = load(args.target, draft="none", n_ctx=args.n_ctx, threads=args.threads,
                device=args.device, dtype=args.dtype, gpu_layers=args.gpu_layers,
                draft_gpu_layers=args.draft_gpu_layers, ngram_min=args.ngram_min,
                ngram_max=args.ngram_max)
    specs = args.draft or [*pair.resolver.auto_drafts(), "suffix"]
    for spec in specs:  # check every pair before loading any weights
        if spec not in ("ngram", "suffix"):
            pair.resolver.comparison(spec)
    target = pair.target
    prompts = [encode_prompt(target, p.text, chat=p.chat) for p in load_suite(args.suite)[:2]]
    rng = np.random.default_rng(args.seed)
    # model drafters calibrate at fixed K (p-min off): the predictions are for fixed-K drafting
    # each model draft as it is and, with --draft-lora, with its LoRA too
    entries = [(spec, None) for spec in specs] + [
        (spec, args.draft_lora) for spec in specs
        if args.draft_lora and spec not in ("ngram", "suffix")]
    drafters = [pair.lookup(spec) if spec in ("ngram", "suffix") else
                pair.model_drafter(spec, sampling=sampling, rng=rng, p_min=0.0, lora=lora)
                for spec, lora in entries]
    console = stderr_console()
    with console.status("measuring the target's cost for batches of 1.."
                        f"{args.max_k + 1} tokens"):
        verify = measure_verify_costs(target, prompts[0], max_n=args.max_k + 1)
    calibrations = []
    for drafter in drafters:
        k_cal = min(args.max_k, K_CALIBRATION.get(drafter.name, K_CALIBRATION_MODEL))
        with console.status(f"calibrating {drafter.name} (K={k_cal}, {len(prompts)} prompts)"):
            calibrations.append(calibrate(target, drafter, prompts, k_cal=k_cal,
                                          max_tokens=args.calibration_tokens,
                                          sampling=sampling))
    result = advise(verify, calibrations, max_k=args.max_k)
    # fill the cost cache that auto reads: the verify curve and each model's cost
    config = pair.resolver.target_config
    updates = {costs.cost_key("verify", pair.resolver.target_engine, target.path, config,
                              target.device): list(verify)}
    for (spec, lora), cal in zip(entries, calibrations):
        if spec not in ("ngram", "suffix") and cal.drafted:
            updates[pair.resolver.draft_cost_key(spec, lora)] = cal.draft_per_token
    stored = costs.save(updates)
    if args.json:
        print(json.dumps(result.to_dict() | {"target": target.name, "suite": args.suite,
                                             "device": target.device}, indent=2))
        return 0
    out = Console()
    curve = Table("tokens evaluated at once", "seconds", "x one token",
                  title=f"{target.name} on {target.device}: verification cost")
    for n, t in enumerate(verify, 1):
        curve.add_row(str(n), f"{t * 1000:.1f} ms", f"{t / verify[0]:.2f}")
    out.print(curve)
    for cal in calibrations:
        alphas = " ".join(f"{a:.2f}" for a in cal.alphas)
        out.print(f"{cal.drafter}: {cal.draft_per_token * 1000:.2f} ms per drafted token "
                  f"({cal.draft_per_token / result.verify[0]:.2f} of a target step); acceptance "
                  f"{cal.accepted}/{cal.drafted}, by position {alphas}", soft_wrap=True)
    table = Table("K", *(f"{c.drafter}: tok/s (speedup)" for c in calibrations),
                  title=f"predicted, plain decoding = {1 / result.verify[0]:.1f} tok/s")
    by_k: dict[int, list[str]] = {}
    for name, k, tps, s in result.table:
        mark = " <-" if result.choice == (name, k) else ""
        by_k.setdefault(k, []).append(f"{tps:.1f} ({s:.2f}x){mark}")
    for k, cells in by_k.items():
        table.add_row(str(k), *cells)
    out.print(table)
    out.print(f"[bold]recommendation: {result.reason}[/bold]", soft_wrap=True)
    where = (f"stored in {costs.cache_file()}" if stored
             else "NOT stored (the cache directory is not writable)")
    out.print(f"costs {where}: --draft auto uses them", soft_wrap=True)
    pair.close()
    return 0
