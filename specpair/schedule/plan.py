"""Which prompt rows one step evaluates, as a pure function a test can call without a model.

Every generating slot runs one verification round each step (1 + K rows: no slot waits for
another's long generation), and prompts fill what is left of the step's token budget, oldest
admission first, in chunks (vLLM's chunked prefill): a long prompt is spread over several steps
instead of stalling the slots that are generating. A floor of MIN_PREFILL_ROWS per step keeps a
new request's prompt moving even when the rounds fill the budget.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_TOKEN_BUDGET = 512  # rows per step: llama.cpp's batch (N_BATCH) in one pass
MIN_PREFILL_ROWS = 64


def prefill_plan(unfilled: Sequence[tuple[int, int]], *, round_rows: int,
                 budget: int = DEFAULT_TOKEN_BUDGET) -> list[tuple[int, int]]:
    """(slot, rows) of prompt to evaluate this step: `unfilled` is (slot, prompt rows left)
    in admission order, `round_rows` the rows the step's rounds already take."""
    left = max(budget - round_rows, MIN_PREFILL_ROWS)
    out = []
    for slot, rows in unfilled:
        if left <= 0:
            break
        take = min(rows, left)
        if take > 0:
            out.append((slot, take))
            left -= take
    return out


__all__ = ["DEFAULT_TOKEN_BUDGET", "MIN_PREFILL_ROWS", "prefill_plan"]
