"""The prompts a draft is distilled on: a JSONL file, one prompt per line, and its split into
training and held-out prompts.

A line is a JSON string, an object with "prompt" (text) or "messages" (a chat), and optionally
"kind" (a label the study reports by: "code", "prose", ...) and "held_out": true (never trained
on: prompts of another kind, to see whether a gain transfers). Prompts are rendered with the
target's chat template. The split is decided per prompt by a hash of its content, so adding
prompts to the file never moves an old one from training to held-out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidOption

DEFAULT_HELD_OUT = 0.2


@dataclass(frozen=True)
class Prompt:
    id: str  # a digest of the content: stable across edits of the file
    messages: tuple[tuple[str, str], ...]  # (role, content)
    kind: str
    held_out: bool = False  # the file says: evaluate on it, never train on it

    def as_messages(self) -> list[dict]:
        return [{"role": r, "content": c} for r, c in self.messages]


def _bad(path: str, line: int, why: str) -> InvalidOption:
    return InvalidOption(f"{path} line {line}: {why}: each line must be a JSON string or an "
                         'object with "prompt" (text) or "messages" (a list of {"role", '
                         '"content"})')


def _prompt(path: str, n: int, value) -> Prompt:
    kind = "prompt"
    if isinstance(value, str):
        messages = [("user", value)]
    elif isinstance(value, dict) and isinstance(value.get("prompt"), str):
        messages = [("user", value["prompt"])]
        kind = str(value.get("kind", kind))
    elif isinstance(value, dict) and isinstance(value.get("messages"), list):
        try:
            messages = [(str(m["role"]), str(m["content"])) for m in value["messages"]]
        except (TypeError, KeyError):
            raise _bad(path, n, "a message without role or content") from None
        kind = str(value.get("kind", kind))
    else:
        raise _bad(path, n, "neither a prompt nor messages")
    if not messages or not any(c.strip() for _, c in messages):
        raise _bad(path, n, "an empty prompt")
    digest = hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:16]
    held = isinstance(value, dict) and value.get("held_out") is True
    return Prompt(digest, tuple(messages), kind, held)


def read_prompts(path: str) -> list[Prompt]:
    """Every prompt of a JSONL file, duplicates once; a bad line is a one-line error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidOption(f"cannot read prompts from {path}: {e.__class__.__name__}: "
                            "give a JSONL file of prompts or messages") from None
    seen: dict[str, Prompt] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise _bad(path, n, "not JSON") from None
        p = _prompt(path, n, value)
        seen.setdefault(p.id, p)
    if not seen:
        raise InvalidOption(f"{path} holds no prompts: give a JSONL file, one prompt per line")
    return list(seen.values())


def is_held_out(prompt: Prompt, fraction: float) -> bool:
    """Whether a prompt is held out: as the file says, else by its digest (a stable split)."""
    return prompt.held_out or int(prompt.id[:8], 16) / 0xFFFFFFFF < fraction


def split(prompts: list[Prompt], fraction: float) -> tuple[list[Prompt], list[Prompt]]:
    """(training, held-out); at least one of each when there are two prompts or more."""
    if not 0 < fraction < 1:
        raise InvalidOption(f"{{held_out}} must be between 0 and 1, got {fraction}")
    held = [p for p in prompts if is_held_out(p, fraction)]
    train = [p for p in prompts if not is_held_out(p, fraction)]
    if len(prompts) >= 2 and (not held or not train):  # tiny files: move the last one
        if not held:
            held, train = train[-1:], train[:-1]
        else:
            train, held = held[-1:], held[:-1]
    return train, held


__all__ = ["DEFAULT_HELD_OUT", "Prompt", "is_held_out", "read_prompts", "split"]
