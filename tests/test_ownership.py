"""Who frees what: a model belongs to whoever loaded it. The pair's Resolver keeps its draft
models for the next call, so a drafter (one generation's) never closes them, and
llama-cpp-python's LlamaDraft, which lives as long as its server, keeps one generation's
proposals, not every one since it started."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.engine  # LlamaDraft imports llama-cpp-python

from .conftest import need  # noqa: E402
from .toy import LETTERS, ToyBackend, walk_table  # noqa: E402


class Tracked(ToyBackend):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_drafter_does_not_close_the_model_the_pair_keeps():
    from specpair.auto.adaptive import AdaptiveDrafter, Candidate
    from specpair.auto.curve import CostCurve
    from specpair.core.sampling import SamplingConfig
    from specpair.drafters import ModelDrafter

    backend = Tracked(walk_table())
    drafter = ModelDrafter(backend, sampling=SamplingConfig(), rng=np.random.default_rng(0))
    drafter.close()
    auto = AdaptiveDrafter([Candidate.with_prior(ModelDrafter(
        backend, sampling=SamplingConfig(), rng=np.random.default_rng(0)), free=False,
        prior=[], max_k=4)], CostCurve(None), max_k=4)
    auto.close()
    assert not backend.closed


def test_llama_draft_keeps_one_generations_proposals(monkeypatch):
    need("llama_cpp", "models")
    from specpair.integrations import llama_cpp as integration

    backend = Tracked(walk_table())
    monkeypatch.setattr(integration, "load_backend", lambda spec, config: backend)
    draft = integration.LlamaDraft("toy.gguf", num_pred_tokens=4)
    prompt = [LETTERS.index(c) for c in "abcdef"]
    for _generation in range(5):  # five requests to a long-running server
        context = list(prompt)
        for _round in range(6):
            proposal = draft(np.asarray(context, dtype=np.intc)).tolist()
            context += proposal or [(context[-1] + 1) % 26]
    assert len(draft.history) == 6  # the last generation's rounds only
    accepted, proposed = draft.acceptance(context)
    assert proposed == accepted > 0
    draft.close()
    assert backend.closed  # LlamaDraft loaded it, so LlamaDraft frees it
