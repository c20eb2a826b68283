"""A drafter that reads its own prompt (a system message of its own) in place of the target's."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.drafter import Draft, Drafter, DrafterWrapper


class SystemPromptDrafter(DrafterWrapper):
    """The draft sees its own prompt (the conversation with a system message of its own,
    "Answer like a pirate.") in place of the target's: it leans the way a fine-tuned draft
    would, while the target sees the user's conversation unchanged. Exact verification keeps
    the target's output whatever the draft leans to; lossy rules let it steer (`specpair steer`
    measures how much). Every hook reaches the inner drafter (DrafterWrapper)."""

    def __init__(self, inner: Drafter, *, target_prompt_len: int,
                 draft_prompt: Sequence[int]) -> None:
        super().__init__(inner, name=f"{inner.name} (own system prompt)")
        self._n = target_prompt_len
        self._prompt = list(draft_prompt)
        self._context = list(draft_prompt)

    def begin(self, prompt: Sequence[int]) -> None:
        self._context = list(self._prompt)
        self.inner.begin(self._prompt)

    def propose(self, context: Sequence[int], k: int) -> Draft:
        return self.inner.propose(self._own(context), k)

    def offer(self, context: Sequence[int], k: int) -> Draft:
        return self.inner.offer(self._own(context), k)

    def _own(self, context: Sequence[int]) -> list[int]:
        # the draft's context: its own prompt, then what was generated (extended as it grows)
        have = len(self._context) - len(self._prompt)
        if len(context) - self._n < have:  # not an extension (no begin() was called)
            self._context = self._prompt + list(context[self._n:])
        else:
            self._context.extend(context[self._n + have:])
        return self._context
