"""scripts/chaos.py's tables, fed run payloads with fields missing; no backend, no service.

The script read ``start_time`` off every Databricks run with ``[...]`` and died with
``KeyError: 'start_time'`` on a run that never started, printing no table. These tests
give its table-building code such payloads directly, and drive ``main`` with the points
stubbed out to check that the table prints when a point breaks off or on Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "chaos.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dara_chaos_script", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


chaos = load_script()

KILLED_AT = 1_800_000_000.0  # epoch seconds
MS = 1000


def iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat()


def view(run_id: str, status: str, *dbx_ids: int, result: Any = None, callback: str | None = None) -> dict:
    """A run as GET /runs/{id} answers it (only the fields the script reads)."""
    steps = [{"name": "run_job", "state": "resolved", "finished_at": iso(KILLED_AT + 2)}]
    if callback:
        steps.append({"name": "callback", "state": callback, "finished_at": iso(KILLED_AT + 5)})
    return {
        "id": run_id,
        "status": status,
        "result": result,
        "steps": steps,
        "databricks_runs": [{"job_id": 7, "run_id": n} for n in dbx_ids],
    }


# Databricks runs of the job as runs/list gives them, some with fields missing.
DBX = {
    1: {"run_id": 1, "start_time": int((KILLED_AT - 100) * MS)},  # from before the point
    # Started after the kill, succeeded: every field there.
    11: {
        "run_id": 11,
        "start_time": int((KILLED_AT + 1) * MS),
        "end_time": int((KILLED_AT + 9) * MS),
        "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
    },
    12: {"run_id": 12},  # no start_time, no end_time, no state: it never started
    13: {"run_id": 13, "start_time": 0, "state": {"life_cycle_state": "PENDING"}},  # queued, never started
    # Running: start_time but no end_time; API 2.2's status instead of state.
    14: {"run_id": 14, "start_time": int((KILLED_AT + 3) * MS), "status": {"state": "RUNNING"}},
    15: {"run_id": 15, "state": None, "start_time": None},  # nulls instead of absent fields
}


def outcome(point: str) -> Any:
    o = chaos.Outcome(point, killed_at=KILLED_AT, before={1}, dbx=dict(DBX))
    runs = {
        "r-done": view("r-done", "done", 11, result=chaos.EXPECTED, callback="resolved"),
        "r-waiting": view("r-waiting", "waiting", 12, callback="pending"),
        "r-queued": view("r-queued", "running", 13),
        "r-running": view("r-running", "waiting", 14, callback="pending"),
        "r-no-dbx": {"id": "r-no-dbx", "status": "failed", "error": "run_job: boom"},  # never started one
        "r-bare": {},  # an answer with nothing in it
        "r-nulls": view("r-nulls", "waiting", 15),
    }
    o.ids = [*runs, "r-unseen"]  # r-unseen: started, never read back (the point was cut short)
    o.views = runs
    return o


@pytest.mark.parametrize("point", chaos.POINTS)
def test_tables_build_from_runs_with_missing_fields(point: str) -> None:
    o = outcome(point)
    summary = chaos.table([o])
    runs = chaos.runs_table([o])
    header, rule, row = summary.splitlines()
    assert header.split()[:2] == ["point", "runs"] and set(rule) <= {"-", " "}
    assert row.split() == [point, "8", str(o.at_point), "1", "5", "0"]
    assert runs.splitlines()[0].split()[:3] == ["point", "run", "status"]


def test_a_run_that_never_started_is_a_row() -> None:
    rows = {(row[1], row[4]): row for row in outcome("before_start").rows()}
    assert rows["r-no-dbx", "-"][2:] == ("failed", "no", "-", "never started")
    assert rows["r-bare", "-"][2] == "unknown" and rows["r-bare", "-"][5] == "never started"
    assert rows["r-waiting", "12"][5] == "never started"
    assert rows["r-queued", "13"][5] == "never started (PENDING)"
    assert rows["r-nulls", "15"][5] == "never started"
    assert rows["r-running", "14"][5] == "RUNNING"
    assert rows["r-done", "11"][5] == "TERMINATED SUCCESS"
    assert rows["r-unseen", "-"][2] == "not checked"
    # The run from before the point is not this point's; nothing else is unclaimed.
    assert not any(row[1] == "-" for row in rows.values())


def test_unclaimed_databricks_runs_are_rows() -> None:
    o = outcome("suspended")
    o.dbx[16] = {"run_id": 16}  # a second start no run reports
    assert ("suspended", "-", "", "", "16", "never started") in o.rows()
    assert o.databricks_runs == 6


def test_runs_without_start_times_are_judged_not_at_the_point() -> None:
    o = outcome("before_start")
    hits = {rid: chaos.was_at_point("before_start", v, o.dbx, KILLED_AT) for rid, v in o.views.items()}
    assert hits == {
        "r-done": True,
        "r-running": True,  # started after the kill
        "r-waiting": False,
        "r-queued": False,
        "r-nulls": False,
        "r-no-dbx": False,
        "r-bare": False,
    }
    assert o.at_point == 2
    # A point cut short before the kill has no kill time: nothing was at the point.
    o.killed_at = None
    assert o.at_point == 0 and {row[3] for row in o.rows()} <= {"no", ""}


def test_lost_callbacks_read_both_result_shapes() -> None:
    o = outcome("callback_arrived")
    o.views["r-done"]["steps"][1]["state"] = "pending"
    assert o.lost_callbacks == 1
    o.dbx[11] = {"run_id": 11, "status": {"state": "TERMINATED", "termination_details": {"code": "SUCCESS"}}}
    assert o.lost_callbacks == 1


def test_report_prints_both_tables_and_a_note_per_failed_run() -> None:
    o = outcome("suspended")
    o.notes.append("broke off: HTTPError: 502")
    text = chaos.report([o, chaos.Outcome("callback_arrived")])
    assert text.count("databricks state") == 1 and text.count("lost callbacks") == 1
    assert "suspended: r-no-dbx: failed run_job: boom" in text
    assert "suspended: r-bare: unknown" in text
    assert "suspended: broke off: HTTPError: 502" in text
    assert "callback_arrived  0" in text  # a point that never started a run is still a row


# -- main: the table always prints ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_main(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_point) -> int:
    monkeypatch.setattr(chaos, "run_point", fake_point)
    argv = ["--resonate-url", "http://127.0.0.1:9", "--port", str(free_port()), "--state-dir", str(tmp_path)]
    return chaos.main(argv)


def test_main_prints_the_table_when_points_break(monkeypatch, tmp_path, capsys) -> None:
    def fake_point(o, service, args):
        o.ids.append(f"{o.point}-0")
        o.dbx = {5: {"run_id": 5}}
        if o.point == "before_start":
            raise ConnectionResetError("the service hung up")
        o.views[f"{o.point}-0"] = view(f"{o.point}-0", "done", 5, result=chaos.EXPECTED)
        return o

    assert run_main(monkeypatch, tmp_path, fake_point) == 1
    out = capsys.readouterr().out
    for point in chaos.POINTS:
        assert f"\n{point} " in out
    assert "before_start: broke off: ConnectionResetError: the service hung up" in out
    assert "never started" in out and "service logs:" in out


def test_main_stops_at_a_fatal_error_and_prints(monkeypatch, tmp_path, capsys) -> None:
    def fake_point(o, service, args):
        raise chaos.Fatal("expected one job named 'dara-demo', found 0")

    assert run_main(monkeypatch, tmp_path, fake_point) == 1
    out = capsys.readouterr().out
    assert "before_start: broke off: Fatal: expected one job" in out
    assert "accepted_not_recorded" not in out  # nothing more was tried


def test_ctrl_c_prints_what_it_has(monkeypatch, tmp_path, capsys) -> None:
    def fake_point(o, service, args):
        o.ids += [f"{o.point}-0", f"{o.point}-1"]
        o.killed_at = KILLED_AT
        o.views[f"{o.point}-0"] = view(f"{o.point}-0", "waiting", 12)
        if o.point == "accepted_not_recorded":
            raise KeyboardInterrupt
        return o

    assert run_main(monkeypatch, tmp_path, fake_point) == 130
    out = capsys.readouterr().out
    assert "accepted_not_recorded: interrupted (Ctrl-C)" in out
    assert "accepted_not_recorded-1  not checked" in out
    assert "suspended" not in out


def test_no_backend_is_refused_with_a_clear_message(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        chaos.main([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--resonate-url" in err and "--postgres-dsn" in err and "in-process" in err
