"""Smaller holes: JSON with half a surrogate pair, token redaction that a percent-encoded
key slipped past, connections that never finish sending, and a /health that named the
workspace's host to anyone."""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.limits import unpaired_surrogate
from app.routers.health import health
from app.security import RedactQueryTokens
from app.server import KEEP_ALIVE_SECONDS, uvicorn_config
from tests.harness import Service, make_settings, running_service

CLIENT_TIMEOUT = 0.5
LONGEST_WAIT = 15  # seconds a test waits for the server to close; far above the timeouts


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(make_settings(tmp_path_factory.mktemp("small"), deploy_on_start=False)) as svc:
        yield svc


# -- unpaired surrogates -----------------------------------------------------------------

SURROGATE_BODY = b'{"pipeline": "notebook_job", "id": "%s", "params": {"job": "\\ud800"}}'


def assert_surrogate_refused(response, what: str) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{what}: a string holds the unpaired surrogate \\ud800"), detail
    assert "not valid Unicode" in detail


def test_a_lone_surrogate_in_a_json_body_is_a_422_not_a_503(plain: Service) -> None:
    response = plain.http.post(
        "/runs", content=SURROGATE_BODY % b"sur-body", headers={"Content-Type": "application/json"}
    )

    assert_surrogate_refused(response, "request body")
    assert plain.http.get("/runs/sur-body").status_code == 404


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (rb'"\ud800"', "\\ud800"),
        (rb'"\uDC00"', "\\udc00"),  # a low one alone
        (rb'"\ude00\ud83d"', "\\ude00"),  # a pair in the wrong order
        (rb'"\ud83d x"', "\\ud83d"),
        (rb'"\ud83d\ude00"', None),  # a pair: one character (U+1F600)
        (rb'"\\ud800"', None),  # an escaped backslash, then text
        (rb'"\\\ud800"', "\\ud800"),  # an escaped backslash, then a surrogate
        (rb'"\u00e9 \u20ac"', None),
        ("\ud800", "\\ud800"),  # raw, in text already decoded
    ],
)
def test_unpaired_surrogate_reads_escapes_as_json_does(text: bytes | str, found: str | None) -> None:
    assert unpaired_surrogate(text) == found


def test_a_surrogate_pair_and_an_escaped_backslash_are_fine(plain: Service) -> None:
    body = b'{"pipeline": "waits_for_callback", "id": "sur-pair", "params": {}, "x": "\\ud83d\\ude00 \\\\ud800"}'

    response = plain.http.post("/runs", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 201, response.text
    assert response.json()["id"] == "sur-pair"


def test_a_lone_surrogate_in_a_resolve_value_is_refused_in_the_body_and_the_query(plain: Service) -> None:
    body = plain.http.post(
        "/resolve",
        content=b'{"id": "sur-res:1", "value": {"a": "\\ud800"}, "token": "x"}',
        headers={"Content-Type": "application/json"},
    )
    query = plain.http.post("/resolve", params={"id": "sur-res:1", "value": '"\\ud800"', "token": "x"})

    assert_surrogate_refused(body, "request body")
    assert_surrogate_refused(query, "value")


def test_a_lone_surrogate_in_upload_params_is_refused(plain: Service) -> None:
    response = plain.http.post(
        "/runs/upload_and_process",
        data={
            "volume_path": "/Volumes/main/default/landing/a.csv",
            "job": "j",
            "id": "sur-upload",
            "params": '{"day": "\\ud800"}',
        },
        files={"file": ("a.csv", b"a\n")},
    )

    assert_surrogate_refused(response, "params")
    assert plain.http.get("/runs/sur-upload").status_code == 404


# -- token redaction in the access log ---------------------------------------------------


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/resolve?id=a:1&token=abc&value=1", "/resolve?id=a:1&token=[redacted]&value=1"),
        ("/resolve?id=a:1&%74oken=abc&value=1", "/resolve?id=a:1&%74oken=[redacted]&value=1"),
        ("/resolve?TOKEN=abc", "/resolve?TOKEN=[redacted]"),
        ("/resolve?%54%6F%4B%65%4E=abc", "/resolve?%54%6F%4B%65%4E=[redacted]"),
        ("/resolve?callback%5Fsignature=abc", "/resolve?callback%5Fsignature=[redacted]"),
        ("/resolve?%2574oken=abc", "/resolve?%2574oken=[redacted]"),  # encoded twice
        ('/resolve?token=a%26b;c%22d"e&v=1', "/resolve?token=[redacted]&v=1"),  # whole, up to &
        ("/resolve?v=1;token=abc&w=2", "/resolve?v=1;token=[redacted]&w=2"),
        ("/resolve?value=token%3Dabc&tokens=1", "/resolve?value=token%3Dabc&tokens=1"),  # not a key
    ],
)
def test_the_access_log_redacts_every_spelling_of_the_secret_keys(path: str, shown: str) -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "POST", path, "1.1", 200),
        None,
    )

    RedactQueryTokens().filter(record)

    assert record.getMessage() == f'127.0.0.1:1 - "POST {shown} HTTP/1.1" 200'


