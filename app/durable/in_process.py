"""The in-process Resonate server DARA runs on its embedded defaults.

resonate-sdk 0.8's :class:`~resonate.connections.LocalConnection` is a faithful
simulation of the Resonate server, written for tests. DARA runs on it for real, and
two of its choices stand in the way there:

* **Every request costs O(everything stored).** ``preload`` scans all promises on each
  task create/acquire/fence and suspend redirect, ``enqueue_settle`` scans all
  promises on each task fulfilled, and the timeout tables are lists searched and
  rebuilt on every change, and walked whole by the 1 s sweep. N runs therefore cost
  O(N^2): at 1,000 runs the scans were 63% of the CPU (docs/PERFORMANCE.md), and
  runs that only wait still cost a walk a second. :class:`IndexedServerState` answers
  the same records in the same order from indexes, and its sweep visits only what is due.
* **A wait's deadline is never enforced.** A promise without a target (what
  ``ctx.promise()`` creates) only times out when something happens to read it, so a
  pipeline waiting past its deadline would wait forever. (The Resonate server v0.9.8
  and resonate-pg time every pending promise out themselves.) DARA wants a deadline
  kept, and otherwise needs a durable watchdog per wait, which doubled the work of
  every run. Here the server's own 1 s sweep times such promises out, and resumes the
  pipeline.

The SDK's server also never deletes anything; :meth:`IndexedServerState.purge_runs` forgets
runs past DARA_RUN_RETENTION, as DARA does on Postgres.

Subclassing keeps every request handler the SDK's own; only the bookkeeping changes.
``tests/test_in_process_server.py`` checks each indexed answer against the scan it replaces.

This module is half of DARA's adapter to resonate-sdk (app.durable.resonate_format has
the other half): the only one that imports private SDK names, and the only one that reads
the server's tables. The rest of DARA reads them through :class:`InProcessServer`'s
``stored_promises``, ``task_record`` and ``purge_runs``; tests/test_resonate_adapter.py
fails, naming what moved, when the installed SDK no longer has what is used here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any, Protocol

from resonate.connections import LocalConnection
from resonate.connections.local import I64_MAX, PTimeout, ServerState, Task, TTimeout, _get, extract_action_data

from app.durable.resonate_format import BRANCH, ORIGIN, TARGET


class _Promises(dict[str, Any]):
    """The promise table, plus which promises belong to each branch (for ``preload``)."""

    def __init__(self) -> None:
        super().__init__()
        self.branches: dict[str, dict[str, None]] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self and (branch := value.tags.get(BRANCH)) is not None:
            self.branches.setdefault(branch, {})[key] = None
        super().__setitem__(key, value)

    def forget(self, key: str) -> None:
        """Delete ``key`` from the table and from its branch."""
        branch = self.pop(key).tags.get(BRANCH)
        members = self.branches.get(branch, {}) if branch is not None else {}
        members.pop(key, None)
        if branch is not None and not members:
            self.branches.pop(branch, None)


class _Timeouts(dict[str, Any]):
    """id -> timeout, plus a heap of deadlines, so that the sweep visits only what is due.

    The SDK's sweep (``tick``) walks its whole table every second and skips what is not
    due yet: with every wait's deadline in it, that was the idle cost of a waiting run.
    Iterating this table during a sweep yields just the entries due at ``now``, from the
    heap, as a snapshot (the sweep deletes entries while it walks them). A deadline that
    was moved or deleted leaves its old heap entry behind until it comes up; when those
    outnumber the live entries the heap is rebuilt.
    """

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[int, str]] = []
        #: The sweep's time, set by :meth:`IndexedServerState.tick`; None: iterate everything.
        self.now: int | None = None

    def put(self, entry: Any) -> None:
        """Add or replace the timeout ``entry`` (a PTimeout or TTimeout) under its id."""
        self[entry.id] = entry
        heapq.heappush(self._heap, (entry.timeout, entry.id))
        if len(self._heap) > 2 * len(self) + 64:
            self._heap = [(e.timeout, e.id) for e in self.values()]
            heapq.heapify(self._heap)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        if self.now is None:
            return iter(list(self.values()))
        due: dict[str, Any] = {}
        while self._heap and self._heap[0][0] <= self.now:
            deadline, key = heapq.heappop(self._heap)
            entry = self.get(key)
            if entry is not None and entry.timeout == deadline:
                due[key] = entry
        for entry in due.values():  # due, not yet deleted: the sweep may leave it in place
            heapq.heappush(self._heap, (entry.timeout, entry.id))
        return iter(list(due.values()))


class IndexedServerState(ServerState):
    """:class:`ServerState` with indexes for its scans, and deadlines for every wait."""

    def __init__(self) -> None:
        super().__init__()
        self.promises: _Promises = _Promises()
        self.p_timeouts: _Timeouts = _Timeouts()  # type: ignore[assignment]
        self.t_timeouts: _Timeouts = _Timeouts()  # type: ignore[assignment]
        #: task id -> the promises it awaits, so fulfilling it need not scan them all.
        self.awaiting: dict[str, set[str]] = {}

    def promise_create(self, now: int, corr_id: Any, req: Any) -> dict[str, Any]:
        response = super().promise_create(now, corr_id, req)
        promise: Any = self.promises.get(response["promise"]["id"])  # the SDK's DurablePromise
        if (
            response["status"] == 201
            and promise.state == "pending"
            and promise.timeout_at < I64_MAX
            and TARGET not in promise.tags  # those are swept already
        ):
            self.set_p_timeout(promise.id, promise.timeout_at)
        return response

    def preload(self, promise_id: str) -> list[dict[str, Any]]:
        promise = self.promises.get(promise_id)
        branch = promise.tags.get(BRANCH) if promise is not None else None
        if branch is None:
            return []
        same_branch = self.promises.branches.get(branch, {})
        return [self.promises[other].to_record() for other in same_branch if other != promise_id]

    def task_suspend(self, now: int, corr_id: Any, req: Any) -> dict[str, Any]:
        response = super().task_suspend(now, corr_id, req)
        task_id = _get(req, "id")
        for action in _get(req, "actions") or []:
            awaited = _get(extract_action_data(action), "awaited")
            promise = self.promises.get(awaited) if isinstance(awaited, str) else None
            if promise is not None and task_id in promise.awaiters:
                self.awaiting.setdefault(task_id, set()).add(awaited)
        return response

    def enqueue_settle(self, promise_id: str) -> None:
        # ServerState.enqueue_settle, with the awaiting index in place of its scan.
        task = self.tasks.get(promise_id)
        if task is None:
            promise = self.promises.get(promise_id)
            if promise is not None and TARGET in promise.tags:
                self.tasks[promise_id] = Task(
                    id=promise_id, state="fulfilled", version=0, pid=None, ttl=None, resumes=set()
                )
            return
        if task.state == "fulfilled":
            return
        task.state, task.pid, task.ttl = "fulfilled", None, None
        task.resumes.clear()
        self.del_t_timeout(promise_id)
        for awaited in self.awaiting.pop(promise_id, ()):
            if (promise := self.promises.get(awaited)) is not None:
                promise.awaiters.discard(promise_id)

    def tick(self, now: int) -> None:
        self.p_timeouts.now = self.t_timeouts.now = now
        try:
            super().tick(now)
        finally:
            self.p_timeouts.now = self.t_timeouts.now = None

    def purge_runs(self, settled_before: int) -> int:
        """Forget the runs that ended before ``settled_before`` (ms) with nothing of theirs
        pending; how many. DARA_RUN_RETENTION on this server, as resonate-pg's table is
        purged on Postgres (app.durable.run_index): else a long-lived process keeps every
        run it ever ran. A run is its root promise and every promise of its origin --
        steps, waits, watchers -- with the tasks, deadlines and awaiter index kept for
        them; listeners and awaiters live on the promises themselves. A run with anything
        pending (a watcher's last look) is kept for a later round.

        One pass over the table, without a yield: no request interleaves with it.
        """
        runs: dict[str, list[str]] = {}
        for promise in self.promises.values():
            runs.setdefault(promise.tags.get(ORIGIN, promise.id), []).append(promise.id)
        purged = 0
        for origin, ids in runs.items():
            root = self.promises.get(origin)
            if root is None or ":" in origin or root.settled_at is None or root.settled_at >= settled_before:
                continue
            if any(self.promises[i].state == "pending" for i in ids) or any(
                (task := self.tasks.get(i)) is not None and task.state != "fulfilled" for i in ids
            ):
                continue
            for promise_id in ids:
                self.promises.forget(promise_id)
                self.tasks.pop(promise_id, None)
                self.p_timeouts.pop(promise_id, None)
                self.t_timeouts.pop(promise_id, None)
                self.awaiting.pop(promise_id, None)
            purged += 1
        return purged

    def set_p_timeout(self, promise_id: str, timeout: int) -> None:
        self.p_timeouts.put(PTimeout(id=promise_id, timeout=timeout))

    def del_p_timeout(self, promise_id: str) -> None:
        self.p_timeouts.pop(promise_id, None)

    def set_t_timeout(self, task_id: str, typ: int, timeout: int) -> None:
        self.t_timeouts.put(TTimeout(id=task_id, typ=typ, timeout=timeout))

    def del_t_timeout(self, task_id: str) -> None:
        self.t_timeouts.pop(task_id, None)


class StoredPromise(Protocol):
    """A promise as the server's table holds it: what DARA reads of one."""

    id: str
    state: str
    tags: dict[str, str]
    created_at: int

    def to_record(self) -> dict[str, Any]: ...


class InProcessServer(LocalConnection):
    """The in-process server (and its client connection), on :class:`IndexedServerState`."""

    #: Waits time out at their deadline here, so they need no watchdog.
    times_out_waits = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state: IndexedServerState = IndexedServerState()

    def stored_promises(self) -> Iterator[StoredPromise]:
        """Every promise the server holds, in no particular order. Read it without an
        ``await`` in between: the table may change at the next one."""
        return iter(self.state.promises.values())

    def task_record(self, task_id: str) -> dict[str, Any] | None:
        """The task ``task_id`` as the SDK's server records it, with ``resumes`` counted
        (the server counts them; the SDK's keeps their ids); None if there is none."""
        task = self.state.tasks.get(task_id)
        if task is None:
            return None
        return {**task.to_record(), "resumes": len(task.resumes)}

    def purge_runs(self, settled_before: int) -> int:
        """:meth:`IndexedServerState.purge_runs`."""
        return self.state.purge_runs(settled_before)


def count_applied_requests(counts: dict[str, int]) -> None:
    """Count, into ``counts``, every request the SDK's in-process server state applies,
    by kind (a fenced call as ``fence:<kind>``): scripts/bench.py's ``--count-requests``.

    Patches the SDK's class for the whole process, on either side of the benchmark,
    so it lives here with the other uses of the SDK's private server.
    """
    original = ServerState.apply

    def apply(self: ServerState, now: int, req: Any) -> Any:
        kind = str(_get(req, "kind"))
        if kind == "task.fence":
            kind = f"fence:{_get(_get(req, 'action'), 'kind')}"
        counts[kind] = counts.get(kind, 0) + 1
        return original(self, now, req)

    ServerState.apply = apply  # type: ignore[method-assign]
