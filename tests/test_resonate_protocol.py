"""The ``resonate`` CLI against DARA's ``/resonate/``, on the in-process server and on
Postgres: the CLI's own requests (``tests.resonate_cli``, after the server's
``src/cli.rs``) over real HTTP, and what it would print.

The service runs with DARA_API_TOKEN set, so every command carries ``-T``; the
refusals without it are checked too.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from tests.harness import Service, make_settings, running_service
from tests.postgres import BACKENDS, backend_settings
from tests.resonate_cli import ResonateCli

TOKEN = "resonate-cli-token-0123456789"


@pytest.fixture(scope="module", params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = make_settings(
        tmp_path_factory.mktemp("protocol"), api_token=TOKEN, **backend_settings(request, request.param)
    )
    with running_service(settings) as svc:
        svc.http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield svc


@pytest.fixture
def bare_http(service: Service) -> Iterator[httpx.Client]:
    """A client that sends only what the CLI sends: no API token of its own."""
    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http


@pytest.fixture
def cli(bare_http: httpx.Client, service: Service) -> ResonateCli:
    return ResonateCli(bare_http, f"{service.url}/resonate", token=TOKEN)


def start(service: Service, run_id: str, pipeline: str = "waits_for_callback", **params: object) -> None:
    started = service.http.post("/runs", json={"pipeline": pipeline, "id": run_id, "params": params})
    assert started.status_code in (200, 201), started.text


def decoded(value: dict) -> object:
    return json.loads(base64.b64decode(value["data"]))


@pytest.fixture(scope="module")
def demo_run(service: Service) -> str:
    """A finished run of the demo notebook: a callback wait, run_job, its watcher, notify.
    And a run beside it, which a search that ignored its tags would show too."""
    start(service, "cli-demo-neighbour")
    start(service, "cli-demo", "notebook_job", job="dara-demo", params={"name": "ada"})
    assert service.wait_for("cli-demo", timeout=120)["status"] == "done"
    return "cli-demo"


def test_tree_draws_a_finished_demo_run(cli: ResonateCli, demo_run: str) -> None:
    printed = cli.tree(demo_run)

    lines = printed.out.splitlines()
    assert printed.code == 0, printed.out
    assert lines[0] == f"{demo_run} 🟢 (rpc notebook_job)"
    assert f"├── {demo_run}:1 🟢 (rpc)" in lines  # the callback wait, settled by the notebook
    assert f"├── {demo_run}:2 🟢 (run)" in lines  # run_job
    # notify, the last step (a watcher's look may still be added after it, so not always last)
    assert any(line[4:].startswith(f"{demo_run}:4 🟢 (run)") and line[:4] in ("├── ", "└── ") for line in lines)
    watcher = next(line for line in lines if "dara.watch_run" in line)
    assert watcher.startswith(f"├── {demo_run}:d") and "(rpc dara.watch_run)" in watcher
    # Its own step hangs below it: the tree follows resonate:parent, not just the origin.
    assert any(line.startswith("│   ") and "(run)" in line for line in lines)
    assert all(p["tags"]["resonate:origin"] == demo_run for p in printed.data)


def test_search_pages_in_id_order_as_the_server_does(cli: ResonateCli, demo_run: str) -> None:
    """limit and cursor: every promise of the run once, in id order, each as get has it."""
    everything = cli.search(tags=json.dumps({"resonate:origin": demo_run})).data["promises"]
    seen, cursor = [], None
    for _ in range(len(everything) + 1):  # a cursor that never ends fails, not hangs
        page = cli.search(tags=json.dumps({"resonate:origin": demo_run}), limit=2, cursor=cursor).data
        assert len(page["promises"]) <= 2
        seen += page["promises"]
        if "cursor" not in page:
            break
        cursor = page["cursor"]
        assert cursor == page["promises"][-1]["id"]
    else:
        raise AssertionError(f"no last page after {len(everything) + 1} pages")

    # The run's watcher may still add a look between the two listings: the pages hold every
    # promise of the first listing, in id order, and nothing out of order.
    listed = [p["id"] for p in everything]
    paged = [p["id"] for p in seen]
    assert listed == sorted(listed) and paged == sorted(paged)
    assert [i for i in paged if i in set(listed)] == listed
    assert len(seen) >= 5
    for promise in seen:
        if promise["state"] != "pending":  # a pending watcher may settle between the two reads
            assert cli.get(promise["id"]).data["promise"] == promise


def test_get_prints_a_step_as_stored(cli: ResonateCli, demo_run: str) -> None:
    printed = cli.get(f"{demo_run}:2")

    promise = printed.data["promise"]
    assert printed.code == 0 and printed.out.startswith('{\n  "promise": {\n')
    assert promise["id"] == f"{demo_run}:2" and promise["state"] == "resolved"
    assert set(promise) == {"id", "state", "param", "value", "tags", "timeoutAt", "createdAt", "settledAt"}
    step = decoded(promise["value"])
    assert step["step"] == "run_job" and isinstance(step["result"]["run_id"], int)


def test_get_of_no_such_promise_prints_why(cli: ResonateCli) -> None:
    printed = cli.get("cli-nothing:1")

    assert (printed.code, printed.out) == (1, """Error: "Promise not found: 'cli-nothing:1'\"""")


