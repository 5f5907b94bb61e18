"""Pages that can't be turned on their users (docs/SECURITY.md): links only to the
http(s) URLs DARA builds from the workspace host and ids, and a Content-Security-Policy
on every page. Tried as an attacker who controls a step's or a notebook's value would."""

from __future__ import annotations

import re

from tests.harness import Service, sign

SCRIPT_URL = "javascript:document.title='owned'"


def links(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def test_a_recorded_url_never_becomes_a_link(service: Service) -> None:
    """A step result shaped like a Databricks run, with a javascript: URL, and a
    notebook's callback value likewise: the page links only to DARA's own URL."""
    started = service.http.post(
        "/runs", json={"pipeline": "reports_a_run_then_waits", "id": "page-js", "params": {"url": SCRIPT_URL}}
    )
    assert started.status_code == 201, started.text
    service.wait_until("page-js", "waiting")
    value = {"job_id": 1, "run_id": 2, "url": SCRIPT_URL}
    resolved = service.http.post(
        "/resolve", json={"id": "page-js:2", "value": value, "token": sign(service.http, "page-js:2")}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json() == {"id": "page-js:2", "state": "resolved", "already_settled": False}
    run = service.wait_for("page-js")
    page = service.http.get("/ui/runs/page-js")
    host = service.runtime.workspace_host.rstrip("/")

    # Only the step's run is a Databricks run; the notebook's value is just a value. The
    # embedded workspace has no UI: its runs are linked to DARA's page of them.
    assert host.endswith("/ui/databricks")
    assert [{k: r[k] for k in ("job_id", "run_id", "url")} for r in run["databricks_runs"]] == [
        {"job_id": 7, "run_id": 8, "url": f"{host}/jobs/7/runs/8"}
    ]
    assert 'href="/ui/databricks/runs/8"' in page.text
    assert not any(link.lower().lstrip().startswith("javascript") for link in links(page.text))
    assert all(link.startswith(("/", "http://", "https://")) for link in links(page.text)), links(page.text)
    assert "javascript:" in page.text  # shown, escaped, as the data it is


def test_every_page_carries_a_content_security_policy(service: Service) -> None:
    """No script may run on DARA's pages even if markup got through: CSP forbids it."""
    service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "page-csp"}).raise_for_status()
    for path in ("/ui", "/ui/runs/page-csp", "/ui/runs/missing-run"):
        response = service.http.get(path)
        policy = response.headers.get("content-security-policy", "")
        # Scripts only from DARA's own files: nothing inline, no other host.
        assert "script-src 'self';" in policy and "unsafe" not in policy, (path, policy)
        assert "default-src 'none'" in policy, (path, policy)
        assert "frame-ancestors 'none'" in policy, (path, policy)
        assert response.headers.get("x-content-type-options") == "nosniff", path
