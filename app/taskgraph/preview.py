"""What a task graph will do, before it is deployed: run order, as text and as SVG.

Tasks are grouped in levels -- a task's level is one more than its deepest
dependency's -- so everything in a level can run in parallel once the level before it
is done. Within a level tasks keep their order in the task list, so the preview is the
same every time. The SVG is written by hand (boxes per level, arrows per dependency):
no graphviz binary is needed where DARA runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from app.taskgraph.models import TaskGraph
from app.taskgraph.validate import TaskGraphError, dependency_edges, find_cycles


@dataclass(frozen=True)
class GraphPreview:
    """Everything ``GET /jobs/preview`` shows; serializable as it stands."""

    levels: list[list[str]]
    order: list[str]
    text: str
    svg: str


def preview(graph: TaskGraph) -> GraphPreview:
    grouped = levels(graph)
    return GraphPreview(
        levels=grouped,
        order=[name for level in grouped for name in level],
        text=render_text(graph),
        svg=render_svg(graph),
    )


def levels(graph: TaskGraph) -> list[list[str]]:
    """Tasks by level, stable; a :class:`TaskGraphError` if dependencies form a cycle."""
    edges = dependency_edges(graph)
    cycles = find_cycles(list(edges), edges)
    if cycles:
        raise TaskGraphError([f"dependency cycle: {' -> '.join(cycle)}" for cycle in cycles])
    depth: dict[str, int] = {}
    while len(depth) < len(edges):  # no cycles, so every pass places at least one task
        for name, dependencies in edges.items():
            if name not in depth and all(d in depth for d in dependencies):
                depth[name] = 1 + max((depth[d] for d in dependencies), default=-1)
    grouped: list[list[str]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for name in edges:
        grouped[depth[name]].append(name)
    return grouped


def order(graph: TaskGraph) -> list[str]:
    """A run order that respects every dependency: level by level."""
    return [name for level in levels(graph) for name in level]


def render_text(graph: TaskGraph) -> str:
    """One line per task, numbered by level, with what it runs, where, and what it waits for."""
    grouped = levels(graph)
    tasks = {task.name: task for task in reversed(graph.tasks)}  # first definition wins
    width = max(len(name) for level in grouped for name in level)
    lines = [f"{len(tasks)} tasks in {len(grouped)} levels (tasks in a level run in parallel):"]
    for number, level in enumerate(grouped, start=1):
        for position, name in enumerate(level):
            task = tasks[name]
            label = f"{number:>3}." if position == 0 else "    "
            line = f"{label} {name:<{width}}  {task.format:<8} {task.file} on {task.compute}"
            if task.depends_on:
                line += f"  (after {', '.join(dict.fromkeys(task.depends_on))})"
            lines.append(line)
    return "\n".join(lines) + "\n"


# -- SVG -------------------------------------------------------------------------------

_BOX_HEIGHT = 46
_GAP_X = 70
_GAP_Y = 20
_MARGIN = 20
_CHAR = 7.2  # average glyph width of 12px sans-serif, for sizing boxes


def render_svg(graph: TaskGraph) -> str:
    """A left-to-right diagram: one column per level, an arrow per dependency."""
    grouped = levels(graph)
    tasks = {task.name: task for task in reversed(graph.tasks)}
    edges = dependency_edges(graph)
    labels = {name: f"{tasks[name].format} · {tasks[name].compute}" for name in edges}
    longest = max(max(len(name) + 2, len(labels[name])) for name in edges)
    box_width = max(140, round(longest * _CHAR) + 24)
    tallest = max(len(level) for level in grouped)
    height = 2 * _MARGIN + tallest * _BOX_HEIGHT + (tallest - 1) * _GAP_Y
    width = 2 * _MARGIN + len(grouped) * box_width + (len(grouped) - 1) * _GAP_X

    position: dict[str, tuple[float, float]] = {}
    for column, level in enumerate(grouped):
        column_height = len(level) * _BOX_HEIGHT + (len(level) - 1) * _GAP_Y
        top = (height - column_height) / 2
        for row, name in enumerate(level):
            x = _MARGIN + column * (box_width + _GAP_X)
            position[name] = (x, top + row * (_BOX_HEIGHT + _GAP_Y))

    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
            f'viewBox="0 0 {width} {height:.0f}" font-family="sans-serif" font-size="12">'
        ),
        "<title>task graph</title>",
        (
            "<defs>"
            '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
            'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
            'fill="#555"/></marker>'
            "</defs>"
        ),
    ]
    for name, dependencies in edges.items():
        x2, y2 = position[name]
        for dependency in dependencies:
            x1, y1 = position[dependency]
            start = (x1 + box_width, y1 + _BOX_HEIGHT / 2)
            end = (x2, y2 + _BOX_HEIGHT / 2)
            bend = (end[0] - start[0]) / 2
            parts.append(
                f'<path class="edge" data-from={quoteattr(dependency)} data-to={quoteattr(name)} '
                f'd="M {start[0]:.1f} {start[1]:.1f} C {start[0] + bend:.1f} {start[1]:.1f} '
                f'{end[0] - bend:.1f} {end[1]:.1f} {end[0]:.1f} {end[1]:.1f}" fill="none" '
                'stroke="#555" stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    for name in edges:
        left, top = position[name]
        parts.append(
            f'<g class="task" data-task={quoteattr(name)}>'
            f"<title>{escape(name)}: {escape(tasks[name].file)}</title>"
            f'<rect x="{left:.1f}" y="{top:.1f}" width="{box_width}" height="{_BOX_HEIGHT}" rx="6" '
            'fill="#eef4fb" stroke="#3b6ea5" stroke-width="1.5"/>'
            f'<text x="{left + 12:.1f}" y="{top + 19:.1f}" font-weight="bold">{escape(name)}</text>'
            f'<text x="{left + 12:.1f}" y="{top + 36:.1f}" fill="#555">'
            f"{escape(labels[name])}</text>"
            "</g>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
