"""The one definition of the token strings two vocabularies share: ordinary tokens (what plain
text is split into) that stand for the same bytes, whatever each tokenizer's way of spelling
them. `check` counts them; token-level intersection (drafters/crossvocab.py) drafts over them."""

from __future__ import annotations

import numpy as np

from .info import TokenizerInfo


def shared_strings(target: TokenizerInfo, draft: TokenizerInfo) -> tuple[np.ndarray, np.ndarray]:
    """(draft ids, target ids), aligned: each pair stands for the same bytes (the first id of
    each string on either side)."""
    t = target.byte_strings
    pairs = [(d, t[b]) for b, d in draft.byte_strings.items() if b in t]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    d_ids, t_ids = zip(*sorted(pairs))
    return np.asarray(d_ids, dtype=np.int64), np.asarray(t_ids, dtype=np.int64)
