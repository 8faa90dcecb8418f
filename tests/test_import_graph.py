"""The module-level import graph of ``ser``: no cycles, and the option-coercion leaf imports nothing
heavy. (Imports inside functions are the lazy ones that keep ``ser --help`` free of torch; they are
not edges here.)"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "ser"


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def module_level_imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """``ser`` modules imported by the top-level statements of ``path`` (``if TYPE_CHECKING`` blocks
    and function bodies excluded); ``from pkg import sub`` counts as importing ``pkg.sub``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in found if module in known and module != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_module_level_import_graph_has_no_cycle() -> None:
    known = module_names()
    graph = {name: module_level_imports(name, path, known) for name, path in known.items()}
    assert graph["ser.fusion.config"] >= {"ser.fusion.heads", "ser.options"}  # the old lazy cycle, now edges
    assert "ser.options" in graph["ser.fusion.heads"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_config_presets_and_heads_import_at_module_level_without_torch() -> None:
    code = (
        "import sys, ser.fusion.config, ser.fusion.recipes, ser.fusion.recipe_text, ser.fusion.departures, "
        "ser.fusion.heads, ser.options; "
        "print(sorted(m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
