"""Model specs to loaded, checked models, each once: what a `Pair` is made of.

`Resolver` knows the target's spec and engine options and, for every draft spec asked of it,
the pair's comparison (checked from tokenizer files before any weights load), the draft's
loaded backend (loaded once, on first use), where its measured cost is stored, and what auto
may estimate before measuring it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import numpy as np

from .auto.costs import cost_key
from .auto.planner import ModelOption
from .backends import Backend, BackendConfig, load_backend
from .backends.device import cpu_device
from .core.drafter import Drafter
from .core.sampling import SamplingConfig
from .drafters.crossvocab import EXTRA_DRAFT_TOKENS
from .drafters.pairing import describe, drafter_for, needs_comparison
from .errors import InvalidOption, SpecpairError
from .models import MODELS, auto_drafts, cached_path, resolve_model
from .models.adapter import check_adapter
from .models.facts import identity, remembered
from .models.gguf import weight_bytes_per_token
from .tokenizers.compare import (
    COMPATIBLE,
    IDENTICAL,
    REMAPPABLE,
    TEXT_LEVEL,
    Comparison,
    check_pair,
)

VERDICTS = (IDENTICAL, COMPATIBLE, REMAPPABLE, TEXT_LEVEL)  # those a pair can draft with


@dataclass(frozen=True)
class DraftSource:
    """Where a draft model is (or will be, for a named model not yet assembled)."""

    spec: str
    engine: str
    path: str
    size: int


class Resolver:
    def __init__(self, target: str | Backend, *, target_config: BackendConfig,
                 draft_config: BackendConfig) -> None:
        """`target`: a model spec, or a Backend already loaded (a custom engine, a test's
        toy model): then it is used as it is."""
        self.target_config, self.draft_config = target_config, draft_config
        self._target: Backend | None = None
        if isinstance(target, str):
            self.target_spec = target
            self.target_engine, self.target_path = resolve_model(target)
        else:
            self._target = target
            self.target_spec = self.target_path = target.path
            self.target_engine = type(target).__name__
        self._comparisons: dict[str, Comparison] = {}
        self._drafts: dict[tuple[str, str | None], Backend] = {}  # by (spec, LoRA)
        self.load_seconds: dict[str, float] = {}  # each draft's load time (paid once here)
        self.notes: list[str] = []  # one line each, for the user

    @property
    def target(self) -> Backend:
        if self._target is None:
            t0 = time.perf_counter()
            self._target = load_backend(self.target_spec, self.target_config)
            self.load_seconds[self.target_spec] = time.perf_counter() - t0
        return self._target

    def loaded(self, spec: str, lora: str | None = None) -> bool:
        return (spec, lora) in self._drafts

    # -- drafts -----------------------------------------------------------------------------
    def comparison(self, spec: str) -> Comparison:
        """The pair's tokenizers compared (structure only; no weights): a draft that cannot
        produce text is refused here (IncompatiblePair)."""
        if spec not in self._comparisons:
            self._comparisons[spec] = check_pair(self.target_spec, spec)
        return self._comparisons[spec]

    def verdict(self, spec: str) -> str:
        """The pair's verdict, as `comparison` would give it, without comparing when an
        earlier process compared these two files as they are now (models/facts.py): a
        comparison decodes both vocabularies, seconds for two 152k-token GGUFs."""
        if spec in self._comparisons:
            return self._comparisons[spec].verdict
        target_file, draft_file = self.target_path, self.source(spec).path
        try:
            if not (os.path.isfile(target_file) and os.path.isfile(draft_file)):
                raise FileNotFoundError
            question = f"verdict with {identity(target_file)}"
        except OSError:  # a folder, or a named model not assembled yet: compared here
            return self.comparison(spec).verdict
        return remembered(draft_file, question, lambda: self.comparison(spec).verdict,
                          valid=lambda v: v in VERDICTS)

    def source(self, spec: str) -> DraftSource:
        if spec in MODELS:  # do not assemble a named model auto may never load
            return DraftSource(spec, "gguf", str(cached_path(MODELS[spec])), MODELS[spec].size)
        engine, path = resolve_model(spec)
        return DraftSource(spec, engine, path,
                           os.path.getsize(path) if os.path.isfile(path) else 0)

    def check_lora(self, spec: str, lora: str) -> None:
        """Refuse a LoRA that was not made for the draft `spec` (before any weights load)."""
        s = self.source(spec)
        if s.engine != "gguf":
            raise InvalidOption("{draft_lora} is a llama.cpp adapter (GGUF): with the "
                                "transformers engine, give the merged folder that `specpair "
                                "distill` wrote (DIR/merged) as the draft instead")
        check_adapter(lora, str(cached_path(MODELS[spec])) if spec in MODELS
                      and not os.path.isfile(s.path) else s.path)

    def draft_backend(self, spec: str, lora: str | None = None) -> Backend:
        key = (spec, lora)
        if key not in self._drafts:
            verdict = self.verdict(spec)
            t0 = time.perf_counter()
            self._drafts[key] = load_backend(spec, replace(self.draft_config, lora=lora))
            self.load_seconds[spec if lora is None else f"{spec} + {lora}"] = \
                time.perf_counter() - t0
            note = describe(self.comparison(spec), SamplingConfig()) \
                if verdict == TEXT_LEVEL else None
            if note:
                self.notes.append(note)
        return self._drafts[key]

    def drafter(self, spec: str, *, sampling: SamplingConfig, rng: np.random.Generator,
                p_min: float, lora: str | None = None) -> Drafter:
        """A drafter of model `spec` (with the LoRA `lora`) for one generation: how it drafts
        is the comparison's verdict (drafters/pairing.py)."""
        backend = self.draft_backend(spec, lora)
        verdict = self.verdict(spec)
        comparison = self.comparison(spec) if needs_comparison(verdict) else None
        return drafter_for(backend, verdict, comparison, target=self.target,
                           sampling=sampling, rng=rng, p_min=p_min)

    def auto_drafts(self) -> list[str]:
        """The named models auto weighs as drafts: every one smaller than the target."""
        return auto_drafts(self.target_spec)

    def draft_device(self, source: DraftSource) -> str:
        """Where a draft will run, before it is loaded (for its cost key): with the target's
        engine and placement it lands on the target's device."""
        t = self.target
        same = (source.engine == self.target_engine
                and self.draft_config.gpu_layers == self.target_config.gpu_layers
                and self.draft_config.device == self.target_config.device)
        return t.device if same else cpu_device()

    def draft_cost_key(self, spec: str, lora: str | None = None) -> str:
        s = self.source(spec)
        return cost_key("draft", s.engine, s.path, replace(self.draft_config, lora=lora),
                        self.draft_device(s))

    def relative_cost(self, source: DraftSource) -> float:
        """A draft token's cost over a target token's, estimated from the weights each reads
        (GGUF headers, read once per file: models/facts.py; file sizes where a header cannot be
        read)."""
        try:
            return weight_bytes_per_token(source.path) / weight_bytes_per_token(self.target_path)
        except (SpecpairError, OSError):  # a named model not assembled yet: by file sizes
            try:
                return source.size / max(1, os.path.getsize(self.target_path))
            except OSError:
                return 1.0

    def option(self, spec: str, *, sampling: SamplingConfig, rng: np.random.Generator,
               p_min: float) -> ModelOption:
        """A model auto may load: what it would cost, and how to load it."""
        s = self.source(spec)

        def extra_tokens() -> int:
            try:
                return EXTRA_DRAFT_TOKENS if self.verdict(spec) == TEXT_LEVEL else 0
            except SpecpairError:
                return 0  # the load will say why it cannot draft

        return ModelOption(
            name=os.path.basename(s.path), cost_key=self.draft_cost_key(spec),
            relative_cost=lambda: self.relative_cost(s), extra_tokens=extra_tokens,
            load=lambda: self.drafter(spec, sampling=sampling, rng=rng, p_min=p_min),
            loaded=lambda: (spec, None) in self._drafts, size=s.size,
            load_key=cost_key("load", s.engine, s.path, self.draft_config,
                              self.draft_device(s)))

    def devices(self) -> dict:
        """Where each loaded model runs (the GPU's name, or the CPU)."""
        out: dict = {}
        if self._target is not None:
            out["target"] = f"{self._target.name} on {self._target.device}"
        for backend in self._drafts.values():
            out.setdefault("drafts", []).append(f"{backend.name} on {backend.device}")
        return out

    def forget_contexts(self) -> None:
        """Empty every loaded model's cache (the next generation shares no prefix with the
        last): another trust domain's call must not learn what the last one held."""
        for backend in [self._target, *self._drafts.values()]:
            if backend is not None:
                backend.rewind(0)

    def close(self) -> None:
        for backend in self._drafts.values():
            backend.close()
        self._drafts.clear()
        if self._target is not None:
            self._target.close()
            self._target = None
