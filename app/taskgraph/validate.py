"""Checking a task graph before anything is sent to a workspace.

Every problem is collected and reported in one error, so a data team fixes a broken
task list in one round instead of one API failure at a time. Nothing here calls
Databricks: a graph that passes is one the Jobs API should accept as far as names,
files, compute and dependencies go.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.taskgraph.models import TaskGraph, TaskSpec

_KINDS = {
    "cluster": "a new job cluster",
    "existing_cluster": "an existing cluster",
    "serverless": "serverless compute",
    "warehouse": "a SQL warehouse",
}

#: The first line Databricks writes into a Python notebook exported in source format.
NOTEBOOK_HEADER = "# Databricks notebook source"


class TaskGraphError(ValueError):
    """A compute config or task list that cannot become a job, with every reason why."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"the task graph has {count} {noun}; fix and retry:\n{lines}"

    def __reduce__(self) -> tuple[type[TaskGraphError], tuple[list[str]]]:
        # Errors cross the durability boundary pickled by constructor arguments.
        return (TaskGraphError, (self.problems,))


def validate(graph: TaskGraph) -> TaskGraph:
    """``graph`` itself if it is sound; otherwise a :class:`TaskGraphError` listing all problems."""
    problems = find_problems(graph)
    if problems:
        raise TaskGraphError(problems)
    return graph


def find_problems(graph: TaskGraph) -> list[str]:
    """Everything wrong with ``graph``, in the order a reader of the task list meets it.

    File checks need ``graph.folder``; a graph built from data alone (no folder) is
    checked for everything else.
    """
    problems: list[str] = []
    if not graph.tasks:
        problems.append("the task list is empty; add at least one task")
        return problems
    problems += _duplicate_names(graph)
    for task in graph.tasks:
        problems += _compute_problems(graph, task.name, task.compute, task.format)
        if graph.folder is not None:
            problems += _file_problems(graph.folder, task.name, task.file, task.format)
    problems += _dependency_problems(graph)
    return problems


def _duplicate_names(graph: TaskGraph) -> list[str]:
    positions: dict[str, list[int]] = {}
    for number, task in enumerate(graph.tasks, start=1):
        positions.setdefault(task.name, []).append(number)
    return [
        f"task name {name!r} is used by {len(numbers)} tasks (entries "
        f"{', '.join(f'#{n}' for n in numbers)}); rename all but one"
        for name, numbers in positions.items()
        if len(numbers) > 1
    ]


def _compute_problems(graph: TaskGraph, task: str, compute: str, fmt: str) -> list[str]:
    entry = graph.compute.get(compute)
    if entry is None:
        return [f"task {task!r} uses unknown compute {compute!r}{_suggest(compute, graph.compute)}"]
    if fmt == "sql" and entry.kind != "warehouse":
        return [
            (
                f"task {task!r} is a SQL file but compute {compute!r} is {_KINDS[entry.kind]}; "
                "SQL tasks run on a SQL warehouse (an entry with warehouse_id)"
            )
        ]
    if fmt != "sql" and entry.kind == "warehouse":
        return [
            (
                f"task {task!r} is a {fmt} task but compute {compute!r} is a SQL warehouse; "
                "use a cluster or serverless compute entry"
            )
        ]
    return []


def _file_problems(folder: Path, task: str, file: str, fmt: str) -> list[str]:
    path = folder / file
    if not path.exists():
        return [f"task {task!r}: file {file!r} is not in the task graph's folder"]
    if not path.is_file():
        return [f"task {task!r}: {file!r} in the task graph's folder is not a file"]
    if path.suffix.casefold() != ".py":
        return []
    first_line = _first_line(path)
    if fmt == "notebook" and first_line != NOTEBOOK_HEADER:
        return [
            (
                f"task {task!r}: {file!r} is not a notebook in source format (its first line must be "
                f"{NOTEBOOK_HEADER!r}); add that line, or set format: python for a plain Python file"
            )
        ]
    if fmt == "python" and first_line == NOTEBOOK_HEADER:
        return [
            (
                f"task {task!r}: {file!r} is a notebook ({NOTEBOOK_HEADER!r}) but its format is "
                "python; set format: notebook"
            )
        ]
    return []


