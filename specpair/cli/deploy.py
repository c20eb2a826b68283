"""Beyond one machine: `specpair deploy` (a checked vLLM or llama-server command),
`bench --endpoint` (any OpenAI-compatible server) and `advise --what-if` (predictions from
stated costs)."""

from __future__ import annotations

import argparse
import json

from ..errors import InvalidOption
from .common import check_writable, sampling_config, write_json


def add(sub) -> None:
    dep = sub.add_parser(
        "deploy", help="check a pair and print a ready vLLM or llama-server command",
        description="Checks the pair's tokenizers, reads both models' sizes and dtypes from "
                    "config.json/safetensors or the GGUF header, chooses tensor/pipeline "
                    "parallel sizes for the stated GPUs, and prints the command, or refuses "
                    "with the reason (exit 3). States the engine version it targets.")
    dep.add_argument("engine", choices=["vllm", "llama-server"])
    dep.add_argument("target", metavar="TARGET", help="vllm: a model folder; llama-server: "
                                                      "a .gguf file")
    dep.add_argument("draft", metavar="DRAFT", help="the draft, of the same kind")
    dep.add_argument("--gpus", type=int, default=1, metavar="N", help="GPUs available "
                     "(default 1; 0 = CPU, llama-server only)")
    dep.add_argument("--gpu-memory", type=float, default=80.0, metavar="GIB",
                     help="memory of each GPU in GiB (default 80)")
    dep.add_argument("-k", "--draft-tokens", type=int, default=4, metavar="K",
                     help="draft tokens per round (default 4)")
    dep.add_argument("--temperature", type=float, default=0.0, metavar="T",
                     help="the sampling the server will be used with (0 = greedy): vLLM's "
                          "cross-vocabulary drafting is greedy-only")
    dep.add_argument("--json", action="store_true", help="print the plan as JSON")

    dep.set_defaults(run=cmd_deploy)



def bench_endpoints(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..core.console import stderr_console
    from ..measure.endpoint import Endpoint, print_report, run
    from ..measure.suites import load_suite

    if args.label and len(args.label) != len(args.endpoint):
        raise InvalidOption(f"give one --label per --endpoint ({len(args.endpoint)}), or none")
    from ..measure.bench import DEFAULT_RUNS
    from ..measure.suites import DEFAULT_PER_CATEGORY, SPEC_BENCH

    if min(args.concurrency) < 1 or args.timeout <= 0 or (args.runs is not None and
                                                            args.runs < 1):
        raise InvalidOption("--concurrency and --runs must be >= 1, --timeout > 0")
    labels = args.label or [f"endpoint {i + 1}" for i in range(len(args.endpoint))]
    endpoints = [Endpoint(url, label, args.api_key, args.model)
                 for url, label in zip(args.endpoint, labels)]
    per_category = args.per_category
    if per_category is None and args.suite.startswith(SPEC_BENCH):
        per_category = DEFAULT_PER_CATEGORY
    prompts = load_suite(args.suite, per_category=per_category)
    categorized = any(p.category for p in prompts)
    args.runs = args.runs or (len(prompts) if categorized else DEFAULT_RUNS)
    if args.json and args.json != "-":
        check_writable(args.json)
    progress = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("tokens"), console=stderr_console(), transient=True)
    with progress:
        loads = sum(4 * c for c in args.concurrency) if args.concurrency != [1] else 0
        task = progress.add_task("bench", total=(args.runs + loads) * len(endpoints)
                                 * args.max_tokens)
        report = run(endpoints, prompts, runs=args.runs, max_tokens=args.max_tokens,
                     sampling=sampling_config(args), timeout=args.timeout,
                     concurrency=args.concurrency, advance=lambda n: progress.advance(task, n))
    report["suite"] = args.suite
    print_report(report, stderr_console() if args.json == "-" else Console())
    write_json(report, args.json)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from ..deploy.plan import LLAMA_SERVER_TARGET, VLLM_TARGET, plan_llama_server, plan_vllm

    if args.gpus < 0 or args.gpu_memory <= 0 or not 1 <= args.draft_tokens <= 64:
        raise InvalidOption("--gpus must be >= 0, --gpu-memory > 0, -k between 1 and 64")
    if args.engine == "vllm" and args.gpus < 1:
        raise InvalidOption("vllm needs --gpus >= 1")
    planner = plan_vllm if args.engine == "vllm" else plan_llama_server
    plan = planner(args.target, args.draft, gpus=args.gpus, gpu_memory_gb=args.gpu_memory,
                   k=args.draft_tokens, sampled=args.temperature > 0)
    version = VLLM_TARGET if args.engine == "vllm" else LLAMA_SERVER_TARGET
    if args.json:
        print(json.dumps(plan.to_dict() | {"engine_version": version}, indent=2))
        return 0
    print(f"# for {version}; pair: {plan.verdict}")
    for note in plan.notes:
        print(f"# {note}")
    print(plan.shell())
    return 0


def what_if(args: argparse.Namespace) -> int:
    from ..deploy.whatif import verify_curve
    from ..deploy.whatif import what_if as predict

    if args.from_json:
        verify, calibrations = _advise_report(args.from_json)
        results = []
        for cal in calibrations:
            r = predict(draft_cost=cal["draft_per_token"] / verify[0],
                        verify=[v / verify[0] for v in verify], alphas=cal["alphas"] or [0.0],
                        max_k=min(args.max_k, len(verify) - 1))
            results.append((cal["drafter"], r))
    else:
        if args.draft_cost is None or args.alpha is None:
            raise InvalidOption("--what-if needs --draft-cost C and --alpha A (or --from-json)")
        r = predict(draft_cost=args.draft_cost, verify=verify_curve(args.verify, args.max_k),
                    alphas=args.alpha, max_k=args.max_k)
        results = [("draft", r)]
    if args.json:
        print(json.dumps({name: r.to_dict() for name, r in results}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    out = Console()
    table = Table("K", *(f"{name}: speedup" for name, _ in results),
                  title="predicted speedup over plain decoding (Leviathan et al.'s formula)")
    for i in range(len(results[0][1].table)):
        table.add_row(str(results[0][1].table[i][0]),
                      *(f"{r.table[i][1]:.2f}x" if i < len(r.table) else "-"
                        for _, r in results))
    out.print(table)
    for name, r in results:
        out.print(f"{name}: " + (f"best K={r.best[0]}, {r.best[1]:.2f}x" if r.best else
                                 "plain decoding: no K is predicted to pay"))
    return 0


def _advise_report(path: str) -> tuple[list[float], list[dict]]:
    """The verify curve and calibrations of a `specpair advise --json` file, checked: a file
    that is not one is a one-line error, never a traceback."""
    try:
        with open(path) as f:
            measured = json.load(f)
    except (OSError, ValueError) as e:
        raise InvalidOption(f"cannot read --from-json {path}: {e}") from None

    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    try:
        verify = measured["verify_seconds"]
        calibrations = measured["calibrations"]
        ok = (isinstance(verify, list) and len(verify) >= 2
              and all(number(v) and v > 0 for v in verify) and isinstance(calibrations, list)
              and all(isinstance(c, dict) and number(c["draft_per_token"])
                      and isinstance(c["alphas"], list) and all(number(a) for a in c["alphas"])
                      and isinstance(c["drafter"], str) for c in calibrations))
    except (KeyError, TypeError):
        ok = False
    if not ok or not calibrations:
        raise InvalidOption(f"--from-json {path} is not a `specpair advise --json` report "
                            "(verify_seconds and calibrations with drafter, draft_per_token, "
                            "alphas): run specpair advise --json > FILE")
    return verify, calibrations
