"""A notebook's callback that arrives while DARA is down is not lost.

These tests run the *real* DARA callback cell: its source is cut out of
``notebooks/dara_demo.py`` (from the "# DARA callback cell" comment to the next
``# COMMAND ----------``) and executed with a stand-in ``dbutils`` that serves the
widgets. Only the cell's ``time`` is replaced, so the test learns of each back-off
(and, where it matters, does not have to wait it out).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from app.main import create_app
from app.runtime import Runtime
from app.services.run_status import read_run
from app.settings import PROJECT_ROOT
from tests.harness import Service, callback_token, make_settings
from tests.pipelines_for_tests import WITH_TEST_PIPELINES
from tests.shared_server import SharedServer

NOTEBOOK = PROJECT_ROOT / "notebooks" / "dara_demo.py"


def callback_cell_source() -> str:
    text = NOTEBOOK.read_text()
    start = text.index("# DARA callback cell")
    return text[start : text.index("# COMMAND ----------", start)]


class Widgets:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def get(self, name: str) -> str:
        return self._values[name]


def callback_cell(
    promise_id: str,
    url: str,
    *,
    sleep: Callable[[float], None],
    monotonic: Callable[[], float] = time.monotonic,
    patience: float | None = None,
    signature: str | None = None,
    incarnation: str = "",
) -> dict[str, Any]:
    """The cell's namespace, as a notebook would have it after running the cell."""
    signature = signature or callback_token(promise_id, incarnation)
    widgets = {"promise_id": promise_id, "callback_url": url, "callback_signature": signature}
    namespace: dict[str, Any] = {"dbutils": types.SimpleNamespace(widgets=Widgets(widgets))}
    exec(compile(callback_cell_source(), f"{NOTEBOOK}:callback-cell", "exec"), namespace)  # noqa: S102
    assert namespace["DARA_CALLBACK_PATIENCE"] == 600, "the README promises 10 minutes"
    namespace["time"] = types.SimpleNamespace(monotonic=monotonic, sleep=sleep)
    if patience is not None:
        namespace["DARA_CALLBACK_PATIENCE"] = patience
    return namespace


def closed_port() -> socket.socket:
    """A loopback port that is bound but not listening: connecting is refused."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.anyio
async def test_a_callback_sent_while_dara_is_down_lands_when_it_is_back(tmp_path: Path) -> None:
    """A durable backend (the shared in-process server stands in for it) holds a run
    suspended on its callback while no DARA instance is up. The notebook calls back
    into nothing, backs off, and lands on the instance that comes up on the same
    address; that instance resumes the run with the notebook's value."""
    shared = SharedServer()
    await shared.start()
    listener = closed_port()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    failed, up = threading.Event(), threading.Event()
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        failed.set()
        up.wait(timeout=seconds)  # the cell's own back-off, cut short once DARA is up

    # An earlier instance started the run, then went away.
    before = await Runtime.start(
        make_settings(tmp_path / "before", deploy_on_start=False),
        network=shared.worker("before"),
        pipelines=WITH_TEST_PIPELINES,
    )
    await before.start_run("outage", before.pipelines["waits_for_callback"], {}, started_by="test")
    with anyio.fail_after(10):
        while (run := await read_run(before.resonate, "outage")) is None or run.status != "waiting":
            await anyio.sleep(0.01)
    await before.stop()

    cell = callback_cell("outage:1", url, sleep=sleep, incarnation=run.incarnation)
    sent = asyncio.ensure_future(asyncio.to_thread(cell["dara_resolve"], {"rows": 12}))
    server: uvicorn.Server | None = None
    serving: asyncio.Task[None] | None = None
    try:
        assert await asyncio.to_thread(failed.wait, 10), "the first callback attempt did not fail"
        after = create_app(
            make_settings(tmp_path / "after", deploy_on_start=False),
            network=shared.worker("after"),
            pipelines_to_run=WITH_TEST_PIPELINES,
        )
        server = uvicorn.Server(uvicorn.Config(after, lifespan="on", log_level="warning"))
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        up.set()

        with anyio.fail_after(30):
            answer = await sent
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            view = (await http.get("/runs/outage", params={"wait": 20})).json()
    finally:
        up.set()
        if server is not None and serving is not None:
            server.should_exit = True
            await serving
        listener.close()
        await shared.stop()

    assert answer == {"id": "outage:1", "state": "resolved", "already_settled": False}
    assert delays and delays[0] == 1.0
    assert (view["status"], view["result"]) == ("done", {"rows": 12}), view


