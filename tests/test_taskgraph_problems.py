"""A task graph's problems to the letter: the summary, the cycle each knot is named by,
the suggestions, and where in a YAML file a problem is (app.taskgraph).

tests/test_taskgraph.py covers each kind of problem; these pin the details a data team
reads to fix the graph in one round, found by mutation testing (docs/TESTING.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.taskgraph import Serverless, TaskGraph, TaskGraphError, Warehouse, levels, parse_compute, parse_tasks, validate
from tests.test_taskgraph import graph_in, problems_of, task


def test_the_summary_counts_the_problems_and_lists_one_a_line() -> None:
    assert str(TaskGraphError(["x is wrong"])) == "the task graph has 1 problem; fix and retry:\n  - x is wrong"
    assert str(TaskGraphError(["x", "y"])) == "the task graph has 2 problems; fix and retry:\n  - x\n  - y"


def test_of_two_equally_short_cycles_the_one_through_the_earlier_task_is_named(tmp_path: Path) -> None:
    """Both z and b wait for a and a for both; z comes first in the task list, so it is named."""
    graph = graph_in(tmp_path, [task("a", "b", "z"), task("z", "a"), task("b", "a")])

    named, *_ = problems_of(graph)

    assert named.startswith("dependency cycle: a -> z -> a ")


def test_a_cycle_is_found_past_a_dependency_outside_it(tmp_path: Path) -> None:
    """a also waits for x, which is in no cycle, and x is listed first."""
    graph = graph_in(tmp_path, [task("x"), task("a", "x", "b"), task("b", "a")])

    [problem] = problems_of(graph)

    assert problem.startswith("dependency cycle: a -> b -> a ")


def test_unknown_compute_lists_what_is_defined_or_says_nothing_is(tmp_path: Path) -> None:
    none = graph_in(tmp_path / "none", [task("a", compute="zzz")], {})
    several = graph_in(
        tmp_path / "several",
        [task("a", compute="zzz")],
        {"sl": {"serverless": {"environment_version": "1"}}, "wh": {"warehouse_id": "w"}},
    )

    assert problems_of(none) == ["task 'a' uses unknown compute 'zzz'; none are defined"]
    assert problems_of(several) == ["task 'a' uses unknown compute 'zzz'; defined: sl, wh"]


def test_a_graph_without_tasks_has_no_levels() -> None:
    assert levels(TaskGraph(compute={}, tasks=())) == []


def test_a_duplicate_yaml_key_is_located_by_line() -> None:
    with pytest.raises(TaskGraphError) as caught:
        TaskGraph.from_text("a:\n  warehouse_id: x\nb:\n  warehouse_id: y\na:\n  warehouse_id: z\n", "[]")

    [problem] = caught.value.problems
    assert problem.startswith("compute: invalid YAML: ")
    assert "key 'a' appears twice; names must be unique" in problem
    assert "line 5, column 1" in problem


def test_a_cycle_problem_says_how_to_break_it(tmp_path: Path) -> None:
    assert problems_of(graph_in(tmp_path, [task("a", "b"), task("b", "a")])) == [
        "dependency cycle: a -> b -> a (each task waits for the one before it; remove one of these depends_on)"
    ]


def test_a_dependency_listed_twice_is_named(tmp_path: Path) -> None:
    assert problems_of(graph_in(tmp_path, [task("a"), task("b", "a", "a")])) == [
        "task 'b' lists 'a' twice in depends_on"
    ]


def test_every_task_downstream_of_a_cycle_is_found_however_it_waits(tmp_path: Path) -> None:
    """c reaches the cycle only through its second dependency, and only past a task (w)
    that two of its paths share."""
    graph = graph_in(
        tmp_path,
        [task("a", "b"), task("b", "a"), task("w"), task("x", "w"), task("y", "w", "a"), task("c", "x", "y")],
    )

    assert problems_of(graph)[1:] == [
        "task 'y' can never run: it waits on 'a', which is part of a cycle",
        "task 'c' can never run: it waits on 'a', which is part of a cycle",
    ]


def test_a_notebook_header_on_a_python_task_is_explained(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("a", format="python")])

    assert problems_of(graph) == [
        "task 'a': 'a.py' is a notebook ('# Databricks notebook source') but its format is python; set format: notebook"
    ]


def test_a_file_that_is_not_utf8_is_not_a_notebook_rather_than_an_error(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("a")], files={})
    (tmp_path / "a.py").write_bytes(b"\xff\xfe# Databricks notebook source\n")

    [problem] = problems_of(graph)

    assert problem.startswith("task 'a': 'a.py' is not a notebook in source format")


def test_parameters_become_text_booleans_as_json_writes_them_and_durations_in_seconds() -> None:
    graph = TaskGraph.from_text(
        "sl: {serverless: {environment_version: 1}}",
        '- {name: a, file: a.py, format: python, compute: sl, parameters: ["--n", 3, true, 2.5], timeout: 1h1m1s}\n'
        "- {name: b, file: b.py, compute: sl, parameters: {flag: true, quiet: false}, timeout: 1m30s}",
    )

    assert (graph.tasks[0].parameters, graph.tasks[0].timeout) == (["--n", "3", "true", "2.5"], 3661)
    assert (graph.tasks[1].parameters, graph.tasks[1].timeout) == ({"flag": "true", "quiet": "false"}, 90)


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ("{x: [1]}", "parameter 'x' must be text, a number or a boolean, not a list"),
        ('["--n", {x: 1}]', "parameters must be text, numbers or booleans, not a mapping"),
        ("oops", "parameters must be a mapping (name: value) or, for a python task, a list; got a string"),
    ],
)
def test_parameters_that_are_not_text_say_what_they_are(parameters: str, problem: str) -> None:
    with pytest.raises(TaskGraphError) as caught:
        TaskGraph.from_text(
            "sl: {serverless: {environment_version: 1}}",
            f"- {{name: a, file: a.py, format: python, compute: sl, parameters: {parameters}}}",
        )

    assert caught.value.problems == [f"tasks: task #1 ('a').parameters: {problem}"]


def test_json_is_told_from_yaml_by_its_first_character_past_any_whitespace() -> None:
    """Invalid JSON is reported as JSON, with its line and column, whichever bracket opens it."""
    with pytest.raises(TaskGraphError) as caught:
        TaskGraph.from_text('  {"sl": }', "\n [1,]")

    assert caught.value.problems == [
        "compute: invalid JSON at line 1 column 10: Expecting value",
        "tasks: invalid JSON at line 2 column 5: Expecting value",
    ]


def test_a_cycle_is_found_wherever_the_search_enters_it(tmp_path: Path) -> None:
    """r reaches the a-b cycle from outside it, and x, searched first, reaches only y."""
    graph = graph_in(tmp_path, [task("x", "y"), task("y"), task("r", "a"), task("a", "b"), task("b", "a")])

    assert problems_of(graph) == [
        "dependency cycle: a -> b -> a (each task waits for the one before it; remove one of these depends_on)",
        "task 'r' can never run: it waits on 'a', which is part of a cycle",
    ]


def test_cycles_are_named_from_and_listed_by_their_earliest_task(tmp_path: Path) -> None:
    """The task list's order, not the alphabet's: z's cycle first, and named from z."""
    graph = graph_in(tmp_path, [task("z", "c"), task("m", "n"), task("n", "m"), task("c", "z")])

    assert [problem.split(" (")[0] for problem in problems_of(graph)] == [
        "dependency cycle: z -> c -> z",
        "dependency cycle: m -> n -> m",
    ]


def test_a_notebook_saved_with_a_byte_order_mark_is_a_notebook(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("a")], files={"a.py": "\ufeff# Databricks notebook source\nprint(1)\n"})

    assert validate(graph) is graph


def test_documents_of_the_wrong_shape_say_what_they_are() -> None:
    with pytest.raises(TaskGraphError) as compute:
        parse_compute("etl")
    with pytest.raises(TaskGraphError) as mapping:
        parse_tasks({"a": 1})
    with pytest.raises(TaskGraphError) as text:
        parse_tasks("a, b")

    assert compute.value.problems == ["compute: expected a mapping of compute names to entries, got a string"]
    assert mapping.value.problems == ["tasks: expected a list of tasks, got a mapping"]
    assert text.value.problems == ["tasks: expected a list of tasks, got a string"]


def test_compute_entries_already_built_are_taken_as_they_are() -> None:
    """A program may pass the models themselves rather than their JSON."""
    entries = {"wh": Warehouse(warehouse_id="w"), "sl": Serverless(serverless={"environment_version": "1"})}

    assert parse_compute(entries) == entries
