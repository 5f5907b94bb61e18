"""POST /resolve and /reject guard the promises pipelines wait on; bad input is a 4xx
that says what to fix, never a 500 and never a stuck pipeline."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.harness import Service, callback_token, sign


def waiting_run(service: Service, run_id: str) -> str:
    """Start a run that waits on `<run_id>:1`, and return that promise id."""
    response = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": run_id})
    assert response.status_code == 201, response.text
    service.wait_until(run_id, "waiting")
    return f"{run_id}:1"


def status(service: Service, run_id: str) -> str:
    return service.http.get(f"/runs/{run_id}").json()["status"]


def test_resolve_with_the_right_token_completes_the_run(service: Service) -> None:
    promise = waiting_run(service, "cb-ok")

    response = service.http.post(
        "/resolve", json={"id": promise, "value": {"rows": 3}, "token": sign(service.http, promise)}
    )

    assert response.json() == {"id": promise, "state": "resolved", "already_settled": False}
    run = service.wait_for("cb-ok")
    assert (run["status"], run["result"]) == ("done", {"rows": 3})


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, 401),  # missing
        ("0" * 64, 403),  # forged
        (callback_token("cb-other:1", ""), 403),  # replayed from another promise
        (callback_token("cb-guard:1", "", secret="another-secret-0123456789"), 403),  # signed with the wrong key
    ],
)
def test_bad_tokens_are_refused_and_the_promise_stays_pending(service: Service, token: str | None, code: int) -> None:
    promise = f"cb-guard-{code}-{(token or 'none')[:6]}:1"
    waiting_run(service, promise.split(":")[0])
    body = {"id": promise, "value": 1} | ({"token": token} if token else {})

    response = service.http.post("/resolve", json=body)
    rejected = service.http.post("/reject", json={"id": promise, "error": "x"} | ({"token": token} if token else {}))

    assert (response.status_code, rejected.status_code) == (code, code)
    expected = (
        "missing token: send the callback_signature widget's value as `token`"
        if token is None
        else f"token does not match promise {promise!r}: send the promise_id and callback_signature widgets "
        "of the notebook run DARA started for that wait"
    )
    assert response.json()["detail"] == rejected.json()["detail"] == expected
    assert status(service, promise.split(":")[0]) == "waiting"


def test_a_retried_resolve_is_idempotent_and_a_different_one_is_refused(service: Service) -> None:
    """A notebook retrying after a lost answer does no harm (200, already_settled); a second,
    different callback learns its value was not taken (409 naming the state)."""
    promise = waiting_run(service, "cb-twice")
    body = {"id": promise, "value": {"rows": [1, 2.5, "é"]}, "token": sign(service.http, promise)}

    first = service.http.post("/resolve", json=body)
    retried = service.http.post("/resolve", json=body)
    second = service.http.post("/resolve", json=body | {"value": "second"})
    rejected = service.http.post("/reject", json={"id": promise, "error": "late", "token": body["token"]})

    assert first.json() == {"id": promise, "state": "resolved", "already_settled": False}
    assert retried.json() == {"id": promise, "state": "resolved", "already_settled": True}
    assert (second.status_code, rejected.status_code) == (409, 409)
    assert (
        second.json()["detail"]
        == f"{promise!r} was already resolved with another value; this callback's value was not recorded"
    )
    assert rejected.json()["detail"] == f"{promise!r} was already resolved; this callback's value was not recorded"
    assert service.wait_for("cb-twice")["result"] == {"rows": [1, 2.5, "é"]}


def test_a_callback_that_loses_the_race_to_another_value_is_told_so(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two different callbacks both find the wait pending; the one that settles second
    is answered 409, never 200 ``already_settled: false``, though Resonate answers both
    settles alike (the first write wins, and the loser gets the winner's record back).

    The race is forced: the first settle to reach Resonate is held until the other's
    has been recorded.
    """
    promise = waiting_run(service, "cb-race")
    token = sign(service.http, promise)
    sender = service.runtime.resonate.promises.sender
    real_settle = sender.promise_settle
    other_settled = asyncio.Event()
    calls: list[str] = []

    async def settle_second_first(req: Any) -> Any:
        if req.id != promise:
            return await real_settle(req)
        calls.append(req.id)
        if len(calls) == 1:
            await asyncio.wait_for(other_settled.wait(), 20)
            return await real_settle(req)
        settled = await real_settle(req)
        other_settled.set()
        return settled

    monkeypatch.setattr(sender, "promise_settle", settle_second_first)

    def post(value: str) -> httpx.Response:
        with httpx.Client(base_url=service.url, timeout=60) as http:
            return http.post("/resolve", json={"id": promise, "value": value, "token": token})

    with ThreadPoolExecutor(2) as pool:
        answers = dict(zip(("a", "b"), pool.map(post, ("a", "b")), strict=True))

    assert len(calls) == 2, "both callbacks must reach the settle for the race to be run"
    assert sorted(a.status_code for a in answers.values()) == [200, 409], [a.text for a in answers.values()]
    [(winner, won)] = [(value, a) for value, a in answers.items() if a.status_code == 200]
    [lost] = [a for a in answers.values() if a.status_code == 409]
    assert won.json() == {"id": promise, "state": "resolved", "already_settled": False}
    assert (
        lost.json()["detail"]
        == f"{promise!r} was already resolved with another value; this callback's value was not recorded"
    )
    assert service.wait_for("cb-race")["result"] == winner


