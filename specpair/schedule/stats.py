"""What a scheduler's steps did, as data: how many rounds ran, what the drafters offered and
what the batch kept, and the batch cost the goodput rule expected against what it measured
(`serve`'s /metrics exports it; `bench --concurrency` reports it per load point)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class BatchStats:
    steps: int = 0  # evaluations that ran at least one verification round
    slot_rounds: int = 0  # verification rounds, over all slots
    rows: int = 0  # rows evaluated (pending tokens, drafts, prompt chunks)
    offered: int = 0  # draft tokens the slots' drafters offered
    drafted: int = 0  # draft tokens evaluated (offers as cut, and drafts nobody may cut)
    predicted_seconds: float = 0.0  # the batch-cost curve's estimate for each step's rows
    seconds: float = 0.0  # what those steps took

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["BatchStats"]
