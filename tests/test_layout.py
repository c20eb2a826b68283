"""The package's layout is its architecture: layers import only downward, and no module imports
itself in a cycle (a function-level import used to dodge a cycle counts as an import)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "specpair"

# Lower layers first. A module may import its own layer and the ones before it.
LAYERS = [
    {"errors", "version", "extras"},
    {"core"},
    {"models"},
    {"backends"},
    {"tokenizers"},
    {"drafters"},
    {"auto"},
    {"schedule"},
    {"call", "generation", "resolve", "suffix_trees", "exclusive", "pair", "__init__",
     "distillation"},
    {"measure", "deploy", "serve", "integrations"},
    {"cli", "__main__"},
]


def _unit(module: str) -> str:
    """The layer unit of a dotted module path inside specpair: its top-level folder or file."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(unit: str) -> int:
    for i, units in enumerate(LAYERS):
        if unit in units:
            return i
    raise AssertionError(f"specpair/{unit} is in no layer: add it to LAYERS in this test")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every specpair module `name` imports, at any level of the file."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("specpair"):
                found.add(target)
                for alias in node.names:  # "from . import x" may name a module
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("specpair")}
    return found


def test_layers_import_only_downward():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        mine = _layer(_unit(name))
        for target in _imports(name, path):
            if target not in modules:
                continue  # an attribute imported from a module, not a module
            if _layer(_unit(target)) > mine:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {t for t in _imports(name, path) if t in modules and t != name}
             for name, path in modules.items()}
    # a package's __init__ re-exporting its modules is not a cycle with them
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_files_stay_small():
    big = [f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 420]
    assert not big, "files over ~400 lines (one concept each):\n" + "\n".join(big)