def test_task_get_reads_a_run_task(cli: ResonateCli, demo_run: str) -> None:
    task = cli.task_get(demo_run).data["task"]

    assert task["id"] == demo_run and task["state"] == "fulfilled"
    assert isinstance(task["version"], int) and task["resumes"] == 0
    assert cli.task_get(f"{demo_run}:2").out == f"""Error: "Task not found: '{demo_run}:2'\""""


def test_search_pending_finds_a_waiting_run(cli: ResonateCli, service: Service) -> None:
    start(service, "cli-waiting")
    service.wait_until("cli-waiting", "waiting")

    pending = cli.search(state="pending").data["promises"]
    resolved = cli.search(state="resolved").data["promises"]
    waits = cli.search(state="pending", tags='{"resonate:external": "true"}').data["promises"]

    assert {"cli-waiting", "cli-waiting:1"} <= {p["id"] for p in pending}
    assert {p["state"] for p in pending} == {"pending"} and {p["state"] for p in resolved} == {"resolved"}
    assert "cli-waiting" not in {p["id"] for p in resolved}
    assert "cli-waiting:1" in {p["id"] for p in waits} and all(p["tags"]["resonate:external"] == "true" for p in waits)
    assert cli.search(state="done").out.startswith('Error: "Invalid request: state: ')


