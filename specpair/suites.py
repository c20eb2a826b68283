"""Prompt suites for benchmarks: built in (story, code, edit) or a JSONL file of prompts.

Each line: {"prompt": "...", "chat": true}. `chat` (default true) wraps the prompt in the
target's chat template. A multi-turn conversation is {"messages": [{"role", "content"}, ...]}
(always chat). story: zero-shot creative writing (the reference experiment). code: write
a function from a description. edit: a code file to hand back with a small change, so most of the
answer is already in the prompt (where prompt lookup drafting shines).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import SpecpairError

BUILTIN_SUITES = ("story", "code", "edit")


@dataclass(frozen=True)
class Prompt:
    text: str | list[dict]  # a prompt, or a conversation (list of {"role", "content"})
    chat: bool = True


def _parse(lines: list[str], source: str) -> list[Prompt]:
    prompts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "messages" in row:
                messages = [{"role": str(m["role"]), "content": str(m["content"])}
                            for m in row["messages"]]
                if not messages:
                    raise ValueError("no messages")
                prompts.append(Prompt(messages, True))
            else:
                prompts.append(Prompt(str(row["prompt"]), bool(row.get("chat", True))))
        except (ValueError, KeyError, TypeError):
            raise SpecpairError(f'{source}:{n}: each line must be a JSON object with a "prompt" '
                                'string (and optionally "chat": true/false), or "messages": '
                                '[{"role": ..., "content": ...}, ...]') from None
    if not prompts:
        raise SpecpairError(f"{source} has no prompts: give at least one JSONL line")
    return prompts


def load_suite(name: str) -> list[Prompt]:
    if name in BUILTIN_SUITES:
        text = resources.files("specpair").joinpath(f"data/suites/{name}.jsonl").read_text("utf-8")
        return _parse(text.splitlines(), name)
    path = Path(name)
    if not path.is_file():
        raise SpecpairError(f"suite {name!r} not found: use one of {', '.join(BUILTIN_SUITES)} "
                            "or a .jsonl file of prompts")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SpecpairError(f"cannot read suite {name}: {e}") from None
    return _parse(lines, name)
