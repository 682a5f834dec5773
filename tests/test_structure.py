"""The shape of the code: one import root, and no import cycles between its modules.

The import graph is read from the source with ``ast``, imports inside functions included: a cycle held
together by an import placed inside a function is still a cycle, it only fails later.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import offload_bridge

ROOT = Path(offload_bridge.__file__).parent
REPO = ROOT.resolve().parent
# The folders the product card names; in the distribution they are subpackages of offload_bridge.
SUBPACKAGE_FOLDERS = ("ingress", "streams", "schemas", "simulator")


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    # The subpackages are links to the top-level folders: walk through them.
    found = [Path(folder, name) for folder, _, names in os.walk(ROOT, followlinks=True) for name in names]
    for path in sorted(path for path in found if path.suffix == ".py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> Iterator[str]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            yield prefix
            for alias in node.names:
                yield f"{prefix}.{alias.name}"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            if name in modules and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_imports_the_project_through_offload_bridge_only() -> None:
    offenders = []
    sources = [*_modules().values(), *(REPO / "tests").glob("*.py"), *(REPO / "bench").glob("*.py")]
    for path in sources:
        for name in _imported_names("", path):
            if name.split(".")[0] in SUBPACKAGE_FOLDERS:
                offenders.append(f"{path.relative_to(REPO.parent)}: {name}")
    assert not offenders, "import these as offload_bridge.<name>:\n" + "\n".join(sorted(set(offenders)))


def test_the_graph_reader_finds_a_cycle_when_there_is_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules() -> None:
    graph = _graph()
    assert len(graph) > 80, "the module walk missed the subpackages"
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(cycle) for cycle in cycles)
