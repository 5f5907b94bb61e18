"""What a browser may make of DARA (app/http_guard.py): it answers only to its own host
names (DNS rebinding), refuses state-changing requests from other sites (CSRF, which
matters most with the API open), and every answer carries headers that keep its pages
to themselves. Real HTTP against the running service."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import Service, make_settings, running_service

EVIL = "https://evil.example"
STRICT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: The console's pages: DARA's own script and style files, nothing inline, no other host.
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
CROSS_SITE = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}


@pytest.fixture(scope="module")
def open_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """No DARA_API_TOKEN: the API is open, so the browser checks are all there is."""
    with running_service(make_settings(tmp_path_factory.mktemp("open"), deploy_on_start=False)) as svc:
        yield svc


@pytest.fixture(scope="module")
def named_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = make_settings(
        tmp_path_factory.mktemp("named"),
        deploy_on_start=False,
        allowed_hosts="dara.example.com, tools.example.com:8443",
    )
    with running_service(settings) as svc:
        yield svc


@pytest.fixture(scope="module")
def any_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = make_settings(tmp_path_factory.mktemp("any"), deploy_on_start=False, allowed_hosts="*")
    with running_service(settings) as svc:
        yield svc


def port(service: Service) -> int:
    return int(service.url.rsplit(":", 1)[1])


def assert_not_started(service: Service, run_id: str) -> None:
    assert service.http.get(f"/runs/{run_id}").status_code == 404


# -- hosts -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_foreign_host_is_refused(open_service: Service, method: str) -> None:
    response = open_service.http.request(method, "/runs", headers={"Host": "evil.example:8000"})

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "'evil.example:8000' is not allowed" in detail
    assert "add it to DARA_ALLOWED_HOSTS" in detail
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_request_without_a_host_is_refused(open_service: Service) -> None:
    """HTTP/1.0 may leave Host out; httpx will not, so the request is written by hand."""
    with socket.create_connection(("127.0.0.1", port(open_service)), timeout=10) as sock:
        sock.sendall(b"GET /runs HTTP/1.0\r\n\r\n")
        answer = b"".join(iter(lambda: sock.recv(65536), b""))

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert json.loads(body)["detail"].startswith("no Host header")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LOCALHOST:{port}",
        "localhost.:{port}",
        "[::1]:{port}",
        "[::1]",
        "127.0.0.1",
    ],
)
def test_loopback_names_are_allowed_on_any_port(open_service: Service, host: str) -> None:
    response = open_service.http.get("/runs", headers={"Host": host.format(port=port(open_service))})

    assert response.status_code == 200, response.text
    assert "runs" in response.json()  # the listing, not a refusal


@pytest.mark.parametrize(
    ("host", "code"),
    [
        ("dara.example.com", 200),
        ("dara.example.com:9999", 200),  # no port in the entry: any port
        ("tools.example.com:8443", 200),
        ("tools.example.com:9000", 400),  # the entry names its port
        ("tools.example.com", 400),  # port 80
        ("example.com", 400),
        ("evil.dara.example.com", 400),
    ],
)
def test_allowed_hosts_add_names(named_hosts: Service, host: str, code: int) -> None:
    response = named_hosts.http.get("/runs", headers={"Host": host})

    assert response.status_code == code, response.text
    if code == 200:
        assert "runs" in response.json()
    else:
        assert response.json()["detail"].startswith(f"host {host!r} is not allowed: "), response.text
        assert "add it to DARA_ALLOWED_HOSTS" in response.json()["detail"]


def test_a_star_allows_any_host(any_host: Service) -> None:
    response = any_host.http.get("/runs", headers={"Host": "anything.example"})

    assert response.status_code == 200, response.text
    assert "runs" in response.json()


def test_health_answers_probes_on_any_host(open_service: Service) -> None:
    """Probes address a pod by its IP; /health tells nothing worth rebinding for."""
    response = open_service.http.get("/health", headers={"Host": "10.1.2.3:8000"})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_a_redirect_never_points_at_a_foreign_host(open_service: Service, any_host: Service) -> None:
    refused = open_service.http.get("/runs/", headers={"Host": "evil.example"})
    anywhere = any_host.http.get("/runs/", headers={"Host": "evil.example"})
    own = open_service.http.get("/runs/?limit=1")

    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("host 'evil.example' is not allowed: "), refused.text
    assert anywhere.status_code == 307, anywhere.text
    assert anywhere.headers["location"] == "/runs"
    assert own.status_code == 307 and own.headers["location"] == "/runs?limit=1"


# -- cross-site requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},  # a link or an <img> on another site
        {"Sec-Fetch-Site": "same-site"},  # another origin of this site, unnamed
        {"Origin": EVIL},
        {"Origin": "null"},  # a sandboxed frame, a data: URL
        CROSS_SITE,
    ],
    ids=["sec-fetch-cross", "sec-fetch-same-site", "origin", "null-origin", "both"],
)
def test_get_run_from_another_site_starts_nothing(open_service: Service, headers: dict[str, str]) -> None:
    run_id = f"xs-run-{uuid.uuid4().hex[:12]}"

    response = open_service.http.get("/run", params={"id": run_id}, headers=headers)

    assert response.status_code == 403, response.text
    assert response.json()["detail"].startswith("cross-site request refused: GET /run changes state")
    assert_not_started(open_service, run_id)


def test_a_form_posted_from_another_site_cancels_nothing(open_service: Service) -> None:
    open_service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "xs-cancel"}).raise_for_status()
    open_service.wait_until("xs-cancel", "waiting")

    form = open_service.http.post(
        "/runs/xs-cancel/cancel",
        content=b"",
        headers={**CROSS_SITE, "Content-Type": "application/x-www-form-urlencoded"},
    )
    older_browser = open_service.http.post(  # no Sec-Fetch-*, only Origin
        "/runs/xs-cancel/cancel", data={"x": "1"}, headers={"Origin": EVIL}
    )

    assert form.status_code == older_browser.status_code == 403, (form.text, older_browser.text)
    assert "the browser says it comes from another site (Sec-Fetch-Site: cross-site)" in form.json()["detail"]
    assert "origin 'https://evil.example', which is not DARA's" in older_browser.json()["detail"]
    assert open_service.http.get("/runs/xs-cancel").json()["status"] == "waiting"


def test_a_multipart_upload_from_another_site_is_refused_before_it_is_saved(open_service: Service) -> None:
    response = open_service.http.post(
        "/runs/upload_and_process",
        data={"volume_path": "/Volumes/main/default/landing/a.csv", "job": "j", "id": "xs-upload"},
        files={"file": ("a.csv", b"a,b\n1,2\n")},
        headers=CROSS_SITE,
    )

    assert response.status_code == 403, response.text
    assert response.json()["detail"].startswith(
        "cross-site request refused: POST /runs/upload_and_process changes state"
    )
    assert_not_started(open_service, "xs-upload")
    uploads = open_service.runtime.settings.state_dir / "uploads"  # nothing else uploads here
    assert not uploads.exists() or not any(path.is_file() for path in uploads.rglob("*"))


@pytest.mark.parametrize(
    "origin",
    [EVIL, "http://localhost:1", "http://127.0.0.1:1", "null", "http://127.0.0.1:{port}/path", "file://"],
)
def test_a_json_post_from_a_foreign_origin_starts_nothing(open_service: Service, origin: str) -> None:
    run_id = f"xs-json-{uuid.uuid4().hex[:12]}"
    headers = {"Origin": origin.format(port=port(open_service))}

    response = open_service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": run_id}, headers=headers)

    assert response.status_code == 403, response.text
    assert response.json()["detail"].startswith(
        f"cross-site request refused: POST /runs changes state, and it comes from origin {headers['Origin']!r}, "
        "which is not DARA's; send it from DARA's own pages"
    ), response.text
    assert_not_started(open_service, run_id)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, a notebook's urllib, httpx: no browser
        {"Origin": "{url}", "Sec-Fetch-Site": "same-origin"},  # DARA's own pages (/docs)
        {"Origin": "http://localhost:{port}"},  # the same service under its other loopback name
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
    ids=["no-browser", "same-origin", "loopback-alias", "address-bar"],
)
def test_same_origin_and_origin_less_requests_work(open_service: Service, headers: dict[str, str]) -> None:
    filled = {k: v.format(url=open_service.url, port=port(open_service)) for k, v in headers.items()}
    run_id = f"xs-ok-{uuid.uuid4().hex[:12]}"

    started = open_service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": run_id}, headers=filled)
    demo = open_service.http.get("/run", params={"id": f"{run_id}-demo"}, headers=filled)

    assert started.status_code == 201, started.text
    assert started.json()["id"] == run_id
    assert demo.status_code == 200, demo.text
    assert open_service.http.get(f"/runs/{run_id}-demo").json()["id"] == f"{run_id}-demo"


def test_a_named_host_is_an_origin_of_dara(named_hosts: Service) -> None:
    """Behind a proxy that rewrites Host, the browser's Origin is the public name."""
    ok = named_hosts.http.post(
        "/runs",
        json={"pipeline": "waits_for_callback", "id": "xs-named"},
        headers={"Origin": "https://dara.example.com", "Sec-Fetch-Site": "same-origin"},
    )
    wrong_port = named_hosts.http.post(
        "/runs",
        json={"pipeline": "waits_for_callback", "id": "xs-named-2"},
        headers={"Origin": "https://tools.example.com"},
    )

    assert ok.status_code == 201, ok.text
    assert ok.json()["id"] == "xs-named"
    assert wrong_port.status_code == 403
    assert "origin 'https://tools.example.com', which is not DARA's" in wrong_port.json()["detail"]


