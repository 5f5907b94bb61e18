"""DARA run as the Databricks Apps runtime runs it, behind a stand-in for the Apps proxy.

The service is ``python -m app`` (app.yaml's command, in this test's environment; the
uv half of it is tested in test_databricks_app_install.py) in its own process, with what
the Apps runtime sets -- ``DATABRICKS_APP_NAME``, ``DATABRICKS_APP_PORT``,
``DATABRICKS_HOST`` -- and app.yaml's ``env``, each ``valueFrom`` resolved as the
runtime resolves the App's resources: the callback secret's value, the demo job's id.
(The ``database`` resource is left out here: Lakebase is tested on a real Postgres in
test_databricks_app_lakebase.py; these runs live in memory.) Nothing tells it where to
listen but ``DATABRICKS_APP_PORT``.

The workspace is an embedded one, set up as README "Deploy to Databricks" sets up a real
one: a secret scope holding a service principal's OAuth client id and secret, the demo
notebook, and the demo job exactly as databricks.yml defines it. The Apps proxy double
(tests/apps_proxy_double.py) fronts DARA and is also the workspace's ``/oidc/v1/token``
(the job's ``dara_workspace_url``), so the real demo notebook's callback cell gets its
token there, through ``dbutils.secrets``, and the callback reaches DARA through the proxy.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist
from databricks.sdk.service import jobs, workspace

from app.settings import PROJECT_ROOT
from app.workspace.app_url import AppUrlUnknown, with_app_url
from app.workspace.embedded import LOCAL_TOKEN, EmbeddedWorkspace
from scripts.databricks_double import DatabricksDouble, Response
from tests.apps_proxy_double import AppsProxyDouble, apps_proxy
from tests.harness import make_settings

SECRET = "app-callback-key-0123456789abcdef"
CALLBACK_SCOPE = "dara-callback"
NOTEBOOK_DIR = "/Workspace/Shared/dara-app"
#: The demo notebook's answer for the demo job's default parameters (name=world, count=10).
DEMO_RESULT = {"greeting": "hello world", "sum_of_squares": 285}


@dataclass
class Deployment:
    """An embedded workspace set up as README "Deploy to Databricks" sets up a real one."""

    workspace: WorkspaceClient
    host: str
    job_id: int
    client_id: str
    client_secret: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bundle_job(key: str, substitutions: dict[str, str], notebook_paths: dict[str, str]) -> jobs.JobSettings:
    """A job of databricks.yml, as ``bundle deploy`` would create it: variables substituted,
    local notebook paths replaced by where they were imported, bundle-only keys dropped."""
    text = (PROJECT_ROOT / "databricks.yml").read_text()
    for reference, value in substitutions.items():
        text = text.replace(reference, value)
    spec: dict[str, Any] = yaml.safe_load(text)["resources"]["jobs"][key]
    spec.pop("permissions", None)
    for task in spec["tasks"]:
        task["notebook_task"]["notebook_path"] = notebook_paths[task["notebook_task"]["notebook_path"]]
    assert "${" not in str(spec), f"unresolved references in job {key}: {spec}"
    return jobs.JobSettings.from_dict(spec)


def deploy(w: WorkspaceClient, token_url: str, client_id: str, client_secret: str) -> int:
    """Secrets, notebook and demo job, as the README's commands and the bundle make them."""
    w.secrets.create_scope(CALLBACK_SCOPE)
    w.secrets.put_secret(CALLBACK_SCOPE, "client-id", string_value=client_id)
    w.secrets.put_secret(CALLBACK_SCOPE, "client-secret", string_value=client_secret)
    w.workspace.mkdirs(NOTEBOOK_DIR)
    w.workspace.import_(
        path=f"{NOTEBOOK_DIR}/dara_demo.py",
        content=base64.b64encode((PROJECT_ROOT / "notebooks" / "dara_demo.py").read_bytes()).decode(),
        format=workspace.ImportFormat.SOURCE,
        language=workspace.Language.PYTHON,
        overwrite=True,
    )
    settings = bundle_job(
        "dara_demo",
        {
            "${var.callback_scope}": CALLBACK_SCOPE,
            "${workspace.host}": token_url,  # whose /oidc/v1/token issues the tokens
            "${var.environment_version}": '"1"',  # the embedded workspace's one (a deploy's --var)
        },
        {"./notebooks/dara_demo.py": f"{NOTEBOOK_DIR}/dara_demo.py"},
    )
    fields = {name: getattr(settings, name) for name in settings.as_dict()}
    return w.jobs.create(**fields).job_id  # type: ignore[return-value]


