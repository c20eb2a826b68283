"""The CLI side of cluster/: `bench --endpoint`, `deploy`, `advise --what-if`."""

from __future__ import annotations

import argparse
import json

from ..errors import SpecpairError
from ..options import sampling_config


def bench_endpoints(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..commands import check_writable, write_json
    from ..console import stderr_console
    from ..suites import load_suite
    from .endpoint import Endpoint, print_report, run

    if args.label and len(args.label) != len(args.endpoint):
        raise SpecpairError(f"give one --label per --endpoint ({len(args.endpoint)}), or none")
    if args.concurrency < 1 or args.timeout <= 0 or args.runs < 1:
        raise SpecpairError("--concurrency and --runs must be >= 1, --timeout > 0")
    labels = args.label or [f"endpoint {i + 1}" for i in range(len(args.endpoint))]
    endpoints = [Endpoint(url, label, args.api_key, args.model)
                 for url, label in zip(args.endpoint, labels)]
    prompts = load_suite(args.suite)
    if args.json and args.json != "-":
        check_writable(args.json)
    progress = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("tokens"), console=stderr_console(), transient=True)
    with progress:
        task = progress.add_task("bench", total=args.runs * len(endpoints) * args.max_tokens)
        report = run(endpoints, prompts, runs=args.runs, max_tokens=args.max_tokens,
                     sampling=sampling_config(args), timeout=args.timeout,
                     concurrency=args.concurrency, advance=lambda n: progress.advance(task, n))
    report["suite"] = args.suite
    print_report(report, stderr_console() if args.json == "-" else Console())
    write_json(report, args.json)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from .deploy import LLAMA_SERVER_TARGET, VLLM_TARGET, plan_llama_server, plan_vllm

    if args.gpus < 0 or args.gpu_memory <= 0 or not 1 <= args.draft_tokens <= 64:
        raise SpecpairError("--gpus must be >= 0, --gpu-memory > 0, -k between 1 and 64")
    if args.engine == "vllm" and args.gpus < 1:
        raise SpecpairError("vllm needs --gpus >= 1")
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
    from .whatif import verify_curve
    from .whatif import what_if as predict

    if args.from_json:
        try:
            with open(args.from_json) as f:
                measured = json.load(f)
        except (OSError, ValueError) as e:
            raise SpecpairError(f"cannot read --from-json {args.from_json}: {e}") from None
        verify = measured["verify_seconds"]
        results = []
        for cal in measured["calibrations"]:
            r = predict(draft_cost=cal["draft_per_token"] / verify[0],
                        verify=[v / verify[0] for v in verify], alphas=cal["alphas"] or [0.0],
                        max_k=min(args.max_k, len(verify) - 1))
            results.append((cal["drafter"], r))
    else:
        if args.draft_cost is None or args.alpha is None:
            raise SpecpairError("--what-if needs --draft-cost C and --alpha A (or --from-json)")
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
