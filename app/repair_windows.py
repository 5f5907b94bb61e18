"""Until when a failed Databricks run may still be repaired, noted where every worker reads the run.

A run watcher that finds its Databricks run ended FAILED or TIMEDOUT holds the wait open
for ``DARA_REPAIR_WINDOW`` (app.watchers.repairable_until). Only the watcher knows, from
its last read of the run, so it notes the window as a run note (app.durable.run_notes),
``<run>:repair-<databricks run>-<n>``, one per failure (a repaired run that fails again
gets a window, and a note, of its own). The note times out when the window closes; a
repair settles it at once (app.services.repairing). ``GET /runs/{id}`` shows a current
note as ``repairable_until``.
"""

from __future__ import annotations

from typing import Any

from resonate.resonate import Resonate

from app.durable import run_notes


def _kind(databricks_run_id: int) -> str:
    return f"repair-{databricks_run_id}"


def _ended(data: Any) -> int | None:
    ended = data.get("ended") if isinstance(data, dict) else None
    return ended if type(ended) is int else None


async def note_open(resonate: Resonate, run_id: str, databricks_run_id: int, ended_ms: int, until_ms: int) -> None:
    """Note that the Databricks run that ended at ``ended_ms`` may be repaired until
    ``until_ms``; once per failure (every look of the watcher calls this)."""
    kind = _kind(databricks_run_id)
    newest = await run_notes.newest(resonate, run_id, kind)
    if newest is not None and _ended(newest.data) == ended_ms:
        return  # noted already, and maybe repaired since: a repair closes the note
    number = newest.number + 1 if newest is not None else 1
    data = {"databricks_run_id": databricks_run_id, "ended": ended_ms, "until": until_ms}
    await run_notes.add(resonate, run_id, kind, number, data, until_ms)


async def close(resonate: Resonate, run_id: str, databricks_run_id: int) -> None:
    """The Databricks run was repaired: its window no longer applies."""
    newest = await run_notes.newest(resonate, run_id, _kind(databricks_run_id))
    if newest is not None and newest.current:
        await run_notes.close(resonate, newest.record.id)


async def repairable_until(resonate: Resonate, run_id: str, databricks_run_id: int) -> int | None:
    """Until when (epoch ms) the Databricks run may be repaired, or None if it may not."""
    newest = await run_notes.newest(resonate, run_id, _kind(databricks_run_id))
    if newest is None or not newest.current:
        return None
    return newest.record.timeout_at
