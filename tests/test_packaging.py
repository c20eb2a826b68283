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


# -- each extra names what its commands import (issue 43: [distill] lacked scipy and matplotlib,
#    and stage 4 imported scipy after an hour of training) --------------------------------------
# extra: the code that runs only with it (a command's own files)
EXTRA_CODE = {
    "distill": ["distillation", "cli/distill.py"],
    "serve": ["serve", "cli/serve.py"],
    "hf": ["backends/hf.py", "core/torch_ops.py"],
}


def _third_party_imports(paths: list[str]) -> set[str]:
    import ast

    found: set[str] = set()
    for rel in paths:
        root = ROOT / "specpair" / rel
        for path in ([root] if root.is_file() else root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "specpair"}


def _declared(extra: str, config: dict) -> set[str]:
    from specpair.extras import normalized

    project = config["project"]
    names = {normalized(r.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0]
                        .strip()) for r in project["dependencies"]}

    def walk(name: str) -> None:
        for r in project["optional-dependencies"][name]:
            base = r.split(";")[0].strip()
            if base.startswith("specpair["):
                for nested in base[len("specpair["):-1].split(","):
                    walk(nested.strip())
            else:
                names.add(normalized(base.split("[")[0].split("=")[0].split(">")[0]
                                     .split("<")[0].strip()))
    walk(extra)
    return names


@pytest.mark.parametrize("extra", sorted(EXTRA_CODE))
def test_each_extra_names_every_package_its_code_imports(extra):
    from importlib.metadata import packages_distributions

    from specpair.extras import normalized

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = _declared(extra, config)
    dists = packages_distributions()
    missing = []
    for module in sorted(_third_party_imports(EXTRA_CODE[extra])):
        names = {normalized(d) for d in dists.get(module, [module])}
        if not names & declared:
            missing.append(module)
    assert not missing, f"[{extra}] does not name what its code imports: {missing}"


def test_a_command_checks_its_whole_extra_before_it_starts(monkeypatch, capsys):
    """`specpair distill` with scipy missing says so in one line, before any model loads."""
    from importlib import metadata

    from specpair import extras
    from specpair.cli import main

    if not extras.requirements("distill"):
        unavailable("specpair's metadata is not installed (pip install -e .)")
    assert {"peft", "scipy", "matplotlib"} <= {extras.normalized(n) for n in
                                                extras.requirements("distill")}
    def version(name):  # everything is installed but scipy
        if extras.normalized(name) == "scipy":
            raise metadata.PackageNotFoundError(name)
        return "1.0"

    monkeypatch.setattr(extras.metadata, "version", version)
    code = main(["distill", "--target", "/nonexistent.gguf", "--draft", "/nonexistent.gguf",
                 "--prompts", "/nonexistent.jsonl", "--out", "/nonexistent-dir"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "[distill]" in err and "scipy" in err
