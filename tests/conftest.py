"""Fixtures for tests on the real GGUF models (installed by the [models] extra).

The models are loaded once per session. Without the model packages these tests are skipped
with the reason on a developer's machine; in CI (CI=true) a missing or corrupt model fails them:
CI installs the models, so a skip there would hide a broken install."""

from __future__ import annotations

import os

import pytest

from specpair.errors import SpecpairError

STORY = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def unavailable(reason: str, *, module: bool = False):
    """Skip, except in CI, where a missing real model or engine is a failure."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the real-model tests must run)", pytrace=False)
    pytest.skip(reason, allow_module_level=module)


def need(module: str, extra: str):
    """Import `module` or, for want of it, skip (fail in CI) naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        unavailable(f"{module} is not installed: pip install -e '.[{extra}]'")


def _model_path(name: str) -> str:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        unavailable("llama-cpp-python is not installed")
    from specpair.models import model_path

    try:
        return str(model_path(name))
    except SpecpairError as e:
        unavailable(f"real model {name} not available: {e}")


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


@pytest.fixture(scope="session")
def gemma(gemma_path):
    backend = _load(gemma_path)
    yield backend
    backend.close()


@pytest.fixture(autouse=True)
def _private_cost_cache(tmp_path, monkeypatch):
    """Each test starts with an empty cost cache (as on a new machine) and never writes the
    user's: what --draft auto learns in one test must not steer another."""
    from specpair.auto import costs
    from specpair.models import facts

    monkeypatch.setattr(costs, "cache_file", lambda: tmp_path / "costs.json")
    monkeypatch.setattr(facts, "cache_file", lambda: tmp_path / "files.json")
    monkeypatch.setattr(facts, "_MEMO", {})


def pytest_ignore_collect(collection_path, config):
    """A test module marked engine or real as a whole (`pytestmark = pytest.mark.engine`) may
    import its engine at the top; when `-m` leaves that marker out (CI's toy-suite runs on other
    Pythons), the module is not collected at all: deselected, not skipped, even under CI=true."""
    expr = config.getoption("markexpr") or ""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    text = collection_path.read_text()
    for marker in ("engine", "real"):
        if f"not {marker}" in expr and f"pytestmark = pytest.mark.{marker}" in text:
            return True
    return None
