"""What ``POST /resolve`` and ``/reject`` answer and record, to the letter (app.routers.callbacks).

Each refusal is the sentence a notebook's author reads to fix the call, so it is
checked whole; the settle is checked as any Resonate client reads the promise back,
over DARA's own ``/resonate/`` protocol endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from resonate.types import Value

from app.logs import RUN_ID
from app.runtime import Runtime
from app.services import settling
from app.services.errors import NotAWait
from tests.harness import Service, callback_token, make_settings, running_service, sign
from tests.pipelines_for_tests import WITH_TEST_PIPELINES
from tests.postgres import BACKENDS, backend_settings


def waiting_run(service: Service, run_id: str) -> str:
    """Start a run that waits on ``<run_id>:1``; that promise id."""
    response = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": run_id})
    assert response.status_code == 201, response.text
    service.wait_until(run_id, "waiting")
    return f"{run_id}:1"


def stored(service: Service, promise_id: str) -> dict[str, Any]:
    """The promise as the Resonate protocol serves it, its value decoded."""
    envelope = {
        "kind": "promise.get",
        "head": {"corrId": "settle-test", "version": "2026-04-01"},
        "data": {"id": promise_id},
    }
    answer = service.http.post("/resonate/", json=envelope).json()
    assert answer["head"]["status"] == 200, answer
    promise = answer["data"]["promise"]
    return {"state": promise["state"], "value": json.loads(base64.b64decode(promise["value"]["data"]))}


def test_a_rejection_is_recorded_as_resonate_records_an_error(service: Service) -> None:
    """The SDK's own error shape, so every Resonate client reads the notebook's message."""
    promise = waiting_run(service, "settle-rejected")

    response = service.http.post(
        "/reject", json={"id": promise, "error": "disk full", "token": sign(service.http, promise)}
    )

    assert response.json() == {"id": promise, "state": "rejected", "already_settled": False}
    assert stored(service, promise) == {"state": "rejected", "value": {"__type": "error", "message": "disk full"}}


def test_each_refusal_says_which_rule_the_callback_broke(service: Service) -> None:
    promise = waiting_run(service, "settle-refused")

    def detail(body: dict[str, Any], expected_status: int) -> str:
        response = service.http.post("/resolve", json=body)
        assert response.status_code == expected_status, response.text
        return response.json()["detail"]

    assert (
        detail({"id": promise, "value": 1}, 401)
        == "missing token: send the callback_signature widget's value as `token`"
    )
    assert detail({"id": promise, "value": 1, "token": "0" * 64}, 403) == (
        f"token does not match promise {promise!r}: send the promise_id and callback_signature widgets "
        "of the notebook run DARA started for that wait"
    )
    assert detail({"id": "settle-nobody:1", "value": 1, "token": sign(service.http, "settle-nobody:1")}, 404) == (
        "no run 'settle-nobody': it was never started, or the in-process server that held it was restarted"
    )
    earlier = callback_token(promise, "0123456789abcdef")
    assert detail({"id": promise, "value": 1, "token": earlier}, 403) == (
        "token was issued to an earlier run that also had the id 'settle-refused'; the run that has it now "
        "did not start your notebook, so its waits are not yours to settle"
    )
    assert detail({"id": "settle-refused", "value": 1, "token": sign(service.http, "settle-refused")}, 403) == (
        "'settle-refused' is the run itself, not a wait; a callback settles only the wait it was issued for"
    )
    assert detail({"id": "settle-refused:7", "value": 1, "token": sign(service.http, "settle-refused:7")}, 404) == (
        "run 'settle-refused' has no promise 'settle-refused:7'"
    )
    assert service.http.get("/runs/settle-refused").json()["status"] == "waiting"


def test_a_callback_that_loses_the_race_to_a_null_value_is_told_so(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """null is a value like any other: a callback whose value lost to it is answered 409.

    The race is forced: both settles are held at Resonate until both have arrived, then
    the one with null goes first.
    """
    promise = waiting_run(service, "settle-null")
    token = sign(service.http, promise)
    promises = service.runtime.resonate.promises
    real_settle = promises.sender.promise_settle
    both_reached, null_settled = asyncio.Event(), asyncio.Event()
    reached: list[Any] = []

    async def null_first(req: Any) -> Any:
        if req.id != promise:
            return await real_settle(req)
        value = promises.codec.decode(req.value)
        reached.append(value)
        if len(reached) == 2:
            both_reached.set()
        await asyncio.wait_for(both_reached.wait(), 20)
        if value is not None:
            await asyncio.wait_for(null_settled.wait(), 20)
            return await real_settle(req)
        settled = await real_settle(req)
        null_settled.set()
        return settled

    monkeypatch.setattr(promises.sender, "promise_settle", null_first)

    def post(value: Any) -> httpx.Response:
        with httpx.Client(base_url=service.url, timeout=60) as http:
            return http.post("/resolve", json={"id": promise, "value": value, "token": token})

    with ThreadPoolExecutor(2) as pool:
        won, lost = pool.map(post, (None, "late"))

    assert sorted(reached, key=str) == [None, "late"], "both callbacks must reach the settle for the race to be run"
    assert won.json() == {"id": promise, "state": "resolved", "already_settled": False}
    assert lost.status_code == 409, lost.text
    assert (
        lost.json()["detail"]
        == f"{promise!r} was already resolved with another value; this callback's value was not recorded"
    )
    assert service.wait_for("settle-null")["result"] is None


def test_a_callbacks_access_log_line_names_its_run(service: Service) -> None:
    """Operators find a notebook's callback by the run's id (JSON log lines carry it)."""
    promise = waiting_run(service, "settle-logged")
    seen: list[tuple[str, str | None]] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), RUN_ID.get()))

    access, handler = logging.getLogger("uvicorn.access"), Seen()
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        response = service.http.post("/resolve", json={"id": promise, "value": 1, "token": sign(service.http, promise)})
    finally:
        access.removeHandler(handler)
        access.setLevel(level)

    assert response.json() == {"id": promise, "state": "resolved", "already_settled": False}, response.text
    assert [run_id for message, run_id in seen if "/resolve" in message] == ["settle-logged"]


#: Callbacks with one value sent at once to one wait.
RACERS = 8


@pytest.fixture(params=BACKENDS)
def service_on_each_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    with running_service(make_settings(tmp_path, **backend_settings(request, request.param))) as svc:
        yield svc


def test_of_callbacks_racing_with_one_value_exactly_one_is_told_it_settled(
    service_on_each_backend: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook retrying after a lost answer can race its own first try. Resonate answers
    every settle of a settled promise with its record, whoever wrote it, so callbacks with
    the same value cannot tell from the answer which of them settled the wait: only the
    one whose write was kept may be told ``already_settled: false``.

    The race is forced: each settle is held at the SDK's sender, after DARA found the wait
    pending, until all of them have arrived; then they reach the backend together.
    """
    service = service_on_each_backend
    promise = waiting_run(service, "settle-same")
    token = sign(service.http, promise)
    sender = service.runtime.resonate.promises.sender
    real_settle = sender.promise_settle
    arrived: list[str] = []
    all_arrived = asyncio.Event()

    async def held(req: Any) -> Any:
        if req.id == promise:
            arrived.append(req.id)
            if len(arrived) == RACERS:
                all_arrived.set()
            await asyncio.wait_for(all_arrived.wait(), 20)  # TimeoutError: a callback never settled
        return await real_settle(req)

    monkeypatch.setattr(sender, "promise_settle", held)

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=service.url, timeout=60) as http:
            return http.post("/resolve", json={"id": promise, "value": {"rows": 7}, "token": token})

    with ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(post, range(RACERS)))

    assert len(arrived) == RACERS, "every callback must reach the settle for the race to be run"
    assert [answer.status_code for answer in answers] == [200] * RACERS, [answer.text for answer in answers]
    told = sorted(answer.json()["already_settled"] for answer in answers)
    assert told == [False] + [True] * (RACERS - 1), [answer.text for answer in answers]
    assert {answer.json()["state"] for answer in answers} == {"resolved"}
    assert service.wait_for("settle-same")["result"] == {"rows": 7}


@pytest.mark.anyio
async def test_a_promise_made_outside_dara_is_refused_as_its_id_says(tmp_path: Path) -> None:
    """A promise the Resonate server's own CLI made carries none of the SDK's tags: the
    run it belongs to is read from its id, and only a wait is ever settled."""
    runtime = await Runtime.start(make_settings(tmp_path, deploy_on_start=False), pipelines=WITH_TEST_PIPELINES)
    try:
        for promise_id in ("outside", "outside:1"):
            await runtime.resonate.promises.create(promise_id, 4_000_000_000_000, Value(data=None), {})

        with pytest.raises(NotAWait) as root:
            await settling.find_wait(runtime, "outside")
        with pytest.raises(NotAWait) as child:
            await settling.find_wait(runtime, "outside:1")

        assert (root.value.run_id, root.value.kind) == ("outside", "run")
        assert str(child.value) == (
            "'outside:1' is a call of run 'outside', not a wait (ctx.promise()); only a wait can be settled from outside"
        )
    finally:
        await runtime.stop()
