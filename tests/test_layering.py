"""The package's layering: the cost model and the specs stand without the store, and no
two parts of kvtier import each other (the import graph of its top-level modules and
subpackages is acyclic)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import kvtier

PACKAGE = Path(kvtier.__file__).resolve().parent

#: Edges of the part graph that may close a cycle, with the reason. Empty: none do.
ALLOWED_EDGES: dict[tuple[str, str], str] = {}

_LAZY_TARGET = re.compile(r"kvtier(\.\w+)+")


def _part_of(module: str) -> str | None:
    """The top-level part of kvtier a dotted module name belongs to (``"kvtier"`` for the
    package itself), or None outside kvtier."""
    parts = module.split(".")
    if parts[0] != "kvtier":
        return None
    return parts[1] if len(parts) > 1 else "kvtier"


def _imports(path: Path) -> set[str]:
    """Every kvtier module ``path`` imports, at module level or inside a function; for a
    package ``__init__`` also the modules named in its lazy-export tables (string
    constants that are whole dotted kvtier module names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "kvtier":
                out.update(f"kvtier.{alias.name}" for alias in node.names)
            else:
                out.add(node.module)
        elif (path.name == "__init__.py" and isinstance(node, ast.Constant) and isinstance(node.value, str)
              and _LAZY_TARGET.fullmatch(node.value)):
            out.add(node.value)
    return out


def part_graph() -> dict[str, dict[str, set[str]]]:
    """``graph[a][b]``: the files of part ``a`` that import part ``b`` (``a != b``)."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        source = _part_of(module)
        for imported in _imports(path):
            target = _part_of(imported)
            if target is not None and target != source:
                graph.setdefault(source, {}).setdefault(target, set()).add(str(rel))
    return graph


def _cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if (v, w) in ALLOWED_EDGES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cost_model_does_not_load_the_store():
    code = ("import sys, kvtier.cost, kvtier.planners, kvtier.targets; "
            "print(sorted(m for m in ('kvtier.store', 'fastcrc', 'kvtier.tiers.flash_tier', 'kvtier.codec') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_still_exports_the_store_and_replay():
    code = ("import sys, kvtier.sim, kvtier; from kvtier import TieredStore, FlashTier, replay, trace_stats; "
            "print(callable(replay) and replay is kvtier.replay and TieredStore.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "kvtier.store"


def test_the_graph_sees_the_parts():
    graph = part_graph()
    assert "tiers" in graph["targets"] and "targets" in graph["cost"] and "cost" in graph["planners"]
    assert "store" in graph["kvtier"]  # the package's lazy exports count as edges


def test_no_import_cycle_between_parts():
    graph = part_graph()
    cycles = _cycles(graph)
    detail = [
        f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})" for c in cycles for a in c for b in graph.get(a, {}) if b in c
    ]
    assert not cycles, f"import cycles between parts of kvtier: {cycles}: {detail}"


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}, "d": {"a": set()}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": set()}, "b": {}}) == []