def test_a_star_does_not_open_the_door_to_other_origins(any_host: Service) -> None:
    """`*` allows any Host; an Origin must still be the host the request addressed."""
    own = any_host.http.post(
        "/runs",
        json={"pipeline": "waits_for_callback", "id": "xs-star"},
        headers={"Host": "dara.internal", "Origin": "http://dara.internal"},
    )
    behind_tls = any_host.http.post(  # TLS ended at a proxy: the browser's origin is https
        "/runs",
        json={"pipeline": "waits_for_callback", "id": "xs-star-tls"},
        headers={"Host": "dara.internal", "Origin": "https://dara.internal"},
    )
    other = any_host.http.post(
        "/runs",
        json={"pipeline": "waits_for_callback", "id": "xs-star-2"},
        headers={"Host": "dara.internal", "Origin": EVIL},
    )

    assert own.status_code == behind_tls.status_code == 201, (own.text, behind_tls.text)
    assert (own.json()["id"], behind_tls.json()["id"]) == ("xs-star", "xs-star-tls")
    assert other.status_code == 403
    assert "origin 'https://evil.example', which is not DARA's" in other.json()["detail"]
    assert_not_started(any_host, "xs-star-2")


def test_reading_from_another_site_is_not_refused(open_service: Service) -> None:
    """A browser keeps a cross-site read's answer from the page (no CORS); only changes are refused."""
    response = open_service.http.get("/runs", headers=CROSS_SITE)

    assert response.status_code == 200, response.text
    assert "runs" in response.json()


