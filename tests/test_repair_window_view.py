"""``repairable_until`` in ``GET /runs/{id}`` and on the run page, on the Databricks HTTP
double: set while a failed Databricks run may be repaired (DARA_REPAIR_WINDOW after it
ended, as its watcher noted it), gone once it is repaired, set again -- from the new end
-- when the rerun fails too, and absent on a run that is running or ended."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.harness import Service
from tests.jobs_repair_double import RepairableJobs
from tests.test_repair import WINDOW, repair, repairable  # noqa: F401 -- a fixture
from tests.test_run_watch import databricks_run, start, until


def view(service: Service, run_id: str) -> dict[str, Any]:
    return service.http.get(f"/runs/{run_id}").raise_for_status().json()


def window_of(ended_ms: int) -> datetime:
    """The end of the window DARA_REPAIR_WINDOW opens: from when Databricks says the run ended."""
    return datetime.fromtimestamp((ended_ms + WINDOW * 1000) / 1000, tz=UTC)


def repairable_from(service: Service, run_id: str) -> dict[str, Any]:
    return until(lambda: (run := view(service, run_id))["repairable_until"] and run, f"{run_id} to read repairable")


def test_a_failed_run_reads_repairable_until_its_window_ends_or_it_is_repaired(
    repairable: tuple[Service, RepairableJobs],  # noqa: F811 -- the fixture imported above
) -> None:
    service, jobs = repairable
    start(service, "window")
    databricks = databricks_run(service, "window")["run_id"]
    running = view(service, "window")
    assert running["repairable_until"] is None and running["databricks_runs"][0]["repairable_until"] is None
    assert "repairable until" not in service.http.get("/ui/runs/window").text

    jobs.end(databricks, "FAILED", message="Cluster lost")
    failed = repairable_from(service, "window")
    assert failed["status"] == "waiting", failed
    assert datetime.fromisoformat(failed["repairable_until"]) == window_of(jobs.ended_at[databricks]), failed
    assert failed["databricks_runs"][0]["repairable_until"] == failed["repairable_until"]
    page = service.http.get("/ui/runs/window").text
    shown = f"repairable until {window_of(jobs.ended_at[databricks]):%Y-%m-%d %H:%M:%S} UTC"
    assert 'class="repair"' in page and shown in page, page

    assert repair(service, "window").status_code == 200
    repaired = view(service, "window")  # at once: the repair closed the window
    assert repaired["repairable_until"] is None and repaired["databricks_runs"][0]["repairable_until"] is None

    first_end = jobs.ended_at[databricks]
    until(lambda: int(datetime.now(UTC).timestamp() * 1000) > first_end, "the clock to move past the first end")
    jobs.end(databricks, "FAILED", message="Cluster lost again")
    again = repairable_from(service, "window")
    assert (
        datetime.fromisoformat(again["repairable_until"]) == window_of(jobs.ended_at[databricks]) > window_of(first_end)
    )

    widgets = jobs.runs[databricks].params
    service.http.post(
        "/resolve", json={"id": widgets["promise_id"], "value": 1, "token": widgets["callback_signature"]}
    ).raise_for_status()
    done = service.wait_for("window")
    assert done["status"] == "done" and done["repairable_until"] is None, done
    assert "repairable until" not in service.http.get("/ui/runs/window").text
