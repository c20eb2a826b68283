"""How many draft tokens each slot verifies this step, for the whole batch at once (pure).

The goodput rule (SmartSpec, arXiv 2406.14066): choose every slot's K_i to maximise

    goodput = sum_i E_i(K_i) / cost(rows),   rows = fixed rows + sum_i K_i,

where E_i(K) = 1 + sum_{j<K} reach_ij is slot i's expected tokens from a round of K drafts
(reach_ij: the chance that draft token j is accepted, all before it accepted too) and cost the
machine's measured time for a batch of that many rows (its verify curve as a function of the
batch's total rows). A draft token is worth its row while its reach beats the goodput times
its marginal cost: on a 2-core CPU, where a batch of 4 rows already costs 1.7 single steps,
only likely tokens get rows once 4 slots generate; where the curve is flat (a GPU) every
confident slot drafts long.

Each slot's reach is non-increasing, so taking tokens in order of reach (ties: earlier
positions first) only ever extends a slot's draft; the best prefix of that order is the
choice. It is O(T log T) for T offered tokens. Plain decoding for every slot is kept unless
drafting is predicted to beat it by `margin` (predictions err; losing to plain is the failure
users notice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..auto.costmodel import MIN_PREDICTED_SPEEDUP


def choose_lengths(reaches: Sequence[Sequence[float]], *, fixed_rows: int,
                   fixed_tokens: float, cost: Callable[[int], float],
                   max_rows: int | None = None,
                   margin: float = MIN_PREDICTED_SPEEDUP) -> list[int]:
    """K for each offer: `reaches[i]` is offer i's reach per draft token; `fixed_rows` are
    the step's rows whatever is drafted (one per generating slot, the drafts nobody may cut,
    prompt chunks), `fixed_tokens` what they yield (one per generating slot, plus the expected
    tokens of the uncut drafts); `cost(rows)` the seconds of a batch of that many rows;
    `max_rows` a cap on the step's rows (the token budget)."""
    order = sorted(((-p, j, i) for i, reach in enumerate(reaches) for j, p in enumerate(reach)
                    if p > 0))
    rows, tokens = fixed_rows, fixed_tokens
    plain = best = tokens / cost(rows) if rows else 0.0
    take = 0
    for n, (neg_p, _, _) in enumerate(order, 1):
        rows += 1
        if max_rows is not None and rows > max_rows:
            break
        tokens -= neg_p
        goodput = tokens / cost(rows)
        if goodput > best:
            best, take = goodput, n
    lengths = [0] * len(reaches)
    if best < margin * plain:
        return lengths
    for _, _, i in order[:take]:
        lengths[i] += 1
    return lengths


__all__ = ["choose_lengths"]
