"""specpair's drafters inside llama-cpp-python: `Llama(draft_model=LlamaDraft(...))`.

llama-cpp-python's `Llama` accepts any `LlamaDraftModel` as `draft_model`, and ships only prompt
lookup. `LlamaDraft` is a model draft for it: a GGUF file or a named model, loaded through
specpair's llama.cpp backend, which proposes its greedy continuation of the tokens so far.
With `target` given and a draft whose tokenizer differs (Gemma 3 270M for a Qwen target),
it drafts through text, as `specpair generate` does. One changed line gives llama-cpp-python
code, and its own server, model drafting:

    from llama_cpp import Llama
    from specpair.integrations.llama_cpp import LlamaDraft

    llm = Llama(model_path="big.gguf", draft_model=LlamaDraft("qwen2.5-coder-0.5b"))

Verification stays llama-cpp-python's own: it samples each position from the target and keeps
the proposal while it agrees, which is exact for any proposal (greedy and sampled alike).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import BackendConfig, load_backend
from ..core.drafter import Drafter
from ..core.sampling import SamplingConfig
from ..drafters.crossvocab import TextDrafter
from ..drafters.model import ModelDrafter
from ..errors import missing_extra
from ..tokenizers.compare import REMAPPABLE, TEXT_LEVEL, check_pair

try:
    from llama_cpp.llama_speculative import LlamaDraftModel
except ImportError as e:  # pragma: no cover - llama-cpp-python is a core dependency
    raise missing_extra("models", e.name, "the llama-cpp-python integration") from None

DEFAULT_NUM_PRED_TOKENS = 4


class LlamaDraft(LlamaDraftModel):
    """A specpair model draft as a llama-cpp-python `LlamaDraftModel`.

    `draft`: a GGUF path or a named model. `target`: the target's GGUF path or name; needed
    only for a draft whose tokenizer differs (drafting then goes through text), and used to
    check the pair before any weights load. `num_pred_tokens`: tokens proposed per call.
    """

    def __init__(self, draft: str, target: str | None = None, *,
                 num_pred_tokens: int = DEFAULT_NUM_PRED_TOKENS, n_ctx: int = 4096,
                 threads: int | None = None, gpu_layers: int | None = None) -> None:
        config = BackendConfig(n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers)
        self.num_pred_tokens = num_pred_tokens
        comparison = check_pair(target, draft) if target is not None else None
        self.backend = load_backend(draft, config)
        self._target = None
        self.drafter: Drafter
        if comparison is not None and comparison.verdict == TEXT_LEVEL:
            self._target = load_backend(target, BackendConfig(n_ctx=n_ctx, threads=threads,
                                                              gpu_layers=0))
            self.drafter = TextDrafter(self.backend, self._target)
        elif comparison is not None and comparison.verdict == REMAPPABLE:
            from ..drafters.remapped import RemappedDrafter

            inner = ModelDrafter(self.backend, sampling=SamplingConfig(),
                                 rng=np.random.default_rng(0))
            self.drafter = RemappedDrafter(inner, comparison.draft_to_target or {})
        else:
            self.drafter = ModelDrafter(self.backend, sampling=SamplingConfig(),
                                        rng=np.random.default_rng(0))
        self._last: list[int] = []
        # (context length, proposal) of the current (or last) generation: `acceptance` reads it
        self.history: list[tuple[int, list[int]]] = []

    def __call__(self, input_ids: np.ndarray, /, **kwargs: Any) -> np.ndarray:
        context = input_ids.tolist()
        # llama-cpp-python passes every token so far; a context that does not extend the last
        # one is a new generation
        n = len(self._last)
        if len(context) < n or context[:n] != self._last:
            self.drafter.begin(context)
            self.history.clear()  # one generation's proposals: bounded in a long-lived server
        self._last = context
        draft = self.drafter.propose(context, self.num_pred_tokens)
        self.history.append((len(context), list(draft.tokens)))
        return np.asarray(draft.tokens, dtype=np.intc)

    def acceptance(self, tokens: list[int]) -> tuple[int, int]:
        """(accepted, proposed) over the last generation's proposals, for `tokens`, the full
        sequence llama-cpp-python ended it with: a proposal's tokens count while they match."""
        accepted = proposed = 0
        for start, proposal in self.history:
            proposed += len(proposal)
            for i, t in enumerate(proposal):
                if start + i >= len(tokens) or tokens[start + i] != t:
                    break
                accepted += 1
        return accepted, proposed

    def close(self) -> None:
        self.drafter.close()
        self.backend.close()  # loaded here, so closed here (a drafter closes nothing it uses)
        if self._target is not None:
            self._target.close()
