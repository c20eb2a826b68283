"""Fixtures for tests on the real GGUF models (installed by the [models] extra).

The models are loaded once per session. Without the model packages these tests are skipped
with the reason; CI installs them, so they run there."""

from __future__ import annotations

import pytest

from specpair.errors import SpecpairError

STORY = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def _model_path(name: str) -> str:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from specpair.models import model_path

    try:
        return str(model_path(name))
    except SpecpairError as e:
        pytest.skip(f"real model {name} not available: {e}")


@pytest.fixture(scope="session")
def target_path() -> str:
    return _model_path("qwen2.5-coder-1.5b")


@pytest.fixture(scope="session")
def draft_path() -> str:
    return _model_path("qwen2.5-coder-0.5b")


@pytest.fixture(scope="session")
def gemma_path() -> str:
    return _model_path("gemma-3-270m")


def _load(path: str):
    from specpair.backends import BackendConfig, load_backend

    return load_backend(path, BackendConfig(n_ctx=1024))


@pytest.fixture(scope="session")
def target(target_path):
    backend = _load(target_path)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def draft(draft_path):
    backend = _load(draft_path)
    yield backend
    backend.close()
