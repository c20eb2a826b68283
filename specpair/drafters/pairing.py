"""How a checked pair drafts (the check's verdict decides): the draft's own ids when the
vocabularies are identical or compatible, through the check's id table when they are remappable,
and across vocabularies (crossvocab.py) when only text is shared: token-level intersection for
sampling where enough strings are shared, text-level otherwise."""

from __future__ import annotations

import numpy as np

from ..core.backend import Backend
from ..core.drafter import Drafter
from ..core.sampling import SamplingConfig
from ..tokenizers.compare import REMAPPABLE, TEXT_LEVEL, Comparison
from .crossvocab import TLI_MIN_OVERLAP, TextDrafter, TLIDrafter
from .model import ModelDrafter
from .remapped import RemappedDrafter


def uses_tli(comparison: Comparison, sampling: SamplingConfig) -> bool:
    overlap = (comparison.shared_bytes or 0) / max(1, comparison.target.n_real)
    return comparison.verdict == TEXT_LEVEL and not sampling.greedy and \
        overlap >= TLI_MIN_OVERLAP


def describe(comparison: Comparison, sampling: SamplingConfig) -> str | None:
    """One line for the user when drafting goes across vocabularies (None otherwise)."""
    if comparison.verdict != TEXT_LEVEL:
        return None
    shared = comparison.shared_bytes or 0
    if uses_tli(comparison, sampling):
        return (f"the tokenizers differ; sampling drafts by token-level intersection over "
                f"{shared:,} shared strings ({shared / max(1, comparison.target.n_real):.0%} "
                "of the target's vocabulary)")
    return f"the tokenizers differ; drafting goes through text ({shared:,} strings shared)"


def needs_comparison(verdict: str) -> bool:
    """Whether drafting needs the comparison itself (its id table or shared strings), not
    only its verdict."""
    return verdict in (REMAPPABLE, TEXT_LEVEL)


def drafter_for(draft: Backend, verdict: str, comparison: Comparison | None, *,
                target: Backend, sampling: SamplingConfig, rng: np.random.Generator,
                p_min: float = 0.0) -> Drafter:
    """A drafter for one generation from the loaded `draft` of a checked pair: its verdict,
    and its comparison where the verdict `needs_comparison`."""
    if needs_comparison(verdict) and comparison is None:
        raise ValueError(f"a {verdict} pair drafts through its comparison: pass it")
    if verdict == TEXT_LEVEL and comparison is not None:
        if uses_tli(comparison, sampling):
            return TLIDrafter(draft, target, shared=comparison.shared, sampling=sampling,
                              rng=rng)
        return TextDrafter(draft, target)
    drafter: Drafter = ModelDrafter(draft, sampling=sampling, rng=rng, p_min=p_min)
    if verdict == REMAPPABLE and comparison is not None:
        return RemappedDrafter(drafter, comparison.draft_to_target or {})
    return drafter
