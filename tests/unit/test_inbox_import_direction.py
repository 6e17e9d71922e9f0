"""Imports between the mail-in and mail-out packages point one way, function-local ones included.

A function-local import hides a circle from Python (nothing fails at import time) but not from a
reader: `inbox.poll` <-> `inbox.poll_enqueue` and `inbox` <-> `outbox` were such circles. Every
import statement anywhere in a module counts here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "spine_comms"
WATCHED = ("inbox", "outbox", "mailroom", "mail")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for package in WATCHED for p in (PACKAGE / package).glob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_import_circle_in_the_mail_packages() -> None:
    graph = _graph()
    assert "spine_comms.inbox.poll_enqueue" in graph["spine_comms.inbox.poll"]  # the graph sees real edges
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_inbox_and_outbox_import_each_other_one_way_only() -> None:
    package_of = {name: name.split(".")[1] for name in _graph()}
    edges = {(package_of[a], package_of[b]) for a, targets in _graph().items() for b in targets}
    assert ("inbox", "outbox") in edges  # the pipeline hands DSN bounces to the outbox
    assert ("outbox", "inbox") not in edges


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
