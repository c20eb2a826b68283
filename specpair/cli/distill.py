"""`specpair distill`: train a draft toward its target on this machine, export it as a
llama.cpp LoRA, and measure the acceptance it gains (specpair/distillation/job.py)."""

from __future__ import annotations

import argparse

from ..extras import require_extra
from .common import say, write_json


def add(sub) -> None:
    from ..distillation.data import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TOP_K
    from ..distillation.job import DATA_MODES, DEFAULT_EVAL_TEMPERATURE
    from ..distillation.prompts import DEFAULT_HELD_OUT

    p = sub.add_parser(
        "distill", help="train a draft toward its target, export a LoRA, measure the gain",
        description="Distil a draft toward its target on your prompts: (1) the target's "
                    "completions and its top-k log-probabilities at every position, (2) LoRA "
                    "training of the draft in transformers (peft) on a divergence to the "
                    "target, (3) export as a llama.cpp LoRA GGUF (DIR/draft-lora.gguf: "
                    "--draft-lora on generate, bench, advise and serve) and a merged HF "
                    "folder, (4) acceptance before and after on held-out prompts. Every "
                    "stage resumes from DIR: run the same command again after Ctrl-C or "
                    "--max-minutes.")
    p.add_argument("--target", required=True, metavar="MODEL",
                   help="the model the draft learns to predict (a .gguf file or a name)")
    p.add_argument("--draft", required=True, metavar="MODEL",
                   help="the draft to train (a .gguf file or a name; same vocabulary)")
    p.add_argument("--prompts", required=True, metavar="FILE",
                   help='JSONL: a string, {"prompt": ...} or {"messages": [...]} per line, '
                        'optionally "kind" (held-out results are reported per kind)')
    p.add_argument("--out", required=True, metavar="DIR", help="where every stage writes")
    p.add_argument("--data", choices=DATA_MODES, default="target",
                   help="training completions: the target's own (default), the draft's "
                        "scored by the target (on-policy, DistillSpec), or both")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T",
                   help="of the training completions (default 0: greedy)")
    p.add_argument("--top-k-logprobs", dest="logprobs", type=int, default=DEFAULT_TOP_K,
                   metavar="K", help=f"target log-probabilities kept per position (default "
                                     f"{DEFAULT_TOP_K}; the rest is one bucket)")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N",
                   help=f"completion length per prompt (default {DEFAULT_MAX_NEW_TOKENS})")
    p.add_argument("--held-out", type=float, default=DEFAULT_HELD_OUT, metavar="F",
                   help=f"share of prompts held out for evaluation (default "
                        f"{DEFAULT_HELD_OUT}; the split is kept in DIR)")
    p.add_argument("--eval-temperature", type=float, default=DEFAULT_EVAL_TEMPERATURE,
                   metavar="T", help="sampled acceptance is measured at this temperature "
                                     f"(default {DEFAULT_EVAL_TEMPERATURE})")
    p.add_argument("--full", action="store_true",
                   help="fine-tune every weight (float32) instead of a LoRA; exported as a "
                        "LoRA of rank --rank by SVD of the weight changes")
    p.add_argument("--rank", type=int, default=16, metavar="R", help="LoRA rank (default 16)")
    p.add_argument("--alpha", type=float, default=32.0, metavar="A",
                   help="LoRA alpha (default 32: scale alpha / rank = 2)")
    p.add_argument("--lr", type=float, default=None, metavar="LR",
                   help="learning rate (default 2e-4 for a LoRA, 1e-5 for --full)")
    p.add_argument("--epochs", type=float, default=2.0, metavar="E", help="default 2")
    p.add_argument("--batch", type=int, default=8, metavar="N",
                   help="sequences per optimizer step (default 8)")
    p.add_argument("--loss", choices=["kl", "tv"], default="kl",
                   help="forward KL to the target (default) or total variation")
    p.add_argument("--ce-weight", type=float, default=0.1, metavar="W",
                   help="weight of the completion's cross-entropy added to the loss "
                        "(default 0.1)")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--no-merged", dest="merged", action="store_false",
                   help="skip writing DIR/merged (the HF folder for the transformers engine)")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes at the next resume point (run again to go on)")
    p.add_argument("--threads", type=int, default=None, metavar="N")
    p.add_argument("--n-ctx", type=int, default=2048, metavar="N")
    p.add_argument("--json", metavar="FILE", help="the evaluation report as JSON (- = stdout)")
    p.set_defaults(run=run)


class _Bars:
    """The stages on a progress bar with an ETA, on stderr."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from ..core.console import stderr_console

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 console=stderr_console())

    def stage(self, name: str, total: int, unit: str):
        task = self.progress.add_task(name, total=total, unit=unit)
        return lambda n: self.progress.advance(task, n)

    def note(self, text: str) -> None:
        self.progress.console.print(f"specpair: {text}", soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    require_extra("distill", "specpair distill")
    from ..distillation.job import DistillConfig
    from ..distillation.job import run as distill

    config = DistillConfig(data=args.data, temperature=args.temperature, logprobs=args.logprobs,
                           max_new_tokens=args.max_new_tokens, held_out=args.held_out,
                           eval_temperature=args.eval_temperature, full=args.full,
                           rank=args.rank, alpha=args.alpha, learning_rate=args.lr,
                           epochs=args.epochs, batch=args.batch, loss=args.loss,
                           ce_weight=args.ce_weight, seed=args.seed, merged=args.merged)
    bars = _Bars()
    with bars.progress:
        outcome = distill(target=args.target, draft=args.draft, prompts=args.prompts,
                          out=args.out, config=config, max_minutes=args.max_minutes,
                          threads=args.threads, n_ctx=args.n_ctx, stages=bars)
    if not outcome.complete:
        write_json({"complete": False, "stage": outcome.stage, "notes": outcome.notes},
                   args.json)
        return 0
    _print(outcome.report, outcome.out)
    write_json({"complete": True, **outcome.report}, args.json)
    return 0


def _print(r: dict, out) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{r['draft']} distilled toward {r['target']}: held-out acceptance "
                        f"({r['held_out_prompts']} prompts, {r['device']})")
    for col in ("mode", "K", "acceptance before", "after", "gain [95% CI]",
                "mean accepted before", "after"):
        table.add_column(col)
    for mode in ("greedy", "sampled"):
        for k, row in r[mode].items():
            lo, hi = row["gain_ci95"]
            table.add_row(mode if k == "4" else "", k, f"{row['rate_before']:.3f}",
                          f"{row['rate_after']:.3f}",
                          f"{row['gain']:+.3f} [{lo:+.3f}, {hi:+.3f}]",
                          f"{row['length_before']:.2f}", f"{row['length_after']:.2f}")
    Console().print(table)
    c = r["costs"]
    say(f"draft cost per token: {1000 * c['draft_seconds_per_token']['before']:.1f} ms "
        f"before, {1000 * c['draft_seconds_per_token']['after']:.1f} ms with the LoRA "
        f"({100 * c['lora_overhead']:+.0f}%); target step "
        f"{1000 * c['target_step_seconds']:.1f} ms")
    s = r["predicted_speedup"]["greedy"]["4"]
    here_b, here_a = s["before"]["this_machine"], s["after"]["this_machine"]
    say(f"predicted speedup at K = 4, greedy: this machine {here_b:.2f}x -> {here_a:.2f}x; "
        f"a flat (GPU-like) verify curve {s['before']['flat_curve']:.2f}x -> "
        f"{s['after']['flat_curve']:.2f}x")
    say(f"the adapter: {out}/draft-lora.gguf (use --draft-lora); report {out}/eval.json")
