"""A drafter whose tokenizer has the target's token strings under other ids (`check` says
"remappable"): contexts go in translated to draft ids, proposals come out in target ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.drafter import Draft, Drafter, DrafterWrapper, restricted
from ..core.ops import to_numpy


class RemappedDrafter(DrafterWrapper):
    """Target tokens the draft lacks (special tokens only, for a remappable pair) reach the
    draft as id 0: its guesses after them get worse, never the output. The context is
    translated as it grows (each token once per generation)."""

    def __init__(self, inner: Drafter, draft_to_target: dict[int, int]) -> None:
        super().__init__(inner)
        self._to_target = draft_to_target
        self._from_target = {t: d for d, t in draft_to_target.items()}
        self._width = max(draft_to_target.values(), default=-1) + 1
        self._translated: list[int] = []

    def begin(self, prompt: Sequence[int]) -> None:
        self._translated = []
        self.inner.begin(prompt)

    def propose(self, context: Sequence[int], k: int) -> Draft:
        done = self._translated
        del done[len(context):]  # (a shorter context: a caller that did not call begin)
        done.extend(self._from_target.get(t, 0) for t in context[len(done):])
        draft = self.inner.propose(done, k)
        tokens: list[int] = []
        for d in draft.tokens:  # stop at a token the target has no id for
            if d not in self._to_target:
                break
            tokens.append(self._to_target[d])
        if draft.q is None:
            return Draft(tokens)
        # q in target ids: the mass of draft ids the target lacks is dropped and the rest
        # renormalised (see `restricted`), else sampled verification would not be exact
        q_draft = to_numpy(draft.q)
        q = np.zeros((len(tokens), self._width), dtype=q_draft.dtype)
        ids = np.fromiter(self._to_target.keys(), dtype=np.int64)
        ids = ids[ids < q_draft.shape[1]]
        targets = np.array([self._to_target[int(d)] for d in ids], dtype=np.int64)
        q[:, targets] = q_draft[: len(tokens), ids]
        return restricted(Draft(tokens), q)
