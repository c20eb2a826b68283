"""`specpair overhead`: the decode loop's own cost per verification round, against a target and
a drafter that cost nothing (measure/overhead.py)."""

from __future__ import annotations

import argparse

from .common import write_json


def add(sub) -> None:
    p = sub.add_parser(
        "overhead", help="specpair's own overhead per verification round (no model needed)",
        description="Runs the real decode loop against a null target (precomputed logits, "
                    "V = 151,936) and a drafter that proposes each row's best token: greedy "
                    "and sampled (T = 0.8, top-p 0.95), K = 1, 4, 8, 16, numpy logits and "
                    "torch tensors on whatever device is present. Prints milliseconds per "
                    "round and the share of a 10 ms target step.")
    p.add_argument("--rounds", type=int, default=200, metavar="N",
                   help="verification rounds per measurement (default 200)")
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="torch device for the tensor path: cpu, cuda, auto (default), or none")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON (- = stdout)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..backends.device import machine_id
    from ..measure.overhead import STEP_MS
    from ..measure.overhead import run as measure

    rows = measure(rounds=args.rounds, torch_device=None if args.device == "none" else
                   args.device)
    table = Table("logits", "sampling", "K", "ms / round", "of which verify", "acceptance",
                  f"share of a {STEP_MS:g} ms step", title=f"decode loop overhead on "
                                                         f"{machine_id()}")
    for r in rows:
        table.add_row(r.array, r.sampling, str(r.k), f"{r.ms_per_round:.3f}",
                      f"{r.verify_ms_per_round:.3f}", f"{r.acceptance:.2f}",
                      f"{r.ms_per_round / STEP_MS:.1%}")
    Console().print(table)
    write_json({"machine": machine_id(), "rows": [r.to_dict() for r in rows]}, args.json)
    return 0
