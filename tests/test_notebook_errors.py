"""A failed notebook's exception reaches the run's error, per task: the embedded workspace
serves it in ``runs/get-output`` (``error``, ``error_trace``) as Databricks does, and the
run watcher puts it, shortened and cleaned, into the error of the failed run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service import jobs

from app.workspace import embedded_notebook_worker
from app.workspace.deploy import demo_job_settings, import_notebooks
from app.workspace.embedded_notebook_worker import MARKER
from app.workspace.embedded_run_output import parse_exception
from steps.jobs import upsert_job
from steps.run_errors import ERROR_CHARS, LINE_CHARS, TRACE_LINES, describe_error
from tests.harness import Service, make_settings, running_service

TEST_NOTEBOOKS = Path(__file__).parent / "notebooks"
TRACE_LINE = 'raise ValueError(f"bad input {value}")'  # a source line of tests/notebooks/raises.py

#: A task graph of two failing notebooks and one that depends on both.
FAILING_GRAPH = {
    "compute.yaml": 'sl:\n  serverless:\n    environment_version: "1"\n',
    "tasks.yaml": (
        "- {name: parse, file: parse.py, compute: sl, format: notebook}\n"
        "- {name: lookup, file: lookup.py, compute: sl, format: notebook}\n"
        "- {name: report, file: report.py, compute: sl, format: notebook, depends_on: [parse, lookup]}\n"
    ),
    "parse.py": "# Databricks notebook source\n" + (TEST_NOTEBOOKS / "raises.py").read_text().split("\n", 1)[1],
    "lookup.py": "# Databricks notebook source\norders = {}\norders['order 7']\n",
    "report.py": "# Databricks notebook source\nprint('never runs')\n",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    jobs_root = tmp_path_factory.mktemp("jobs")
    (jobs_root / "failing").mkdir()
    for name, text in FAILING_GRAPH.items():
        (jobs_root / "failing" / name).write_text(text)
    settings = make_settings(tmp_path_factory.mktemp("errors"), jobs_root=jobs_root)
    with running_service(settings) as svc:
        w = svc.runtime.workspace
        paths = import_notebooks(w, "/Workspace/Shared/dara-tests", TEST_NOTEBOOKS)
        upsert_job(w, demo_job_settings("raises", paths["raises"], cluster=None))
        yield svc


def test_a_notebooks_exception_is_the_runs_error(service: Service) -> None:
    response = service.http.post(
        "/runs", json={"pipeline": "notebook_job", "id": "err-one", "params": {"job": "raises"}}
    )
    assert response.status_code == 201, response.text

    run = service.wait_for("err-one", timeout=120)

    assert run["status"] == "failed"
    error = run["error"]
    assert "task main FAILED (WORKER_EXIT_NONZERO): ValueError: bad input 42 [trace: " in error
    assert TRACE_LINE in error
    assert "\x1b" not in error and "[31m" not in error  # the trace's ANSI colours are gone


def test_each_failed_tasks_exception_is_in_the_runs_error(service: Service) -> None:
    response = service.http.post("/jobs/deploy", json={"name": "failing-graph", "folder": "failing", "id": "err-graph"})
    assert response.status_code == 201, response.text

    run = service.wait_for("err-graph", timeout=180)

    assert run["status"] == "failed"
    error = run["error"]
    assert "task parse FAILED (WORKER_EXIT_NONZERO): ValueError: bad input 42 [trace: " in error
    assert TRACE_LINE in error
    assert "task lookup FAILED (WORKER_EXIT_NONZERO): KeyError: 'order 7' [trace: " in error
    assert "orders['order 7']" in error
    assert "task report UPSTREAM_FAILED (DEPENDENCY_FAILED));" in error  # no output to read


def test_each_task_run_has_its_own_output(service: Service) -> None:
    """What the watcher reads: runs/get-output of each task run, as on Databricks."""
    w = service.runtime.workspace
    [job] = w.jobs.list(name="failing-graph")
    [run] = w.jobs.list_runs(job_id=job.job_id)
    run = w.jobs.get_run(run.run_id)  # type: ignore[arg-type]
    tasks = {task.task_key: task for task in run.tasks or []}

    assert len({task.run_id for task in tasks.values()} | {run.run_id}) == 4
    parse = w.jobs.get_run_output(tasks["parse"].run_id)  # type: ignore[arg-type]
    assert parse.error == "ValueError: bad input 42"
    # As Databricks sends it: in colour (so the source line is split by escape codes).
    assert (
        parse.error_trace and 'ValueError(f"bad input {value}")' in parse.error_trace and "\x1b[" in parse.error_trace
    )
    assert parse.metadata and parse.metadata.run_id == tasks["parse"].run_id
    assert w.jobs.get_run_output(tasks["lookup"].run_id).error == "KeyError: 'order 7'"  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterValue, match="has 3 tasks"):
        w.jobs.get_run_output(run.run_id)  # type: ignore[arg-type]
    assert run.state and run.state.result_state == jobs.RunResultState.FAILED


# -- hostile output, bounded ------------------------------------------------------------


def test_a_hostile_error_is_cleaned_and_bounded() -> None:
    escape = "\x1b[31m\x1b]8;;http://evil\x07\x1b(B"
    trace = "\n".join(f"{escape}line {n} " + "x" * 10_000 + "\r\x00\x07" for n in range(1_000))
    described = describe_error(f"{escape}Boom: " + "m" * 10_000 + "\nsecond line", trace)

    assert described.startswith("Boom: mmm")
    assert "\x1b" not in described and "evil" not in described
    assert all(ch.isprintable() for ch in described)
    assert described.count(" | ") == TRACE_LINES - 1 and "line 999 xxx" in described
    assert len(described) <= ERROR_CHARS + TRACE_LINES * (LINE_CHARS + 3) + 20


def test_a_trace_ending_in_its_message_does_not_repeat_it() -> None:
    trace = "-----\nValueError   Traceback (most recent call last)\n----> 1 f()\n\nValueError: bad"
    assert describe_error("ValueError: bad", trace) == (
        "ValueError: bad [trace: ValueError Traceback (most recent call last) | ----> 1 f()]"
    )
    assert describe_error(None, None) == ""


@pytest.mark.parametrize(
    "stderr",
    [
        "worker noise\n",
        f"noise\n{MARKER} 1 5 ValueError\nbad input 42\nonly one trace line\n",  # cut short
        f"noise\n{MARKER} x 1 ValueError\nbad\ntrace\n",
        f"noise\n{MARKER} 1 1\nbad\ntrace\n",  # no type
        f"noise\n{MARKER} -3 1 ValueError\nbad\ntrace\n",
    ],
)
def test_a_missing_or_garbled_exception_block_is_ignored(stderr: str) -> None:
    assert parse_exception(stderr) == (stderr, None)


def test_the_worker_reports_the_notebooks_first_exception_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = tmp_path / "executed.ipynb"
    error = {
        "output_type": "error",
        "ename": "ValueError\nspoofed",
        "evalue": "bad input 42\n" + "v" * 5_000,
        "traceback": ["\x1b[31mline\x1b[39m\n" * 500, "last line"],
    }
    cell = {"cell_type": "code", "outputs": [{"output_type": "stream", "text": "hi"}, error]}
    artifact.write_text(json.dumps({"cells": [cell, {"outputs": [dict(error, ename="Later")]}]}))

    embedded_notebook_worker.report_exception(artifact)

    stderr = "notebook execution failed (CellExecutionError)\n" + capsys.readouterr().err
    rest, exception = parse_exception(stderr)
    assert rest == "notebook execution failed (CellExecutionError)\n"
    assert exception is not None and exception["type"] == "ValueError spoofed"
    assert exception["message"].split("\n")[0] == "bad input 42"
    assert len(exception["message"]) <= 2 * embedded_notebook_worker.MAX_LINE_CHARS + 1
    assert len(exception["trace"]) == embedded_notebook_worker.MAX_TRACE_LINES
    assert exception["trace"][-1] == "last line" and exception["trace"][0] == "\x1b[31mline\x1b[39m"