def test_the_schema_declares_the_refusals(open_service: Service) -> None:
    paths = open_service.http.get("/openapi.json").json()["paths"]

    assert "403" in paths["/runs"]["post"]["responses"]
    assert "403" in paths["/run"]["get"]["responses"]
    assert "403" not in paths["/runs"]["get"]["responses"]
    assert "application/json" in paths["/runs"]["get"]["responses"]["400"]["content"]


# -- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ui", "/runs", "/runs/missing", "/health", "/openapi.json"])
def test_every_answer_carries_the_security_headers(open_service: Service, path: str) -> None:
    response = open_service.http.get(path)

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == (CONSOLE_CSP if path == "/ui" else STRICT_CSP)


def test_refusals_carry_them_too(open_service: Service) -> None:
    for response in (
        open_service.http.get("/runs", headers={"Host": "evil.example"}),
        open_service.http.post("/runs", json={}, headers=CROSS_SITE),
        open_service.http.post("/runs", content=b"[" * 100),  # BodyLimit's own 422
    ):
        assert response.status_code in (400, 403, 422)
        assert response.headers["content-security-policy"] == STRICT_CSP
        assert response.headers["x-frame-options"] == "DENY"


def csp(response: httpx.Response) -> dict[str, list[str]]:
    return {
        name: values
        for name, *values in (part.split() for part in response.headers["content-security-policy"].split(";"))
    }


