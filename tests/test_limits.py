"""Every limit on a request gives a clear 4xx that names the limit (and its setting):
body size, declared or streamed; id length and characters; JSON nesting depth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pydantic
import pytest

from app.limits import json_depth
from tests.harness import Service, make_settings, running_service, sign

MAX_BYTES = 64 * 1024
MAX_DEPTH = 32  # the default


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = make_settings(tmp_path_factory.mktemp("limits"), deploy_on_start=False, max_value_bytes=MAX_BYTES)
    with running_service(settings) as svc:
        yield svc


def nested(depth: int) -> object:
    """A JSON value whose arrays nest ``depth`` deep (0: a scalar)."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def waiting(service: Service, run_id: str) -> str:
    response = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": run_id})
    assert response.status_code == 201, response.text
    service.wait_until(run_id, "waiting")
    return f"{run_id}:1"


def chunks(body: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def too_big_json() -> bytes:
    return json.dumps({"pipeline": "waits_for_callback", "params": {"pad": "x" * MAX_BYTES}}).encode()


def multipart(file_bytes: bytes) -> tuple[bytes, str]:
    boundary = "dara-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (("volume_path", "/Volumes/main/default/landing/a.csv"), ("job", "j"))
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'.encode()
        + file_bytes
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# -- body size -------------------------------------------------------------------------


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.json()["detail"].startswith(f"request body over {MAX_BYTES} bytes (DARA_MAX_VALUE_BYTES)")


def test_a_body_declared_too_large_is_refused_before_it_is_read(limited: Service) -> None:
    body = too_big_json()

    response = limited.http.post("/runs", content=body, headers={"content-type": "application/json"})

    assert response.request.headers["content-length"] == str(len(body))
    assert_too_large(response)


def test_a_streamed_json_body_without_content_length_is_counted(limited: Service) -> None:
    response = limited.http.post("/runs", content=chunks(too_big_json()), headers={"content-type": "application/json"})

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_too_large(response)


@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "chunked"])
def test_an_upload_over_the_limit_is_refused_declared_or_streamed(limited: Service, streamed: bool) -> None:
    body, content_type = multipart(b"x" * MAX_BYTES)

    response = limited.http.post(
        "/runs/upload_and_process", content=chunks(body) if streamed else body, headers={"content-type": content_type}
    )

    assert ("content-length" not in response.request.headers) is streamed
    assert_too_large(response)


def test_a_streamed_body_under_the_limit_goes_through_whole(limited: Service) -> None:
    body = json.dumps({"pipeline": "waits_for_callback", "id": "lim-chunked", "params": {}}).encode()

    response = limited.http.post("/runs", content=chunks(body, 7), headers={"content-type": "application/json"})

    assert response.status_code == 201, response.text
    assert response.json()["id"] == "lim-chunked"


