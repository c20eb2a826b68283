"""What CI relies on: every data file ships in the wheel, and a missing real model fails CI
instead of skipping."""

import fnmatch
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (the test extra pulls it)
    import tomli as tomllib

from .conftest import unavailable

ROOT = Path(__file__).resolve().parent.parent


def test_every_data_file_is_package_data():
    """A non-editable install only has the files pyproject's package-data names: probe.txt
    once was not, and `specpair check` crashed from the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["specpair"]
    package = ROOT / "specpair"
    for folder in ("data", "serve/static"):
        for path in (package / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = str(path.relative_to(package))
                assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} not package data"


def test_a_missing_model_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        unavailable("real model x not available")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        unavailable("real model x not available")