def test_resolve_settles_a_callback_wait_and_the_run_goes_on(
    cli: ResonateCli, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    start(service, "cli-resolve")
    service.wait_until("cli-resolve", "waiting")

    with caplog.at_level(logging.INFO, logger="app.audit"):
        printed = cli.resolve("cli-resolve:1", '{"data":{"ok":true,"rows":3}}')
        again = cli.resolve("cli-resolve:1", '{"data":{"ok":false}}')

    assert printed.code == 0, printed.out
    assert printed.data["promise"]["state"] == "resolved"
    assert decoded(printed.data["promise"]["value"]) == {"ok": True, "rows": 3}
    assert service.wait_for("cli-resolve")["result"] == {"ok": True, "rows": 3}
    # Settled already: as the server, the answer is the promise as it is; nothing changed.
    assert again.code == 0 and decoded(again.data["promise"]["value"]) == {"ok": True, "rows": 3}
    audit = [r.getMessage() for r in caplog.records if r.name == "app.audit"]
    assert "api-token resolved wait 'cli-resolve:1' with the resonate CLI in run 'cli-resolve'" in audit
    assert any("already resolved" in line and "cli-resolve:1" in line for line in audit)


def test_reject_fails_the_run_with_the_message_and_nothing_else(cli: ResonateCli, service: Service) -> None:
    start(service, "cli-reject")
    service.wait_until("cli-reject", "waiting")
    smuggled = base64.b64encode(b"not a pickle").decode()

    printed = cli.reject("cli-reject:1", json.dumps({"data": {"message": "bad rows", "__py_pickle": smuggled}}))

    assert printed.code == 0, printed.out
    # Stored as DARA's error record: the SDK never unpickles what an operator sent.
    assert decoded(printed.data["promise"]["value"]) == {"__type": "error", "message": "bad rows"}
    run = service.wait_for("cli-reject")
    assert run["status"] == "failed" and "bad rows" in run["error"]


def test_resolve_refuses_a_step_the_run_and_a_value_the_sdk_cannot_read(
    cli: ResonateCli, service: Service, demo_run: str
) -> None:
    start(service, "cli-refused", "records_a_step_then_waits", value="x")
    service.wait_until("cli-refused", "waiting")

    step = cli.resolve("cli-refused:1", '{"data":{"ok":true}}')
    root = cli.resolve("cli-refused", '{"data":{"ok":true}}')
    finished_step = cli.resolve(f"{demo_run}:2", '{"data":{"ok":true}}')
    not_json = cli.resolve("cli-refused:2", '{"data":"ok"}')  # stores the text ok: not JSON

    assert step.code == 1 and step.out.startswith(
        """Error: "'cli-refused:1' is a step of run 'cli-refused', not a wait"""
    )
    assert root.code == 1 and "'cli-refused' is the run itself, not a wait" in root.out
    assert finished_step.code == 1 and f"is a step of run '{demo_run}'" in finished_step.out
    assert not_json.code == 1 and "value.data must be base64 of JSON" in not_json.out
    assert cli.get("cli-refused:1").data["promise"]["state"] == "resolved"  # the step's own result
    assert decoded(cli.get("cli-refused:1").data["promise"]["value"]) == {"step": "echo", "result": "x"}
    assert cli.get("cli-refused:2").data["promise"]["state"] == "pending"
    assert cli.get("cli-refused").data["promise"]["state"] == "pending"


def test_no_token_or_a_wrong_one_is_refused_in_the_cli_shape(bare_http: httpx.Client, service: Service) -> None:
    start(service, "cli-token")
    anonymous = ResonateCli(bare_http, f"{service.url}/resonate")
    wrong = ResonateCli(bare_http, f"{service.url}/resonate", token="not-the-token-0123456789")

    for cli in (anonymous, wrong):
        assert cli.resolve("cli-token:1", '{"data":1}').code == 1
        assert cli.get("cli-token").code == 1
        assert cli.tree("cli-token").code == 1

    assert anonymous.get("cli-token").out.startswith('Error: "missing API token: no Authorization header;')
    assert wrong.get("cli-token").out == 'Error: "wrong API token: it does not match DARA_API_TOKEN"'
    raw = bare_http.post("/resonate/", json=anonymous.request("promise.get", {"id": "cli-token"}))
    assert raw.status_code == 401 and raw.json()["head"]["status"] == 401
    assert raw.json()["kind"] == "promise.get" and raw.json()["head"]["corrId"].startswith("cli-")
    assert service.http.get("/runs/cli-token").json()["status"] == "waiting"


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        # `resonate promises create`, `resonate invoke`, and a CLI task and schedule command.
        ("promise.create", {"id": "cli-made", "timeoutAt": 4102444800000}),
        (
            "promise.create",
            {
                "id": "cli-invoked",
                "timeoutAt": 4102444800000,
                "param": {"headers": {}, "data": "e30="},
                "tags": {"resonate:target": "poll://any@default"},
            },
        ),
        ("promise.register_callback", {"awaited": "a", "awaiter": "b"}),
        ("task.create", {"pid": "p", "ttl": 1000, "action": {"kind": "promise.create", "head": {}, "data": {}}}),
        ("task.halt", {"id": "cli-demo"}),
        ("task.search", {"limit": 100}),
        ("schedule.create", {"id": "s", "cron": "* * * * *", "promiseId": "p", "promiseTimeout": 1000}),
        ("debug.reset", {}),
    ],
)
def test_every_other_kind_is_refused(cli: ResonateCli, kind: str, data: dict) -> None:
    printed = cli.run(kind, data)

    assert printed.code == 1
    assert printed.out.startswith(f"Error: \"{kind} is refused here: DARA's /resonate/ answers reads")
    assert cli.get("cli-made").code == 1 and cli.get("cli-invoked").code == 1  # nothing was created


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "Invalid request envelope: the body is not JSON"),
        (b"[]", "Invalid request envelope: send a JSON object"),
        (b'{"kind": "promise.get", "data": {"id": "x"}}', "Invalid request envelope: head: Field required"),
        (b'{"kind": "promise.get", "head": {"corrId": 7, "version": "2026-04-01"}, "data": {}}', "head.corrId"),
        (b'{"kind": "", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {}}', "Missing or invalid 'kind'"),
        (b'{"kind": "promise.get", "head": {"corrId": "c", "version": "2026-04-01"}, "data": []}', "Invalid 'data'"),
        (b'{"kind": "promise.get", "head": {"corrId": "c", "version": "2025"}, "data": {}}', "Unsupported protocol"),
        (
            b'{"kind": "promise.get", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {}}',
            "id: Field required",
        ),
        (b'{"kind": "promise.get", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {"id": 3}}', "id: Input"),
        (
            b'{"kind": "promise.get", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {"id": "a\\u0000"}}',
            "NUL",
        ),
        (
            b'{"kind": "promise.search", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {"limit": 0}}',
            "positive",
        ),
        (
            b'{"kind": "promise.search", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {"limit": 1001}}',
            "1000",
        ),
        (
            b'{"kind": "promise.search", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {"tags": {"a": 1}}}',
            "tags.a",
        ),
        (
            b'{"kind": "promise.search", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {"cursor": "\\u0000"}}',
            "NUL",
        ),
        (
            b'{"kind": "promise.settle", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {"id": "x", "state": "pending"}}',
            "state",
        ),
        (
            (
                b'{"kind": "promise.settle", "head": {"corrId": "c", "version": "2026-04-01"}, '
                b'"data": {"id": "cli-waiting:1", "state": "resolved", "value": {"data": "%%%"}}}'
            ),
            "value.data must be base64",
        ),
        (
            b'{"kind": "promise.fly", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {}}',
            "Unknown operation: promise.fly",
        ),
    ],
)
def test_a_malformed_request_gets_a_4xx_envelope_that_says_why(
    cli: ResonateCli, bare_http: httpx.Client, body: bytes, message: str
) -> None:
    answer = bare_http.post(
        "/resonate/", content=body, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    )

    assert 400 <= answer.status_code < 500, answer.text
    envelope = answer.json()
    assert envelope["head"]["status"] == answer.status_code and envelope["head"]["version"] == "2026-04-01"
    assert isinstance(envelope["data"], str) and message in envelope["data"], envelope["data"]