def permits(sources: list[str], url: str) -> bool:
    """Whether a CSP source list names this URL (exact file, as this policy does, or its origin)."""
    bare = url.split("?", 1)[0]
    if bare.startswith("/") and not bare.startswith("//"):
        return "'self'" in sources  # a file DARA serves
    origin = "/".join(bare.split("/", 3)[:3])
    return bare in sources or origin in sources


def test_the_docs_policy_permits_exactly_what_swagger_ui_loads(open_service: Service) -> None:
    response = open_service.http.get("/docs")
    html = response.text
    policy = csp(response)
    scripts = re.findall(r'<script src="([^"]+)"', html)
    styles = re.findall(r'<link type="text/css" rel="stylesheet" href="([^"]+)"', html)
    icons = re.findall(r'<link rel="shortcut icon" href="([^"]+)"', html)
    inline = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)

    assert response.status_code == 200 and "SwaggerUIBundle" in html
    assert scripts and styles and icons and len(inline) == 1
    assert all(url.startswith("/static/docs/") for url in scripts + styles + icons)  # DARA's own copies
    assert all(open_service.http.get(url).status_code == 200 for url in scripts + styles + icons)
    assert all(permits(policy["script-src"], url) for url in scripts)
    assert all(permits(policy["style-src"], url) for url in styles)
    assert all(permits(policy["img-src"], url) for url in icons)
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert policy["connect-src"] == ["'self'"]  # the schema, and "Try it out"
    assert policy["default-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["script-src"] == ["'self'", f"'sha256-{digest}'"]  # no other host
    assert not permits(policy["script-src"], "https://cdn.jsdelivr.net/npm/evil/x.js")


def test_the_redoc_policy_permits_its_script_and_worker(open_service: Service) -> None:
    response = open_service.http.get("/redoc")
    policy = csp(response)
    scripts = re.findall(r'<script src="([^"]+)"', response.text)
    styles = re.findall(r'<link href="([^"]+)" rel="stylesheet"', response.text)

    assert response.status_code == 200 and scripts and not styles  # no font stylesheet from Google
    assert all(permits(policy["script-src"], url) for url in scripts)
    assert all(url.startswith("/static/docs/") for url in scripts)  # DARA's own copy
    assert "fonts.googleapis.com" not in response.text and "font-src" not in policy
    assert policy["worker-src"] == ["blob:"]  # ReDoc's search worker


def test_the_console_runs_only_daras_own_script_files(open_service: Service) -> None:
    """The console's pages have no inline script or style: each is a file DARA serves."""
    page = open_service.http.get("/ui").text
    scripts = re.findall(r"<script\b[^>]*>", page)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)

    assert "<style" not in page and " style=" not in page
    assert scripts and all(re.fullmatch(r'<script src="/static/console/[a-z_]+\.js" defer>', tag) for tag in scripts)
    assert styles and all(url.startswith("/static/console/") for url in styles)
    for url in [*styles, *(tag.split('"')[1] for tag in scripts)]:
        assert open_service.http.get(url).status_code == 200, url


def test_a_bad_allowed_host_is_refused_at_start(tmp_path: Path) -> None:
    from app.main import create_app

    with pytest.raises(ValueError, match="DARA_ALLOWED_HOSTS: 'a b' is not a host name"):
        create_app(make_settings(tmp_path, allowed_hosts="ok.example, a b"))
