"""A callback settles only its own wait, once, in its own run (docs/SECURITY.md).

A token binds the promise id, the incarnation of the run that issued it and its
purpose. Tried as an attacker holding a notebook's widgets would, through real HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from app.callback_tokens import CallbackSigner, CallbackUrlRefused
from tests.harness import SECRET, Service, callback_token, make_settings, running_service, sign


def waiting(service: Service, run_id: str, pipeline: str = "waits_for_callback") -> dict:
    started = service.http.post("/runs", json={"pipeline": pipeline, "id": run_id})
    assert started.status_code == 201, started.text
    return service.wait_until(run_id, "waiting")


def test_a_token_from_an_earlier_run_of_the_same_id_is_refused(tmp_path: Path) -> None:
    """The in-process default restarted and the id started again: the old notebook's
    token settles neither the new run's wait nor the step the new run recorded there."""
    state = tmp_path / "state"
    with running_service(make_settings(state, deploy_on_start=False)) as before:
        old = waiting(before, "reused")
        old_token = sign(before.http, "reused:1")

    with running_service(make_settings(state, deploy_on_start=False)) as after:
        # The same id, now a pipeline whose `:1` is a recorded step and `:2` its wait.
        new = waiting(after, "reused", "records_a_step_then_waits")
        forged_step = after.http.post("/resolve", json={"id": "reused:1", "value": "/etc/passwd", "token": old_token})
        forged_wait = after.http.post(
            "/resolve", json={"id": "reused:2", "value": "old", "token": callback_token("reused:2", old["incarnation"])}
        )
        rejected = after.http.post("/reject", json={"id": "reused:1", "error": "x", "token": old_token})
        still = after.http.get("/runs/reused").json()
        own = after.http.post(
            "/resolve", json={"id": "reused:2", "value": "new", "token": sign(after.http, "reused:2")}
        )
        done = after.wait_for("reused")

    assert old["incarnation"] != new["incarnation"]
    for refused in (forged_step, forged_wait, rejected):
        assert refused.status_code == 403, refused.text
        assert "earlier run that also had the id 'reused'" in refused.json()["detail"]
    assert still["status"] == "waiting"
    assert still["steps"][0]["result"] == "/Volumes/main/default/landing/in.csv"  # the step's record is intact
    assert own.json()["already_settled"] is False
    assert done["result"] == {"step": "/Volumes/main/default/landing/in.csv", "value": "new"}


def test_only_a_wait_can_be_settled_not_a_step_the_run_or_a_watcher(service: Service) -> None:
    """Even a token DARA would accept for the id (this run's incarnation) cannot settle
    a promise that is not a wait: as if a pipeline had passed a step's id as callback_to."""
    run = waiting(service, "kinds", "records_a_step_then_waits")
    demo = service.http.post(
        "/runs", json={"pipeline": "notebook_job", "id": "kinds-demo", "params": {"job": "dara-demo"}}
    )
    assert demo.status_code == 201, demo.text
    finished = service.wait_for("kinds-demo")
    [watcher] = [step["id"] for step in finished["steps"] if step["kind"] == "watcher"][:1]

    def settle(promise_id: str, incarnation: str) -> tuple[int, str]:
        body = {"id": promise_id, "value": "forged", "token": callback_token(promise_id, incarnation)}
        response = service.http.post("/resolve", json=body)
        return response.status_code, response.json()["detail"]

    step = settle("kinds:1", run["incarnation"])
    root = settle("kinds", run["incarnation"])
    watched = settle(watcher, finished["incarnation"])

    assert step == (
        403,
        "'kinds:1' is a step of run 'kinds', not a wait (ctx.promise()); only a wait can be settled from outside",
    )
    assert root[0] == 403 and "is the run itself, not a wait" in root[1]
    assert watched[0] == 403 and f"{watcher!r} is a watcher of run 'kinds-demo'" in watched[1]
    after = service.http.get("/runs/kinds").json()
    assert after["status"] == "waiting" and after["steps"][0]["state"] == "resolved"
    assert after["steps"][0]["result"] == "/Volumes/main/default/landing/in.csv"


