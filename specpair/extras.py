"""The optional extras, checked whole before a command that needs one starts.

A command that imports a package of its extra only at the end of its work (distillation's
evaluation imports scipy after an hour of training) fails late when that package is missing.
So a command checks at its start that every distribution its extra names is installed, as
specpair's own metadata (pyproject's optional-dependencies) lists them; a nested extra
(`specpair[hf]` inside `[distill]`) is followed. The test suite checks the other half: every
package a command's code imports is named by its extra.
"""

from __future__ import annotations

import re
from importlib import metadata

from .errors import missing_extra

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def normalized(name: str) -> str:
    """A distribution's name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(extra: str, *, package: str = "specpair") -> list[str]:
    """The distributions `extra` names (its nested extras followed), from installed metadata;
    [] where specpair runs from a source tree without metadata (nothing to check against)."""
    try:
        lines = metadata.requires(package) or []
    except metadata.PackageNotFoundError:
        return []
    out: list[str] = []
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for line in lines:
            requirement, _, marker = line.partition(";")
            found = _EXTRA.search(marker)
            if found is None or found.group(1) != name:
                continue
            if "python_version" in marker and not _python_marker_holds(marker):
                continue
            m = _NAME.match(requirement)
            if m is None:
                continue
            if normalized(m.group(1)) == normalized(package):
                for nested in (m.group(2) or "").split(","):
                    if nested.strip():
                        walk(nested.strip())
            elif m.group(1) not in out:
                out.append(m.group(1))

    walk(extra)
    return out


def _python_marker_holds(marker: str) -> bool:
    """`python_version < '3.11'`-style markers, the only other kind pyproject uses."""
    import sys

    m = re.search(r"""python_version\s*(<|<=|>|>=|==)\s*["'](\d+)\.(\d+)["']""", marker)
    if m is None:
        return True
    have, want = sys.version_info[:2], (int(m.group(2)), int(m.group(3)))
    return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want,
            "==": have == want}[m.group(1)]


def require_extra(extra: str, what: str) -> None:
    """A one-line error naming the extra, and the first of its distributions that is missing."""
    for name in requirements(extra):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            raise missing_extra(extra, name, what) from None


__all__ = ["normalized", "require_extra", "requirements"]