def _first_line(path: Path) -> str:
    with path.open("rb") as file:
        return file.readline().decode("utf-8", errors="replace").strip().lstrip("\ufeff")


def _dependency_problems(graph: TaskGraph) -> list[str]:
    names = [task.name for task in graph.tasks]
    known = set(names)
    problems: list[str] = []
    for task in graph.tasks:
        seen: set[str] = set()
        for dependency in task.depends_on:
            if dependency in seen:
                problems.append(f"task {task.name!r} lists {dependency!r} twice in depends_on")
            seen.add(dependency)
            if dependency not in known:
                problems.append(
                    f"task {task.name!r} depends on unknown task {dependency!r}{_suggest(dependency, names)}"
                )
    edges = dependency_edges(graph)
    cycles = find_cycles(names, edges)
    problems += [
        f"dependency cycle: {' -> '.join(cycle)} (each task waits for the one before it; "
        "remove one of these depends_on)"
        for cycle in cycles
    ]
    in_cycle = {name for cycle in cycles for name in cycle}
    for name, blocker in _blocked_by_cycles(names, edges, in_cycle).items():
        problems.append(f"task {name!r} can never run: it waits on {blocker!r}, which is part of a cycle")
    return problems


def dependency_edges(graph: TaskGraph) -> dict[str, list[str]]:
    """Task -> the known tasks it waits for (first definition wins for duplicate names)."""
    first: dict[str, TaskSpec] = {}
    for task in graph.tasks:
        first.setdefault(task.name, task)
    return {name: [d for d in dict.fromkeys(task.depends_on) if d in first] for name, task in first.items()}


def find_cycles(names: Sequence[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """One named cycle per strongly connected knot, in execution direction.

    ``a -> b`` reads "b waits for a". Each cycle starts and ends at its first task in
    declaration order, so the message is stable from one run to the next. ``edges``
    has an entry for every name (as :func:`dependency_edges` makes it).
    """
    order = {name: index for index, name in enumerate(dict.fromkeys(names))}
    cycles = []
    for component in _strongly_connected(list(order), edges):
        members = set(component)
        start = min(component, key=order.__getitem__)
        if len(component) == 1 and start not in edges[start]:
            continue
        cycles.append(_cycle_through(start, members, edges, order))
    return sorted(cycles, key=lambda cycle: order[cycle[0]])


def _cycle_through(start: str, members: set[str], edges: dict[str, list[str]], order: dict[str, int]) -> list[str]:
    """A shortest waiting chain from ``start`` back to itself, printed in execution order."""
    # Breadth-first over "waits for" edges inside the knot; the path found runs against
    # execution order, so it is reversed for printing.
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for name in frontier:
            for dependency in sorted(edges[name], key=order.__getitem__):
                if dependency not in members:
                    continue
                if dependency == start:
                    chain = [start, name]
                    while chain[-1] != start:
                        chain.append(parents[chain[-1]])
                    return chain
                if dependency not in parents:
                    parents[dependency] = name
                    following.append(dependency)
        frontier = following
    return [start, start]  # unreachable for a real knot; kept total for the type checker


def _strongly_connected(names: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so deep task chains cannot exhaust the stack."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in names:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _blocked_by_cycles(names: Sequence[str], edges: dict[str, list[str]], in_cycle: set[str]) -> dict[str, str]:
    """Tasks outside every cycle that still wait, directly or not, on a task inside one."""
    blocked: dict[str, str] = {}
    for name in dict.fromkeys(names):
        if name in in_cycle:
            continue
        seen: set[str] = set()
        pending = list(edges[name])
        while pending:
            dependency = pending.pop(0)
            if dependency in seen:
                continue
            seen.add(dependency)
            if dependency in in_cycle:
                blocked[name] = dependency
                break
            pending += edges[dependency]
    return blocked


def _suggest(wrong: str, known: Iterable[str]) -> str:
    choices = sorted(set(known))
    close = difflib.get_close_matches(wrong, choices, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    if not choices:
        return "; none are defined"
    return f"; defined: {', '.join(choices)}"