def test_a_token_is_bound_to_its_promise_and_its_purpose(service: Service) -> None:
    run = waiting(service, "bound")
    other = waiting(service, "bound-other")
    wrong_promise = callback_token("bound-other:1", other["incarnation"])
    # The token format before incarnations: a MAC of the promise id alone.
    bare_mac = hmac.new(SECRET.encode(), b"bound:1", hashlib.sha256).hexdigest()
    # The right promise and incarnation, MACed without the callback purpose.
    no_purpose = (
        f"{run['incarnation']}."
        + hmac.new(SECRET.encode(), f"bound:1\0{run['incarnation']}".encode(), hashlib.sha256).hexdigest()
    )

    answers = [
        service.http.post("/resolve", json={"id": "bound:1", "value": 1, "token": token})
        for token in (wrong_promise, bare_mac, no_purpose, sign(service.http, "bound:1")[:-1])
    ]

    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert all("token does not match promise 'bound:1'" in a.json()["detail"] for a in answers)
    assert service.http.get("/runs/bound").json()["status"] == "waiting"


def test_the_notebook_gets_a_token_for_its_own_wait_and_incarnation(service: Service) -> None:
    """The demo notebook's widgets (the real step that mints them) carry this run's token."""
    started = service.http.post(
        "/runs", json={"pipeline": "notebook_job", "id": "minted", "params": {"job": "dara-demo"}}
    )
    assert started.status_code == 201, started.text

    run = service.wait_for("minted")

    assert run["status"] == "done", run
    [callback] = [step for step in run["steps"] if step["kind"] == "callback"]
    assert callback["id"] == "minted:1" and callback["state"] == "resolved"
    assert run["incarnation"] and len(run["incarnation"]) == 32


def test_notebooks_are_told_to_call_back_only_where_dara_answers(tmp_path: Path) -> None:
    """A run's `url` (GET /run, notebook_job) must be DARA_PUBLIC_URL or in DARA_CALLBACK_URLS:
    otherwise the notebook's token would be sent to whatever host the caller named."""
    settings = make_settings(
        tmp_path, deploy_on_start=False, callback_urls="https://dara.example.com/, http://10.0.0.5:8000"
    )
    with running_service(settings) as service:
        demo = service.http.get("/run", params={"id": "cb-url-evil", "url": "https://attacker.example"})
        posted = service.http.post(
            "/runs",
            json={
                "pipeline": "notebook_job",
                "id": "cb-url-evil-2",
                "params": {"job": "j", "url": "https://attacker.example"},
            },
        )
        listed = service.http.post(
            "/runs",
            json={
                "pipeline": "notebook_job",
                "id": "cb-url-ok",
                "params": {"job": "j", "url": "https://dara.example.com"},
            },
        )
        own = service.http.post(
            "/runs",
            json={"pipeline": "notebook_job", "id": "cb-url-own", "params": {"job": "j", "url": service.url + "/"}},
        )
        missing = [service.http.get(f"/runs/{run_id}").status_code for run_id in ("cb-url-evil", "cb-url-evil-2")]

    for refused in (demo, posted):
        assert refused.status_code == 422, refused.text
        assert "notebooks may call back only" in refused.text and "DARA_CALLBACK_URLS" in refused.text
    assert missing == [404, 404]
    assert (listed.status_code, own.status_code) == (201, 201)


def test_the_step_that_mints_callbacks_refuses_other_urls_too() -> None:
    """The backstop for pipelines that pass a URL without the parameter check."""
    signer = CallbackSigner(SECRET, "http://127.0.0.1:8000", ("https://dara.example.com",))

    assert signer.callback("r:1", "abc", "https://dara.example.com/").url == "https://dara.example.com"
    assert signer.callback("r:1", "abc").url == "http://127.0.0.1:8000"
    with pytest.raises(CallbackUrlRefused, match="callback URL 'https://attacker.example' is not DARA's"):
        signer.callback("r:1", "abc", "https://attacker.example")
