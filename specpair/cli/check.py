"""`specpair check`: do two tokenizers line up, and exactly how do they differ?"""

from __future__ import annotations

import argparse
import json

from ..errors import EXIT_INCOMPATIBLE, InvalidOption


def add(sub) -> None:
    check = sub.add_parser(
        "check", help="do two tokenizers line up, and exactly how do they differ?",
        description="Compare the tokenizers of a target and a draft (reads tokenizers only, no "
                    "weights). Verdicts: identical, compatible (differences only in tokens plain "
                    "text does not produce), remappable (same strings under other ids: drafting "
                    "goes through a translation table), text-level (text is split "
                    "differently: drafting goes through text, exactly). Exit 0 for these, 3 for "
                    "a draft that cannot produce text, 2 for bad input.")
    check.add_argument("target", metavar="TARGET",
                       help="a .gguf file, a model name, a tokenizer.json or a folder of HF "
                            "tokenizer files")
    check.add_argument("draft", metavar="DRAFT", help="the same kinds as TARGET")
    check.add_argument("--text", metavar="FILE",
                       help="probe with this text instead of the built-in multilingual and code "
                            "sample")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .. import check
    from ..tokenizers.compare import INCOMPATIBLE

    text = None
    if args.text:
        try:
            with open(args.text, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidOption(f"cannot read --text {args.text}: {e}") from None
    comparison = check(args.target, args.draft, probe_text=text)
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_comparison(comparison, Console())
    return EXIT_INCOMPATIBLE if comparison.verdict == INCOMPATIBLE else 0


def print_comparison(cmp, console) -> None:
    """The report as a person reads it: both sides, the vocabulary diff, the verdict and why."""
    from rich.table import Table

    from ..tokenizers.compare import N_EXAMPLES, show

    d = cmp.to_dict()
    sides = Table("", "target", "draft", title="tokenizers")
    t, r = d["target"], d["draft"]
    for key in ("source", "format", "model", "pre_tokenizer", "vocab_size", "padding_ids",
                "add_bos", "add_eos"):
        sides.add_row(key, str(t[key]), str(r[key]))
    for name in ("bos", "eos", "pad", "unk"):
        a, b = t["special"][name], r["special"][name]
        sides.add_row(name.upper(), f"{a['id']} {a['text']!r}", f"{b['id']} {b['text']!r}")
    sides.add_row("chat markers", " ".join(t["chat_template_markers"]) or "-",
                  " ".join(r["chat_template_markers"]) or "-")
    console.print(sides)
    console.print(f"same text under the same id: {cmp.same_id_same_text:,} of {cmp.union_size:,} "
                  f"ids ({d['same_fraction']:.2%})", soft_wrap=True)
    if cmp.n_differing_ids:
        shown = "; ".join(f"id {i}: {show([a])} vs {show([b])}" for i, a, b in cmp.differing_ids)
        console.print(f"ids whose text differs: {cmp.n_differing_ids:,}, e.g. {shown}",
                      soft_wrap=True, markup=False)
    for label, key in (("tokens only in the target", "only_target"),
                       ("tokens only in the draft", "only_draft")):
        entry = d[key]
        if entry["count"]:
            console.print(f"{label}: {entry['count']:,}, e.g. {show(entry['examples'])}",
                          soft_wrap=True, markup=False)
    if cmp.moved:
        shown = "; ".join(f"{show([t])} {a} -> {b}" for t, a, b in cmp.moved[:N_EXAMPLES])
        console.print(f"tokens under different ids (target -> draft): {len(cmp.moved):,}, "
                      f"e.g. {shown}", soft_wrap=True, markup=False)
    for line in cmp.special_differences:
        console.print(f"also: {line}", soft_wrap=True, markup=False)
    if cmp.probe:
        p = cmp.probe
        console.print(f"probe: {p['lines']} lines of multilingual text and code, "
                      f"{p['identical_fraction']:.1%} of it split into identical ids"
                      + (" (through the translation table)" if cmp.draft_to_target else ""),
                      soft_wrap=True)
        for line in p["differing_lines"]:
            console.print(f"  differs on: {line!r}", soft_wrap=True, markup=False)
    console.print(f"[bold]verdict: {cmp.verdict}[/bold]")
    for reason in cmp.reasons:
        console.print(f"  - {reason}", soft_wrap=True, markup=False)
