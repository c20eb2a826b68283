"""Prompt suites for benchmarks: built in (story, code, edit), Spec-Bench, or a JSONL file.

Each line: {"prompt": "...", "chat": true}. `chat` (default true) wraps the prompt in the
target's chat template. A multi-turn conversation is {"messages": [{"role", "content"}, ...]}
(always chat). story: zero-shot creative writing (the reference experiment). code: write
a function from a description. edit: a code file to hand back with a small change, so most of the
answer is already in the prompt (where prompt lookup drafting shines).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import InvalidOption

BUILTIN_SUITES = ("story", "code", "edit")
SPEC_BENCH = "spec-bench"
SPEC_BENCH_ENV = "SPECPAIR_SPEC_BENCH"
SPEC_BENCH_URL = ("https://raw.githubusercontent.com/hemingkx/Spec-Bench/main/data/spec_bench/"
                  "question.jsonl")
DEFAULT_PER_CATEGORY = 2


@dataclass(frozen=True)
class Prompt:
    text: str | list[dict]  # a prompt, or a conversation (list of {"role", "content"})
    chat: bool = True
    category: str = ""  # Spec-Bench's category (reported per category)


def _parse(lines: list[str], source: str) -> list[Prompt]:
    prompts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "turns" in row:  # Spec-Bench / MT-Bench: the first turn, as a chat request
                prompts.append(Prompt(str(row["turns"][0]), True, str(row.get("category", ""))))
            elif "messages" in row:
                messages = [{"role": str(m["role"]), "content": str(m["content"])}
                            for m in row["messages"]]
                if not messages:
                    raise ValueError("no messages")
                prompts.append(Prompt(messages, True, str(row.get("category", ""))))
            else:
                prompts.append(Prompt(str(row["prompt"]), bool(row.get("chat", True)),
                                      str(row.get("category", ""))))
        except (ValueError, KeyError, TypeError):
            raise InvalidOption(f'{source}:{n}: each line must be a JSON object with a "prompt" '
                                'string (and optionally "chat": true/false), or "messages": '
                                '[{"role": ..., "content": ...}, ...]') from None
    if not prompts:
        raise InvalidOption(f"{source} has no prompts: give at least one JSONL line")
    return prompts


def load_suite(name: str, *, per_category: int | None = None) -> list[Prompt]:
    """A suite by name (`spec-bench` or `spec-bench:CATEGORY` too) or .jsonl path. Suites with
    categories take the first `per_category` prompts of each (default: all), interleaved so
    that consecutive runs visit every category."""
    base, _, category = name.partition(":")
    if base == SPEC_BENCH:
        prompts = _parse(_spec_bench_lines(), "spec-bench")
    elif name in BUILTIN_SUITES:
        text = resources.files("specpair").joinpath(f"data/suites/{name}.jsonl").read_text("utf-8")
        prompts = _parse(text.splitlines(), name)
    else:
        category = ""
        path = Path(name)
        if not path.is_file():
            raise InvalidOption(f"suite {name!r} not found: use one of "
                                f"{', '.join(BUILTIN_SUITES)}, {SPEC_BENCH}[:CATEGORY] or a "
                                ".jsonl file of prompts")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidOption(f"cannot read suite {name}: {e}") from None
        prompts = _parse(lines, name)
    if category:
        prompts = [p for p in prompts if p.category == category]
        if not prompts:
            raise InvalidOption(f"suite {name}: no prompts in category {category!r}")
    return by_category(prompts, per_category)


def by_category(prompts: list[Prompt], per_category: int | None) -> list[Prompt]:
    """The first `per_category` prompts of each category, interleaved (category order kept)."""
    if per_category is None or not any(p.category for p in prompts):
        return prompts
    if per_category < 1:
        raise InvalidOption(f"{{per_category}} must be >= 1, got {per_category}")
    groups: dict[str, list[Prompt]] = {}
    for p in prompts:
        groups.setdefault(p.category, []).append(p)
    picked = [g[:per_category] for g in groups.values()]
    return [g[i] for i in range(per_category) for g in picked if i < len(g)]


def _spec_bench_lines() -> list[str]:
    """Spec-Bench's 480 questions (hemingkx/Spec-Bench, Apache-2.0): from $SPECPAIR_SPEC_BENCH,
    or the copy installed as package data."""
    found = os.environ.get(SPEC_BENCH_ENV)
    candidates = [Path(found)] if found else []
    candidates.append(Path(str(resources.files("specpair").joinpath(
        "data/spec_bench/question.jsonl"))))
    for path in candidates:
        if path.is_file():
            return path.read_text(encoding="utf-8").splitlines()
    raise InvalidOption(f"Spec-Bench's questions are not installed here: download {SPEC_BENCH_URL} "
                        f"(Apache-2.0) and set {SPEC_BENCH_ENV} to its path")