def test_the_path_without_its_slash_answers_too(cli: ResonateCli, service: Service, bare_http: httpx.Client) -> None:
    answer = bare_http.post(
        "/resonate",
        json=cli.request("promise.get", {"id": "cli-nothing"}),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    assert answer.status_code == 404 and answer.json()["kind"] == "promise.get"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            b'{"kind": "promise.get", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {"id": '
            + b"[" * 5000
            + b"]" * 5000
            + b"}}",
            422,
            "nested",
        ),
        (
            b'{"kind": "promise.\\ud800", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {}}',
            422,
            "surrogate",
        ),
        (
            b'{"kind": "promise.\xed\xa0\x80", "head": {"corrId": "c", "version": "2026-04-01"}, "data": {}}',
            400,
            "not UTF-8",
        ),
    ],
    ids=["too deep", "escaped surrogate", "encoded surrogate"],
)
def test_a_body_not_sent_as_json_is_checked_all_the_same(
    bare_http: httpx.Client, body: bytes, status: int, message: str
) -> None:
    """The body limit checks depth and surrogates only in JSON bodies; the CLI sends JSON, but
    another client may not say so, and its body must not reach the parser unchecked."""
    for token in (TOKEN, None):  # refused for its token first, it is still read with care
        headers = {"Content-Type": "text/plain", **({"Authorization": f"Bearer {token}"} if token else {})}
        answer = bare_http.post("/resonate/", content=body, headers=headers)

        assert answer.status_code == (status if token else 401), answer.text
        assert (message in answer.json()["data"]) if token else answer.json()["kind"] == "unknown"