def test_a_second_callback_makes_the_notebooks_cell_raise(service: Service) -> None:
    """The callback cell raises on the 409, so the notebook never believes a dropped value."""
    from tests.test_callback_outage import callback_cell

    def never(seconds: float) -> None:
        raise AssertionError(f"a refused callback was retried after {seconds}s")

    promise = waiting_run(service, "cb-second")
    run = service.http.get("/runs/cb-second").json()
    cell = callback_cell(promise, service.url, sleep=never, incarnation=run["incarnation"])
    cell["dara_resolve"]({"n": 1})
    cell["dara_resolve"]({"n": 1})  # the same value again: a harmless retry

    with pytest.raises(
        RuntimeError, match=r"DARA refused the callback \(409\) of \d+ bytes: .*already resolved with another value"
    ):
        cell["dara_resolve"]({"n": 2})


def test_reject_fails_the_run_with_the_notebooks_error(service: Service) -> None:
    promise = waiting_run(service, "cb-reject")

    response = service.http.post(
        "/reject", json={"id": promise, "error": "KeyError: 'customer_id'", "token": sign(service.http, promise)}
    )

    assert response.json()["state"] == "rejected"
    run = service.wait_for("cb-reject")
    assert run["status"] == "failed"
    assert run["error"] == "KeyError: 'customer_id'"


def test_original_query_form_resolves_too(service: Service) -> None:
    promise = waiting_run(service, "cb-query")

    response = service.http.post(
        "/resolve", params={"id": promise, "value": '{"ok": true}', "token": sign(service.http, promise)}
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"id": promise, "state": "resolved", "already_settled": False}
    assert service.wait_for("cb-query")["result"] == {"ok": True}


def test_unknown_promise_is_404_with_a_clear_message(service: Service) -> None:
    response = service.http.post(
        "/resolve", json={"id": "nobody:1", "value": 1, "token": sign(service.http, "nobody:1")}
    )

    assert response.status_code == 404
    assert "no run 'nobody'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "code", "says"),
    [
        ("post", "/runs", {"json": {"pipeline": "nope"}}, 404, "known: "),
        ("post", "/runs", {"json": {"pipeline": "notebook_job", "params": {}}}, 422, "job: Field required"),
        (
            "post",
            "/runs",
            {"json": {"pipeline": "notebook_job", "params": {"job": ["x"]}}},
            422,
            "job: Input should be a valid string",
        ),
        (
            "post",
            "/runs",
            {"json": {"pipeline": "notebook_job", "params": {"job": "j", "extra": 1}}},
            422,
            "extra: Extra inputs",
        ),
        ("post", "/runs", {"json": {"pipeline": "notebook_job", "id": "a:b", "params": {"job": "j"}}}, 422, "pattern"),
        (
            "post",
            "/runs",
            {"json": {"pipeline": "notebook_job", "id": "x" * 200, "params": {"job": "j"}}},
            422,
            "pattern",
        ),
        ("post", "/runs", {"content": b"not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
        (
            "post",
            "/runs",
            {"json": {"pipeline": "waits_for_callback", "params": {"pad": "x" * (2 << 20)}}},
            413,
            "bytes",
        ),
        ("get", "/runs/no-such-run", {}, 404, '{"detail":"no run \'no-such-run\'; start one with POST /runs"}'),
        ("get", "/runs/bad%20id", {}, 422, "pattern"),
        ("get", "/run", {"params": {"id": "a:b"}}, 422, "pattern"),
        ("post", "/resolve", {"json": {"id": "not an id:1", "value": 1, "token": "t"}}, 422, "pattern"),
        ("post", "/resolve", {}, 422, "JSON body"),
        ("post", "/reject", {"json": {"id": "a:1", "token": "t"}}, 422, "error"),
    ],
)
def test_malformed_input_gets_a_4xx_that_says_what_to_fix(
    service: Service, method: str, path: str, kwargs: dict, code: int, says: str
) -> None:
    response = getattr(service.http, method)(path, **kwargs)

    assert response.status_code == code, response.text
    assert says in response.text


def test_an_existing_id_with_another_pipeline_is_a_conflict(service: Service) -> None:
    waiting_run(service, "cb-conflict")

    response = service.http.post(
        "/runs", json={"pipeline": "notebook_job", "id": "cb-conflict", "params": {"job": "j"}}
    )

    assert response.status_code == 409
    assert response.json()["detail"] == "run 'cb-conflict' exists and runs 'waits_for_callback'; pick another id"


def test_pipelines_are_listed_with_a_schema_of_their_params(service: Service) -> None:
    listed = {p["name"]: p for p in service.http.get("/pipelines").json()}

    schema = listed["notebook_job"]["params"]
    assert schema["required"] == ["job"]
    assert schema["properties"]["job"]["type"] == "string"
    assert listed["notebook_job"]["description"].startswith("Run a job whose notebook calls back")
