"""Run notes (app.durable.run_notes) on each backend: the store behind a step's capacity
wait (app.durable.capacity_waits) and a failed Databricks run's repair window
(app.repair_windows), which every worker reads back from the backend they share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import errors as dbx
from resonate.resonate import Resonate

from app import repair_windows
from app.durable import capacity_waits, run_notes
from app.runtime import build_resonate
from tests.harness import make_settings
from tests.postgres import BACKENDS, backend_settings

pytestmark = pytest.mark.anyio

#: A deadline far off, in epoch ms (notes time out at it).
LATER = 4_000_000_000_000


@pytest.fixture(params=BACKENDS)
async def resonate(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Resonate]:
    resonate = build_resonate(make_settings(tmp_path, **backend_settings(request, request.param)))
    try:
        yield resonate
    finally:
        await resonate.stop()


async def test_the_newest_note_is_found_however_many_there_are(resonate: Resonate) -> None:
    assert await run_notes.newest(resonate, "notes:1", "k") is None
    for number in range(1, 38):  # past several powers of two, and between them
        await run_notes.add(resonate, "notes:1", "k", number, {"n": number}, LATER)
        newest = await run_notes.newest(resonate, "notes:1", "k")
        assert newest is not None and (newest.number, newest.data) == (number, {"n": number})
        assert newest.record.id == f"notes:1.k-{number}" and newest.current
    assert await run_notes.newest(resonate, "notes:1", "other") is None  # kinds apart
    assert await run_notes.newest(resonate, "notes:2", "k") is None  # and owners

    await run_notes.close(resonate, "notes:1.k-37")
    await run_notes.close(resonate, "notes:1.k-37")  # settled already: left as it is
    newest = await run_notes.newest(resonate, "notes:1", "k")
    assert newest is not None and newest.number == 37 and not newest.current


async def test_a_capacity_wait_counts_on_across_a_takeover_and_ends_when_the_step_gets_in(
    resonate: Resonate,
) -> None:
    now = [1_700_000_000.0]
    step_id = "queued:1"
    full = dbx.ResourceConflict("the local queue limit of 8 waiting runs is reached", error_code="RESOURCE_CONFLICT")
    first = capacity_waits.CapacityLog(resonate, step_id, "run_job", LATER, lambda: now[0])
    assert await capacity_waits.current(resonate, step_id) is None

    await first.refused(full, 2.0)
    now[0] += 2
    await first.refused(full, 4.0)
    wait = await capacity_waits.current(resonate, step_id)
    assert wait == capacity_waits.CapacityWait(
        "run_job", "the local queue limit of 8 waiting runs is reached", 2, 1_700_000_000_000, 1_700_000_006_000
    )
    # The worker died in its wait; the one that takes the step over goes on counting.
    now[0] += 10
    second = capacity_waits.CapacityLog(resonate, step_id, "run_job", LATER, lambda: now[0])
    await second.refused(full, 1.0)
    wait = await capacity_waits.current(resonate, step_id)
    assert wait is not None and (wait.attempts, wait.since_ms) == (3, 1_700_000_000_000)
    stale = await resonate.promises.get("queued:1.capacity-2")
    assert stale.state == "resolved"  # the dead worker's note, settled by its successor

    await second.over()
    assert await capacity_waits.current(resonate, step_id) is None


async def test_a_repair_window_is_noted_once_per_failure_and_closed_by_a_repair(resonate: Resonate) -> None:
    assert await repair_windows.repairable_until(resonate, "fixable", 12) is None
    for _ in range(3):  # every look of the watcher while the window is open
        await repair_windows.note_open(resonate, "fixable", 12, ended_ms=1_000, until_ms=LATER)
    assert await repair_windows.repairable_until(resonate, "fixable", 12) == LATER
    assert await repair_windows.repairable_until(resonate, "fixable", 13) is None

    await repair_windows.close(resonate, "fixable", 12)
    assert await repair_windows.repairable_until(resonate, "fixable", 12) is None
    # The watcher may read the old failure once more before the rerun shows: not reopened.
    await repair_windows.note_open(resonate, "fixable", 12, ended_ms=1_000, until_ms=LATER)
    assert await repair_windows.repairable_until(resonate, "fixable", 12) is None
    # The rerun failed too: a window of its own.
    await repair_windows.note_open(resonate, "fixable", 12, ended_ms=2_000, until_ms=LATER - 1)
    assert await repair_windows.repairable_until(resonate, "fixable", 12) == LATER - 1
    notes: Any = await run_notes.newest(resonate, "fixable", "repair-12")
    assert notes.number == 2
