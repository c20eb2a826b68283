"""One generation as the API returns it: `stream` yields `Piece`s (text by origin: what the
draft proposed and the target accepted, then the target's own token), `Generation` is the whole
result. Built on the core's decode loop; statistics are its `DecodeStats`.

`stream_pieces` is the one text layer: every caller that decodes (the API, the server, bench,
advise, steer) goes through it, so stop strings and the folding of rounds into statistics
exist once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .core.backend import Backend
from .core.decode import DecodeConfig
from .core.drafter import Drafter
from .core.stats import DecodeStats, Step
from .core.text import TextStream
from .schedule import decode_steps


@dataclass(frozen=True)
class Piece:
    """Text as it is produced: one run of tokens of one origin. `from_draft`: proposed by the
    draft and accepted by the target; else the target's own token (a correction, a bonus token,
    or a plain step). The last piece of each verification round carries that round (`step`:
    what it drafted, accepted and cost; measurements read it); the last piece of a generation
    has `finish_reason` and `stats` set."""

    text: str
    tokens: tuple[int, ...]
    from_draft: bool
    finish_reason: str | None = None
    stats: DecodeStats | None = None
    step: Step | None = None


@dataclass
class Generation:
    text: str
    tokens: list[int]
    stats: DecodeStats
    finish_reason: str | None
    exact: bool  # False only under an opt-in lossy rule: then `acceptance` says which
    acceptance: dict = field(default_factory=dict)
    drafter: str = "none"
    auto: dict | None = None  # what auto decided and learned (notes, rounds, acceptance)
    translate_seconds: float = 0.0  # a text-level draft's time converting between vocabularies
    notes: list[str] = field(default_factory=list)
    devices: dict = field(default_factory=dict)  # where the target and each draft ran

    def to_dict(self) -> dict:
        out = {"text": self.text, "tokens": self.tokens, "stats": self.stats.to_dict(),
               "finish_reason": self.finish_reason, "exact": self.exact,
               "drafter": self.drafter, "devices": self.devices}
        if not self.exact:
            out["acceptance"] = self.acceptance
        if self.translate_seconds:
            out["translate_seconds"] = self.translate_seconds
        if self.auto is not None:
            out["auto"] = self.auto
        return out


class PieceMaker:
    """The text layer of one generation, one round at a time: `pieces(step)` turns a round
    into its Pieces (stop strings honoured: text that may begin one is held back, tokens after
    one are neither output nor counted) and folds the round into `stats`. `done` once the
    generation finished (its last piece has `finish_reason` and `stats`)."""

    def __init__(self, target: Backend, prompt: Sequence[int], *, config: DecodeConfig,
                 stats: DecodeStats) -> None:
        stats.prompt_tokens = len(prompt)
        self.stats = stats
        self.text = TextStream(target, stop=config.stop)
        self.done = False

    def pieces(self, step: Step) -> list[Piece]:
        text = self.text
        runs = [(True, step.tokens[: step.n_accepted]), (False, step.tokens[step.n_accepted:])]
        pieces: list[Piece] = []
        kept = 0
        for from_draft, tokens in runs:
            if not tokens or text.stopped:
                continue
            chunk = text.add(tokens)
            n = text.kept_tokens if text.stopped else len(tokens)
            kept += n
            pieces.append(Piece(chunk, tuple(tokens[:n]), from_draft))
        finish = step.finish
        if text.stopped:
            step, finish = replace(step, tokens=step.tokens[:kept], finish="stop"), "stop"
        self.stats.add(step)
        last = pieces.pop() if pieces else Piece("", (), False)
        if finish:
            last = replace(last, text=last.text + text.flush(), finish_reason=finish,
                           stats=self.stats)
            self.done = True
        pieces.append(replace(last, step=step))
        return pieces


def stream_pieces(target: Backend, drafter: Drafter | None, prompt: Sequence[int], *,
                  config: DecodeConfig, rng: np.random.Generator,
                  stats: DecodeStats) -> Iterator[Piece]:
    """Pieces of one generation decoded alone (`decode_steps`), through its `PieceMaker`."""
    maker = PieceMaker(target, prompt, config=config, stats=stats)
    steps = decode_steps(target, drafter, prompt, config=config, rng=rng)
    try:
        for step in steps:
            yield from maker.pieces(step)
            if maker.done:
                break
    finally:
        steps.close()
