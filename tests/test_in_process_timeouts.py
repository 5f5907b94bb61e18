"""The in-process server's deadline table between sweeps (app.durable.in_process).

tests/test_in_process_server.py checks each sweep's due entries against a walk of the
whole table; these check the table as the rest of the server sees it outside a sweep,
where it must behave as the SDK's own list of deadlines did.
"""

from __future__ import annotations

import pytest
from resonate.connections.local import PTimeout, ServerState

from app.durable.in_process import IndexedServerState, _Timeouts


def test_outside_a_sweep_the_table_lists_every_deadline() -> None:
    table = _Timeouts()
    table.put(PTimeout(id="later", timeout=10))
    table.put(PTimeout(id="sooner", timeout=5))

    assert sorted(entry.id for entry in table) == ["later", "sooner"]


def test_after_a_sweep_the_table_lists_every_deadline_again() -> None:
    state = IndexedServerState()
    state.set_p_timeout("later", 10)
    state.set_p_timeout("sooner", 5)

    state.tick(1)  # nothing due

    assert sorted(entry.id for entry in state.p_timeouts) == ["later", "sooner"]


def test_deleting_a_deadline_that_was_never_set_is_no_error() -> None:
    """The SDK deletes the deadline of every promise it settles, with one or not."""
    state = IndexedServerState()

    state.del_p_timeout("never-had-one")
    state.del_t_timeout("never-had-one")

    assert list(state.p_timeouts) == [] and list(state.t_timeouts) == []


def test_a_promise_gets_a_deadline_only_if_created_now_with_one() -> None:
    state = IndexedServerState()

    created = state.promise_create(0, "corr-1", {"id": "timed", "timeoutAt": 50})
    state.promise_create(0, "corr-2", {"id": "forever"})  # no deadline: the SDK's I64_MAX
    again = state.promise_create(10, "corr-3", {"id": "timed", "timeoutAt": 99})  # exists already

    assert (created["status"], created["corrId"], again["status"], again["corrId"]) == (201, "corr-1", 200, "corr-3")
    assert [(entry.id, entry.timeout) for entry in state.p_timeouts] == [("timed", 50)]


def test_a_sweep_visits_only_the_deadlines_that_are_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the index: the SDK's sweep walks what the table yields."""
    state = IndexedServerState()
    state.set_p_timeout("sooner", 5)
    state.set_p_timeout("later", 10_000)
    state.set_t_timeout("task-due", 0, 7)
    state.set_t_timeout("task-later", 0, 10_000)
    walked: list[tuple[list[str], list[str]]] = []

    def sweep(self: ServerState, now: int) -> None:
        walked.append(([e.id for e in self.p_timeouts], [e.id for e in self.t_timeouts]))

    monkeypatch.setattr(ServerState, "tick", sweep)
    state.tick(100)

    assert walked == [(["sooner"], ["task-due"])]


def test_a_task_deadline_is_kept_under_its_task_with_its_kind() -> None:
    state = IndexedServerState()

    state.set_t_timeout("task-1", 1, 50)
    assert [(entry.id, entry.typ, entry.timeout) for entry in state.t_timeouts] == [("task-1", 1, 50)]
    state.del_t_timeout("task-1")
    assert list(state.t_timeouts) == []


def test_moved_deadlines_leave_stale_entries_until_they_outnumber_the_live_ones() -> None:
    """Rebuilding the heap costs a pass over the table: only once the stale entries
    are more than the live ones and 64 besides."""
    table = _Timeouts()
    for i in range(68):  # two live entries, moved again and again
        table.put(PTimeout(id=f"p{i % 2}", timeout=i))
    assert len(table._heap) == 68  # 66 of them stale, not yet more than 2 x 2 + 64

    table.put(PTimeout(id="p0", timeout=100))

    assert sorted(table._heap) == [(67, "p1"), (100, "p0")]
