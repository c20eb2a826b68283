"""The README's promises: it opens with exactly two set-up commands, and its Python examples
run as written (on the real models)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)


def test_the_readme_opens_with_two_setup_commands():
    lang, first = BLOCKS[0]
    lines = [line for line in first.splitlines() if line.strip()]
    assert lang == "bash" and len(lines) == 2
    assert lines[0].endswith("pip install -e '.[models]' && specpair bench")
    assert "pip install torch==2.13.0 -e '.[test]' && python -m pytest" in lines[1]
    assert "CI=true" not in lines[1]  # .ci/run adds it; a fresh machine runs it as written


@pytest.mark.real
@pytest.mark.parametrize("code", [code for lang, code in BLOCKS if lang == "python"],
                         ids=lambda code: code.split("\n")[-2][:40])
def test_the_python_examples_run(code, target_path, draft_path, gemma_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102  the README's own code
    assert out.getvalue().strip()
