"""The `specpair` argument parser: one subparser per command, each defined beside its code in
this folder (the `add` function of generate.py, bench.py, ...)."""

from __future__ import annotations

import argparse

from ..version import __version__


def build_parser() -> argparse.ArgumentParser:
    from . import (
        advise,
        bench,
        check,
        deploy,
        distill,
        exactness,
        generate,
        models,
        overhead,
        serve,
        steer,
    )

    parser = argparse.ArgumentParser(
        prog="specpair",
        description="Speculative decoding with any draft/target pair. "
                    "A draft changes speed, never output: verification keeps only what the "
                    "target itself would have produced.",
    )
    parser.add_argument("--version", action="version", version=f"specpair {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (generate, check, bench, advise, serve, steer, deploy, distill, models,
                    overhead, exactness):
        command.add(sub)
    return parser