def test_the_callback_gives_up_after_its_patience_with_a_clear_error() -> None:
    """Nothing ever listens: the cell backs off 1, 2, 4 s ... and gives up once the
    next wait would pass its patience, naming the address and the last error. A
    virtual clock stands in for the waits."""
    listener = closed_port()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    clock = [0.0]
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        clock[0] += seconds

    cell = callback_cell("never:1", url, sleep=sleep, monotonic=lambda: clock[0], patience=10)
    try:
        with pytest.raises(RuntimeError) as raised:
            cell["dara_resolve"]("too late")
    finally:
        listener.close()

    assert delays == [1.0, 2.0, 4.0]
    message = str(raised.value)
    assert message.startswith(f"DARA unreachable at {url}/api/resolve for 10s: ")
    assert "Connection refused" in message


def test_a_refused_callback_is_not_retried(service: Service) -> None:
    """A 4xx will not get better by waiting: a wrong token (403) and a promise the
    service does not have (404: e.g. lost when the in-process default restarted) fail
    the cell at once, with DARA's reason."""

    def never(seconds: float) -> None:
        raise AssertionError(f"a refused callback was retried after {seconds}s")

    started = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "refused"})
    assert started.status_code == 201, started.text
    service.wait_until("refused", "waiting")
    forged = callback_cell("refused:1", service.url, sleep=never, signature=callback_token("other:1", ""))
    lost = callback_cell("restarted:1", service.url, sleep=never)

    with pytest.raises(RuntimeError) as wrong_token:
        forged["dara_resolve"]("x")
    with pytest.raises(RuntimeError) as unknown:
        lost["dara_reject"](ValueError("boom"))

    assert re.match(r"DARA refused the callback \(403\) of \d+ bytes: ", str(wrong_token.value))
    assert re.match(r"DARA refused the callback \(404\) of \d+ bytes: ", str(unknown.value))
    assert "the in-process server that held it was restarted" in str(unknown.value)
    assert service.http.get("/runs/refused").json()["status"] == "waiting"


@pytest.mark.parametrize("size", [5 << 20, 2 << 20])
def test_a_callback_over_the_size_limit_fails_at_once_saying_why(service: Service, size: int) -> None:
    """DARA used to answer 413 without reading the body, so the cell saw a reset connection,
    took it for an outage and retried for ten minutes. Now the cell reads the 413 and raises
    DARA's message at once, naming the setting; the wait is left for the watcher to fail."""

    def never(seconds: float) -> None:
        raise AssertionError(f"an oversized callback was retried after {seconds}s")

    run_id = f"too-big-{size >> 20}"
    started = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": run_id})
    assert started.status_code == 201, started.text
    service.wait_until(run_id, "waiting")
    cell = callback_cell(f"{run_id}:1", service.url, sleep=never, incarnation=started.json()["incarnation"])

    with pytest.raises(RuntimeError) as refused:
        cell["dara_resolve"]("x" * size)

    sent = re.match(r"DARA refused the callback \(413\) of (\d+) bytes: ", str(refused.value))
    assert sent is not None and size < int(sent[1]) < size + 1024, str(refused.value)[:200]
    assert "DARA_MAX_VALUE_BYTES" in str(refused.value)
    assert service.http.get(f"/runs/{run_id}").json()["status"] == "waiting"
