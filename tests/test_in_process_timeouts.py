"""The in-process server's deadline table between sweeps (app.durable.in_process).

tests/test_in_process_server.py checks each sweep's due entries against a walk of the
whole table; these check the table as the rest of the server sees it outside a sweep,
where it must behave as the SDK's own list of deadlines did.
"""

from __future__ import annotations

from resonate.connections.local import PTimeout

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