def app_env(resources: dict[str, str]) -> dict[str, str]:
    """app.yaml's env, each ``valueFrom`` resolved from ``resources`` (absent: left out)."""
    env = {}
    for entry in yaml.safe_load((PROJECT_ROOT / "app.yaml").read_text())["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif entry["valueFrom"] in resources:
            env[entry["name"]] = resources[entry["valueFrom"]]
    return env


@dataclass
class AppProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def dara_as_an_app(deployment: Deployment, proxy: AppsProxyDouble, state: Path) -> Iterator[AppProcess]:
    """``python -m app`` with the Apps runtime's variables and app.yaml's env."""
    command = yaml.safe_load((PROJECT_ROOT / "app.yaml").read_text())["command"]
    assert command[-3:] == ["python", "-m", "app"]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DARA_", "DATABRICKS_", "RESONATE_"))}
    env = {
        **inherited,
        "DATABRICKS_APP_NAME": "dara-test",
        "DATABRICKS_APP_PORT": str(proxy.upstream_port),
        "DATABRICKS_HOST": deployment.host,
        # The embedded workspace takes a token; a real App authenticates as its own service
        # principal (DATABRICKS_CLIENT_ID/SECRET), which the embedded workspace cannot check.
        "DATABRICKS_TOKEN": LOCAL_TOKEN,
        **app_env({"callback-secret": SECRET, "demo-job": str(deployment.job_id)}),
        # The App looks its URL up (apps.get), which the embedded workspace does not serve.
        "DARA_PUBLIC_URL": proxy.url,
        "DARA_STATE_DIR": str(state),
        "DARA_WATCH_INTERVAL": "1",
    }
    state.mkdir(parents=True, exist_ok=True)
    log = state / "app.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    app = AppProcess(process, proxy.upstream_port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"DARA exited with {process.returncode}:\n{app.output()}"
            assert time.monotonic() < deadline, f"DARA did not become healthy:\n{app.output()}"
            try:
                if httpx.get(f"http://127.0.0.1:{app.port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield app
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedWorkspace]:
    with EmbeddedWorkspace(tmp_path_factory.mktemp("app-workspace") / "ws") as ws:
        yield ws


@pytest.fixture(scope="module")
def proxy() -> Iterator[AppsProxyDouble]:
    with apps_proxy(free_port()) as double:
        yield double


@pytest.fixture(scope="module")
def deployment(embedded: EmbeddedWorkspace, proxy: AppsProxyDouble) -> Deployment:
    w = WorkspaceClient(config=Config(host=embedded.host, token=LOCAL_TOKEN, auth_type="pat"))
    client_id, client_secret = proxy.add_service_principal("dara-callback")
    job_id = deploy(w, proxy.url, client_id, client_secret)
    return Deployment(w, embedded.host, job_id, client_id, client_secret)


@pytest.fixture(scope="module")
def app(
    deployment: Deployment, proxy: AppsProxyDouble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    with dara_as_an_app(deployment, proxy, tmp_path_factory.mktemp("app-state")) as running:
        yield running


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def wait_done(http: httpx.Client, run_id: str, headers: dict[str, str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = http.get(f"/runs/{run_id}", params={"wait": 10}, headers=headers)
        assert run.status_code == 200, run.text
        if run.json()["status"] not in ("running", "waiting"):
            return run.json()
    raise TimeoutError(f"run {run_id} did not finish in {timeout}s")


def test_it_listens_on_all_interfaces_at_the_port_the_runtime_gives(app: AppProcess) -> None:
    assert listening_addresses(app.port) == {"0.0.0.0"}
    assert re.search(rf"Uvicorn running on http://0\.0\.0\.0:{app.port}\b", app.output())


def test_the_demo_notebook_calls_back_through_the_proxy_with_an_oauth_token(
    app: AppProcess, proxy: AppsProxyDouble, deployment: Deployment
) -> None:
    ada = proxy.sign_in("ada@example.com")
    with httpx.Client(base_url=proxy.url, timeout=30) as http:
        started = http.get("/run", params={"id": "app-demo"}, headers=ada)
        assert started.status_code in (200, 201), started.text
        run = wait_done(http, "app-demo", ada)

    assert (run["status"], run["result"]) == ("done", DEMO_RESULT), run
    assert run["started_by"] == "ada@example.com"  # the user the proxy vouched for
    assert [(d["job_id"]) for d in run["databricks_runs"]] == [deployment.job_id]  # the job from the resource
    (callback,) = [seen for seen in proxy.requests_to("POST", "/api/resolve") if seen.status == 200]
    assert (callback.principal, callback.authenticated_by, callback.status) == (deployment.client_id, "bearer", 200)
    tokens = proxy.requests_to("POST", "/oidc/v1/token")
    assert tokens and all(seen.status == 200 for seen in tokens)


def test_without_the_proxy_nothing_gets_in(app: AppProcess, proxy: AppsProxyDouble, deployment: Deployment) -> None:
    """The proxy turns away whoever has no session or token, and a token off /api/; DARA
    itself, trusting only forwarded users, refuses a request that did not come through it."""
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        anonymous = http.get("/runs")
        token = http.post(
            "/oidc/v1/token",
            data={"grant_type": "client_credentials", "scope": "all-apis"},
            auth=(deployment.client_id, deployment.client_secret),
        ).json()["access_token"]
        off_api = http.get("/runs", headers={"Authorization": f"Bearer {token}"})
        forged = http.post("/api/resolve", json={"id": "x:1", "token": "y"}, headers={"Authorization": "Bearer forged"})
        # A client's own X-Forwarded-Email does not get through: the proxy says who called.
        posing = http.post(
            "/runs",
            json={"pipeline": "lakeflow_refresh", "id": "app-posing", "params": {"pipeline_id": "p", "job": "j"}},
            headers={**proxy.sign_in("ada@example.com"), "X-Forwarded-Email": "boss@example.com"},
        )
    direct = httpx.get(f"http://127.0.0.1:{app.port}/runs", timeout=10)

    assert (anonymous.status_code, off_api.status_code, forged.status_code) == (401, 401, 401)
    assert "detail" not in anonymous.text  # the proxy's answer, not DARA's
    assert posing.status_code == 201, posing.text
    assert posing.json()["started_by"] == "ada@example.com"
    assert direct.status_code == 401
    assert "X-Forwarded-Email" in direct.json()["detail"]


def test_without_a_token_the_run_finishes_through_the_exit_value(
    app: AppProcess, proxy: AppsProxyDouble, deployment: Deployment
) -> None:
    """The job names a secret scope that does not exist: the cell gets no token, still
    calls, is turned away by the proxy, and says so without failing the notebook, which
    ends with its exit value; DARA finishes the wait with that."""
    ada = proxy.sign_in("ada@example.com")
    params = {"job": str(deployment.job_id), "params": {"dara_secret_scope": "no-such-scope", "name": "exit"}}
    with httpx.Client(base_url=proxy.url, timeout=30) as http:
        started = http.post("/runs", json={"pipeline": "notebook_job", "id": "app-exit", "params": params}, headers=ada)
        assert started.status_code == 201, started.text
        run = wait_done(http, "app-exit", ada)

    refused = [seen for seen in proxy.requests_to("POST", "/api/resolve") if seen.status == 401]
    assert refused and refused[-1].authenticated_by is None
    assert (run["status"], run["result"]) == ("done", {**DEMO_RESULT, "greeting": "hello exit"}), run


def test_it_stops_on_sigterm_without_waiting_out_the_long_polls_in_flight(
    deployment: Deployment, proxy: AppsProxyDouble, tmp_path: Path
) -> None:
    """A run is waiting on its notebook's callback (held at the proxy) and a client is
    long-polling it, and its page, when the runtime sends SIGTERM.

    The Apps runtime kills an app 15 s after SIGTERM. Nothing here measures the time:
    the test checks that nothing in the shutdown waits out a timeout (uvicorn's grace
    period, Runtime.stop's), so the exit is bounded by work, not by waiting. The time
    it takes is in docs/PERFORMANCE.md."""
    ada = proxy.sign_in("ada@example.com")
    earlier, proxy.upstream_port = proxy.upstream_port, free_port()  # a DARA of its own, behind the same proxy
    with (
        dara_as_an_app(deployment, proxy, tmp_path / "state") as app,
        httpx.Client(base_url=proxy.url, timeout=90) as http,
    ):
        proxy.callbacks_flowing.clear()
        stopping = threading.Event()  # ends the long polls
        try:
            assert http.get("/run", params={"id": "app-stop"}, headers=ada).status_code in (200, 201)
            deadline = time.monotonic() + 60
            while http.get("/runs/app-stop", headers=ada).json()["status"] != "waiting":
                assert time.monotonic() < deadline, "the run never waited for its callback"
                time.sleep(0.05)
            answers: dict[str, list[object]] = {"run": [], "page": []}

            def long_poll(kind: str, path: str, params: dict[str, object]) -> None:
                # Again as each answers: a watcher's look changes the run, which ends a long poll.
                while not stopping.is_set():
                    try:
                        answer = http.get(path, params=params, headers=ada)
                    except httpx.HTTPError as exc:
                        answers[kind].append(exc)
                        return
                    answers[kind].append(answer.status_code)
                    if kind == "page" and answer.status_code == 200:
                        params = {**params, "seen": answer.headers["X-Dara-Version"]}

            polls = [
                threading.Thread(target=long_poll, args=("run", "/runs/app-stop", {"wait": 60}), daemon=True),
                threading.Thread(
                    target=long_poll, args=("page", "/ui/runs/app-stop/live", {"seen": "", "wait": 30}), daemon=True
                ),
            ]
            for poll in polls:
                poll.start()
            held = ("/runs/app-stop?wait=60", "/ui/runs/app-stop/live?seen=")
            # Until both are in DARA's hands at once.
            while not all(any(p.startswith(path) for p in list(proxy.in_flight)) for path in held):
                assert time.monotonic() < deadline, f"the long polls did not reach DARA: {answers}"
                time.sleep(0.01)
            sent = time.monotonic()
            app.process.send_signal(signal.SIGTERM)
            code = app.process.wait(timeout=60)  # only against a hang: the bound is the checks below
            took = time.monotonic() - sent
        finally:
            stopping.set()
            proxy.callbacks_flowing.set()
            proxy.upstream_port = earlier
        # The proxy answers a long poll once DARA closes it (502 when DARA is gone), so each
        # thread ends; the join's bound is only the client's own timeout, never reached.
        for poll in polls:
            poll.join(timeout=120)
            assert not poll.is_alive(), f"a long poll got no answer: {answers}"

    print(f"stopped {took:.1f} s after SIGTERM")
    # uvicorn shuts down, then re-raises the signal it caught: the exit status says SIGTERM.
    assert code in (0, -signal.SIGTERM), app.output()
    output = app.output()
    assert "Application shutdown complete" in output
    # No request was cut off at the end of uvicorn's grace period, and the runtime stopped
    # without its own timeout: the exit waited for no clock.
    assert "timeout graceful shutdown exceeded" not in output, output
    assert "did not stop within" not in output, output
    # Each poll in flight at SIGTERM was answered by DARA: the run as it is (200), the
    # page unchanged (204); a poll sent after DARA stopped listening meets the proxy's 502.
    assert answers["run"] and answers["page"], answers
    for kind, answered_by_dara in (("run", 200), ("page", 204)):
        statuses = [a for a in answers[kind] if a != 502]
        assert statuses and statuses[-1] == answered_by_dara and set(statuses) <= {200, 204}, answers


# -- where notebooks call back: the App's own URL --------------------------------------


def test_an_app_without_a_public_url_takes_its_own_from_the_workspace(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://dara-test-1234567890.aws.databricksapps.com"
    databricks_double.route("GET", "/api/2.0/apps/{name}", lambda request: {"name": request.params["name"], "url": url})
    for name, value in {
        "DATABRICKS_APP_NAME": "dara-test",
        "DATABRICKS_APP_PORT": "8000",
        "DATABRICKS_TOKEN": "x",
    }.items():
        monkeypatch.setenv(name, value)
    settings = with_app_url(make_settings(tmp_path, databricks_host=databricks_double.url, databricks_retry_timeout=1))

    assert settings.callback_base_url == url
    assert "dara-test-1234567890.aws.databricksapps.com" in settings.host_names
    assert [r.path for r in databricks_double.requests_to("GET", "/api/2.0/apps/{name}")] == ["/api/2.0/apps/dara-test"]


def test_an_app_that_cannot_see_itself_says_what_to_set(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    databricks_double.route(
        "GET",
        "/api/2.0/apps/{name}",
        Response(403, {"error_code": "PERMISSION_DENIED", "message": "no CAN USE on app dara-test"}),
    )
    for name, value in {
        "DATABRICKS_APP_NAME": "dara-test",
        "DATABRICKS_APP_PORT": "8000",
        "DATABRICKS_TOKEN": "x",
    }.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(AppUrlUnknown, match=r"set DARA_PUBLIC_URL to the App's URL \(`databricks apps get dara-test`"):
        with_app_url(make_settings(tmp_path, databricks_host=databricks_double.url, databricks_retry_timeout=1))
    assert with_app_url(make_settings(tmp_path, public_url="https://x.example")).public_url == "https://x.example"


def test_the_embedded_workspace_keeps_secrets_as_databricks_does(deployment: Deployment) -> None:
    """The Secrets API subset the setup uses, with Databricks' errors; values never come back."""
    w = deployment.workspace

    with pytest.raises(ResourceAlreadyExists):
        w.secrets.create_scope(CALLBACK_SCOPE)
    with pytest.raises(ResourceDoesNotExist):
        w.secrets.put_secret("no-such-scope", "k", string_value="v")
    with pytest.raises(InvalidParameterValue):
        w.secrets.create_scope("not a scope name")
    assert CALLBACK_SCOPE in [scope.name for scope in w.secrets.list_scopes()]
    listed = [secret.as_dict() for secret in w.secrets.list_secrets(CALLBACK_SCOPE)]
    assert listed == [{"key": "client-id"}, {"key": "client-secret"}]
