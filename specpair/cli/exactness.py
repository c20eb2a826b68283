"""`specpair exactness`: how far batched evaluation moves the target's sampling distribution
here (measure/exactness.py), i.e. how closely speculative sampling matches plain sampling."""

from __future__ import annotations

import argparse

from .common import add_sampling_options, sampling_config, write_json


def add(sub) -> None:
    from ..backends import DEFAULT_N_CTX
    from ..models import DEFAULT_TARGET

    p = sub.add_parser(
        "exactness", help="how closely speculative sampling matches plain sampling here",
        description="Sampled verification is exact for the distribution it is given, but "
                    "llama.cpp computes a position slightly differently in a batch than alone. "
                    "This measures the total-variation distance between the two sampling "
                    "distributions on this machine: every row of batches of 2, 5, 9 and 17 "
                    "tokens, and the last row of a 40-token prompt, each against the same "
                    "position evaluated one token at a time. Speculative sampling matches plain "
                    "sampling up to that distance per position.")
    p.add_argument("--target", default=DEFAULT_TARGET, metavar="MODEL")
    p.add_argument("--prompt", default="Write a short story about a lighthouse keeper.",
                   metavar="TEXT", help="the text whose positions are compared")
    p.add_argument("--tokens", type=int, default=68, metavar="N",
                   help="greedy tokens generated to compare along (default 68)")
    p.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, metavar="N")
    p.add_argument("--threads", type=int, default=None, metavar="N")
    add_sampling_options(p)
    p.set_defaults(temperature=1.0)
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON (- = stdout)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .. import load
    from ..core.prompt import encode_prompt
    from ..measure.exactness import measure

    sampling = sampling_config(args)
    if sampling.greedy:
        from ..errors import InvalidOption

        raise InvalidOption("--temperature must be > 0: greedy decoding compares argmaxes "
                            "(bench checks every token), not distributions")
    with load(args.target, draft="none", n_ctx=args.n_ctx, threads=args.threads) as pair:
        target = pair.target
        prompt = encode_prompt(target, args.prompt, chat=True)
        continuation = pair.generate(tokens=prompt, max_tokens=args.tokens).tokens
        rows = measure(target, prompt, continuation, sampling=sampling)
        device = target.device
    table = Table("evaluated as", "positions", "mean TV", "max TV",
                  title=f"{target.name} on {device}: batched vs one token at a time "
                        f"(T = {sampling.temperature:g}, top-p {sampling.top_p:g})")
    for r in rows:
        table.add_row(r.what, str(r.positions), f"{r.mean_tv:.4f}", f"{r.max_tv:.4f}")
    Console().print(table)
    write_json({"target": target.name, "device": device,
                "sampling": {"temperature": sampling.temperature, "top_p": sampling.top_p},
                "rows": [r.to_dict() for r in rows]}, args.json)
    return 0
