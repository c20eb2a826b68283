"""Parsed command-line arguments to frozen configuration, in one place (the subcommands and the
server read these; the parser itself is cli.py)."""

from __future__ import annotations

import argparse

from .errors import SpecpairError


def backend_config(args: argparse.Namespace):
    from .backends import DEFAULT_N_CTX, BackendConfig

    return BackendConfig(n_ctx=args.n_ctx or DEFAULT_N_CTX, threads=args.threads,
                         device=getattr(args, "device", "auto"),
                         dtype=getattr(args, "dtype", "auto"))


def sampling_config(args: argparse.Namespace):
    from .sampling import SamplingConfig

    return SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          min_p=args.min_p, seed=args.seed)


def acceptance_config(args: argparse.Namespace):
    from .lossy import EXACT, LENIENCE, TYPICAL, AcceptanceRule

    accept = getattr(args, "accept", "exact")
    lenience = getattr(args, "lenience", 1.0)
    if accept == "typical" and lenience != 1.0:
        raise SpecpairError("choose one lossy rule: --lenience or --accept typical")
    kind = TYPICAL if accept == "typical" else (LENIENCE if lenience != 1.0 else EXACT)
    return AcceptanceRule(kind=kind, lenience=lenience,
                          epsilon=getattr(args, "typical_epsilon", 0.3),
                          delta=getattr(args, "typical_delta", 0.09))