# -- clients that never finish sending ---------------------------------------------------


@pytest.fixture(scope="module", params=["httptools", "h11"])
def impatient(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = make_settings(tmp_path_factory.mktemp("slow"), deploy_on_start=False, client_timeout=CLIENT_TIMEOUT)
    with running_service(settings, http=request.param, timeout_keep_alive=1) as svc:
        yield svc


def connect(service: Service) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(service.url.rsplit(":", 1)[1])))
    sock.settimeout(LONGEST_WAIT)  # a hang fails the test instead of stalling it
    return sock


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it: it
    closed with bytes of ours unread)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_a_request_line_sent_in_part_is_cut_off(impatient: Service) -> None:
    with connect(impatient) as sock:
        sock.sendall(b"GET /hea")

        answer = until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"DARA_CLIENT_TIMEOUT" in answer


def test_headers_dribbled_in_are_cut_off(impatient: Service) -> None:
    """Each byte in time, but the headers never end: the deadline is for the whole."""
    with connect(impatient) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        deadline = time.monotonic() + LONGEST_WAIT
        while time.monotonic() < deadline and not select.select([sock], [], [], 0.1)[0]:
            sock.sendall(b"X-Slow: 1\r\n")  # a line every 0.1 s, until the server answers or closes
        answer = until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 ") or answer == b"", answer  # b"": reset before we read it


def test_a_connection_that_sends_nothing_is_closed(impatient: Service) -> None:
    with connect(impatient) as sock:
        assert until_closed(sock) == b""


def test_a_body_sent_too_slowly_is_cut_off(impatient: Service) -> None:
    with connect(impatient) as sock:
        sock.sendall(
            b"POST /runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"pipeline": '
        )

        answer = until_closed(sock)

    assert answer == b""  # closed: the app, still reading the body, had nothing to answer


def test_an_idle_keep_alive_connection_is_closed(impatient: Service) -> None:
    with connect(impatient) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

        answer = until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_the_timeout_does_not_cut_a_slow_answer(impatient: Service) -> None:
    """Once the request is in, the time is the app's: a long poll outlasts the timeout."""
    impatient.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "slow-poll"}).raise_for_status()
    impatient.wait_until("slow-poll", "waiting")

    polled = impatient.http.get("/runs/slow-poll", params={"wait": CLIENT_TIMEOUT * 3})

    assert polled.status_code == 200
    assert polled.json()["status"] == "waiting"


def test_python_m_app_serves_with_the_same_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import app.__main__ as entry
    import app.server

    settings = make_settings(tmp_path, client_timeout=7)
    served: list[object] = []

    class Server:
        def __init__(self, config: object, *, on_shutdown: object) -> None:
            assert callable(on_shutdown)  # long polls answer as it begins to stop
            self.config, self.started = config, True

        def run(self) -> None:
            served.append(self.config)

    monkeypatch.setattr(entry, "get_settings", lambda: settings)
    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)
    monkeypatch.setattr(logging.getLogger("resonate"), "level", logging.getLogger("resonate").level)
    monkeypatch.setattr(app.server, "DrainingServer", Server)
    entry.main()

    (config,) = served
    expected = uvicorn_config(object(), settings)
    assert config.http.client_timeout == 7  # type: ignore[attr-defined]
    assert config.http.__mro__[1] is expected.http.__mro__[1]  # type: ignore[attr-defined]
    assert config.timeout_keep_alive == KEEP_ALIVE_SECONDS == 5  # type: ignore[attr-defined]
    assert (config.host, config.port) == (settings.host, settings.port)  # type: ignore[attr-defined]


# -- /health ---------------------------------------------------------------------------


def test_health_names_the_kind_of_workspace_not_its_host(plain: Service) -> None:
    response = plain.http.get("/health")
    host = plain.runtime.workspace.config.host

    assert response.json() == {"status": "ok", "resonate": "in-process", "workspace": "embedded"}
    assert host and host not in response.text


def test_health_behind_a_real_workspace_says_databricks_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, databricks_host="https://adb-1234567890.12.azuredatabricks.net")
    workspace = SimpleNamespace(config=SimpleNamespace(host=settings.databricks_host))

    async def no_problem() -> None:
        return None

    runtime = SimpleNamespace(settings=settings, workspace=workspace, backend_problem=no_problem)

    answer = asyncio.run(health(runtime))  # type: ignore[arg-type]

    # exclude_none, as the route answers: `problem` appears only when degraded
    assert answer.model_dump(exclude_none=True) == {"status": "ok", "resonate": "in-process", "workspace": "databricks"}