def test_a_body_of_exactly_the_limit_is_not_too_large(limited: Service) -> None:
    start = b'{"pipeline": "nope", "params": {"pad": "'
    body = start + b"x" * (MAX_BYTES - len(start) - 3) + b'"}}'
    assert len(body) == MAX_BYTES

    response = limited.http.post("/runs", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 404, response.text  # read and routed: the pipeline is unknown
    assert response.json()["detail"].startswith("no pipeline named 'nope'; known: "), response.text


# -- ids -----------------------------------------------------------------------------------

LONGEST = "a" * 128


def id_requests(run_id: str) -> list[tuple[str, str, dict]]:
    """The same id sent every way a run id travels: body, path, query, form, promise id."""
    segment = quote(run_id, safe="")
    requests = [
        ("post", "/runs", {"json": {"pipeline": "waits_for_callback", "id": run_id}}),
        ("get", "/run", {"params": {"id": run_id}}),
        (
            "post",
            "/runs/upload_and_process",
            {"files": {"file": ("a.csv", b"x")}, "data": {"id": run_id, "volume_path": "/Volumes/a/b/c/d", "job": "j"}},
        ),
    ]
    if ":" not in run_id:  # "a:b:1" is a well-formed promise id (of run "a"): the token decides
        requests += [
            ("post", "/resolve", {"json": {"id": f"{run_id}:1", "value": 1, "token": "t"}}),
            ("post", "/reject", {"json": {"id": f"{run_id}:1", "error": "e", "token": "t"}}),
        ]
    if run_id != ".." and "/" not in run_id:  # as path segments these are other URLs (404)
        requests += [("get", f"/runs/{segment}", {}), ("post", f"/runs/{segment}/cancel", {})]
    return requests


@pytest.mark.parametrize(("method", "path", "kwargs"), id_requests(LONGEST + "a"), ids=lambda v: str(v)[:30])
def test_an_id_over_128_characters_is_refused_by_its_pattern(
    limited: Service, method: str, path: str, kwargs: dict
) -> None:
    response = getattr(limited.http, method)(path, **kwargs)

    assert response.status_code == 422, response.text
    assert "should match pattern" in response.text
    assert "{0,127}" in response.text  # the pattern, which says how long an id may be


def test_an_id_of_128_characters_is_fine(limited: Service) -> None:
    started = limited.http.post("/runs", json={"pipeline": "waits_for_callback", "id": LONGEST})
    assert started.status_code == 201, started.text
    assert started.json()["id"] == LONGEST
    assert limited.http.get(f"/runs/{LONGEST}").json()["id"] == LONGEST


BAD_IDS = {
    "colon": "a:b",  # Resonate's separator of child promise ids
    "space": "a b",
    "slash": "a/b",
    "leading-dash": "-a",
    "leading-dot": ".a",
    "dot-dot": "..",
    "non-ascii": "caf\u00e9",
    "percent": "a%2Fb",
    "newline": "a\nb",
}


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_an_id_with_other_characters_is_refused_by_its_pattern(limited: Service, bad: str) -> None:
    for method, path, kwargs in id_requests(bad):
        response = getattr(limited.http, method)(path, **kwargs)

        assert response.status_code == 422, (method, path, response.text)
        assert "should match pattern '^[A-Za-z0-9]" in response.text, response.text


# -- JSON nesting ----------------------------------------------------------------------


def assert_too_deep(response: httpx.Response, depth: int) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"JSON nested {depth} levels deep, over the limit of {MAX_DEPTH} (DARA_MAX_JSON_DEPTH)" in detail


def test_pipeline_params_nested_too_deep_are_refused(limited: Service) -> None:
    body = {"pipeline": "waits_for_callback", "id": "lim-deep-params", "params": {"x": nested(MAX_DEPTH)}}

    response = limited.http.post("/runs", json=body)

    assert_too_deep(response, MAX_DEPTH + 2)  # the body, params, then the value
    never_started = limited.http.get("/runs/lim-deep-params")
    assert never_started.status_code == 404, never_started.text
    assert never_started.json()["detail"].startswith("no run 'lim-deep-params'")


def test_a_resolve_value_nested_too_deep_is_refused_and_the_wait_goes_on(limited: Service) -> None:
    promise = waiting(limited, "lim-deep-value")

    response = limited.http.post(
        "/resolve", json={"id": promise, "value": nested(MAX_DEPTH), "token": sign(limited.http, promise)}
    )

    assert_too_deep(response, MAX_DEPTH + 1)
    assert limited.http.get("/runs/lim-deep-value").json()["status"] == "waiting"


def test_a_resolve_value_at_the_limit_round_trips(limited: Service) -> None:
    """The limit leaves room to show the value: GET /runs/{id} nests it a few levels deeper."""
    promise = waiting(limited, "lim-deepest-value")
    value = nested(MAX_DEPTH - 1)  # the body is one level more

    response = limited.http.post("/resolve", json={"id": promise, "value": value, "token": sign(limited.http, promise)})

    assert response.json() == {"id": promise, "state": "resolved", "already_settled": False}, response.text
    run = limited.wait_for("lim-deepest-value")
    assert (run["status"], run["result"]) == ("done", value)


def test_a_body_nested_far_too_deep_is_a_clear_422_not_a_parse_error(limited: Service) -> None:
    depth = 30_000
    body = b"[" * depth + b"]" * depth

    response = limited.http.post("/runs", content=body, headers={"content-type": "application/json"})

    assert_too_deep(response, depth)


def test_a_body_without_a_content_type_is_checked_too(limited: Service) -> None:
    """FastAPI parses such a body as JSON, so the limit applies to it as well."""
    body = json.dumps({"pipeline": "waits_for_callback", "params": {"x": nested(MAX_DEPTH)}}).encode()

    response = limited.http.post("/runs", content=body, headers={"content-type": ""})

    assert_too_deep(response, MAX_DEPTH + 2)


def test_brackets_inside_strings_do_not_count(limited: Service) -> None:
    promise = waiting(limited, "lim-brackets")
    value = {"text": "[{" * 500 + '\\"[' * 100}

    response = limited.http.post("/resolve", json={"id": promise, "value": value, "token": sign(limited.http, promise)})

    assert response.json() == {"id": promise, "state": "resolved", "already_settled": False}, response.text
    assert limited.wait_for("lim-brackets")["result"] == value


def test_a_body_that_is_not_utf8_is_a_clear_422(limited: Service) -> None:
    response = limited.http.post("/runs", content=b'{"pipeline": "\xff"}', headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "request body: not valid utf-8 at byte 14; send JSON encoded as UTF-8"


def test_a_utf16_body_is_measured_as_text(limited: Service) -> None:
    """JSON may come as UTF-16 (by its BOM), which FastAPI reads: the depth counts its text."""
    fine = json.dumps({"pipeline": "waits_for_callback", "id": "lim-utf16"}).encode("utf-16")
    deep = json.dumps({"pipeline": "waits_for_callback", "params": {"x": nested(MAX_DEPTH)}}).encode("utf-16")

    started = limited.http.post("/runs", content=fine, headers={"content-type": "application/json"})
    refused = limited.http.post("/runs", content=deep, headers={"content-type": "application/json"})

    assert started.status_code == 201, started.text
    assert started.json()["id"] == "lim-utf16"
    assert_too_deep(refused, MAX_DEPTH + 2)


def test_a_resolve_value_in_the_query_nested_too_deep_is_refused(limited: Service) -> None:
    promise = waiting(limited, "lim-deep-query")

    response = limited.http.post(
        "/resolve",
        params={"id": promise, "value": json.dumps(nested(MAX_DEPTH + 1)), "token": sign(limited.http, promise)},
    )

    assert response.status_code == 422, response.text
    assert "value: JSON nested 33 levels deep, over the limit of 32 (DARA_MAX_JSON_DEPTH)" in response.json()["detail"]
    assert limited.http.get("/runs/lim-deep-query").json()["status"] == "waiting"


def test_upload_params_nested_too_deep_are_refused(limited: Service) -> None:
    response = limited.http.post(
        "/runs/upload_and_process",
        files={"file": ("a.csv", b"x")},
        data={"volume_path": "/Volumes/a/b/c/d.csv", "job": "j", "params": '{"x": ' + "[" * 2000 + "]" * 2000 + "}"},
    )

    assert response.status_code == 422, response.text
    assert "params: JSON nested 2001 levels deep, over the limit of 32 (DARA_MAX_JSON_DEPTH)" in response.text


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[["', 0),
        ("[]", 1),
        ("{}", 1),
        ('{"a": [{"b": []}]}', 4),
        ("[[], [[]], []]", 3),
        ('["\\"]]]", [["\\\\"]]]', 3),  # escaped quotes and backslashes inside strings
        ("[" * 5000 + "]" * 5000, 5000),
    ],
)
def test_json_depth_counts_nesting_outside_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth
    assert json_depth(text.encode()) == depth


@pytest.mark.parametrize("bad", [0, 201])
def test_the_depth_setting_is_bounded(tmp_path, bad: int) -> None:
    with pytest.raises(pydantic.ValidationError, match="max_json_depth"):
        make_settings(tmp_path, max_json_depth=bad)
