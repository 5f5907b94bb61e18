"""The layers point one way (docs/ARCHITECTURE.md), read from the code's own imports.

Module-level imports only: an import inside a function or under ``TYPE_CHECKING``
runs late or never, so it cannot make a cycle at import time or tie a layer down.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "steps", "pipelines")
#: The adapter: the only modules that know the SDK's private code (app/durable/resonate_format.py).
ADAPTER = {"app.durable.resonate_format", "app.durable.in_process"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(*packages: str) -> dict[str, Path]:
    return {module_name(path): path for package in packages for path in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def top_level_imports(tree: ast.Module, name: str, is_package: bool) -> Iterator[tuple[str, list[str]]]:
    """(module, names imported from it) for each import run when the module is imported."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and not _is_type_checking(node):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield base, [alias.name for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Each module of ours -> the modules of ours it imports at import time."""
    ours = modules(*PACKAGES)
    graph: dict[str, set[str]] = {}
    for name, path in ours.items():
        edges: set[str] = set()
        for target, names in top_level_imports(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            # `from app.durable import context` imports the submodule, not just the package.
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in ours and candidate != name:
                    edges.add(candidate)
                    break
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_steps_never_import_the_service() -> None:
    offenders = [
        f"{name} imports {target}"
        for name, path in modules("steps").items()
        for target, _ in top_level_imports(ast.parse(path.read_text()), name, path.name == "__init__.py")
        if target == "app" or target.startswith("app.")
    ]
    assert offenders == [], "steps get what they need injected (steps/injected.py): " + "; ".join(offenders)


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert found == [], f"modules that import each other: {found}"


def test_only_the_adapter_imports_the_sdks_private_names() -> None:
    offenders = []
    for name, path in modules(*PACKAGES, "scripts").items():
        if name in ADAPTER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):  # anywhere: a late import is still one
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resonate"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or ".local" in (node.module or "") or "._" in (node.module or ""):
                    offenders.append(f"{name}: from {node.module} import {', '.join(a.name for a in node.names)}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{name}: import {a.name}" for a in node.names if a.name.startswith("resonate") and "._" in a.name
                ]
    assert offenders == [], (
        "the SDK's private code is the adapter's alone (app/durable/resonate_format.py): " + "; ".join(offenders)
    )


def test_the_checks_see_a_cycle_and_a_private_import() -> None:
    """The checks above can fail: a made-up cycle and import are found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("from resonate.connections.local import _get\nif TYPE_CHECKING:\n    import app.x\n")
    assert list(top_level_imports(tree, "steps.x", False)) == [("resonate.connections.local", ["_get"])]
