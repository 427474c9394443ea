"""The package's modules import one another without cycles, imports inside functions included: each
module can be read (and imported) after the ones it uses. Read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import latefusion

PACKAGE = Path(latefusion.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in its source). `from X import name` points
    at the submodule X.name when there is one, else at X; a submodule's implicit import of its
    parent package is not an edge (it is how every registry package loads its members)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    edges.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
            elif isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "latefusion.pipeline" in graph["latefusion.cli"]  # imported inside command_demo
    assert "latefusion.data.registry" in graph["latefusion.data.folder_prepare"]


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for nxt in graph[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


# What reads finished runs (the report, figures, comparisons, summaries, seeds, the guide's rule and
# the statistics) must not pull in what trains them: a report is written without torch's training
# stack, and a change to the loop cannot break it.
READERS = ("latefusion.report", "latefusion.figures", "latefusion.compare", "latefusion.summary", "latefusion.seeds",
           "latefusion.guide", "latefusion.stats")
TRAINING = ("latefusion.train", "latefusion.engine", "latefusion.methods", "latefusion.pipeline", "latefusion.probe")


def test_the_modules_that_read_runs_import_nothing_of_the_training_stack():
    graph = import_graph()
    for reader in READERS:
        pulled = sorted(m for m in reachable(graph, reader) if m.startswith(TRAINING))
        assert not pulled, f"{reader} imports the training stack: {pulled}"
    assert reachable(graph, "latefusion.stats") == set(), "stats is the bottom of the graph"


def test_reachable_follows_imports_through_other_modules():
    assert reachable({"a": {"b"}, "b": {"c"}, "c": set()}, "a") == {"b", "c"}
