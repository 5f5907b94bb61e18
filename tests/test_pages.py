"""The status pages render what GET /runs/{id} reads, escaped."""

from __future__ import annotations

from tests.harness import Service, sign


def test_run_page_shows_steps_and_refreshes_while_waiting(service: Service) -> None:
    service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "page-run"})
    service.wait_until("page-run", "waiting")

    waiting = service.http.get("/ui/runs/page-run")
    service.http.post("/resolve", json={"id": "page-run:1", "value": "<b>x</b>", "token": sign(service.http, "page-run:1")})
    service.wait_for("page-run")
    done = service.http.get("/ui/runs/page-run")
    index = service.http.get("/ui")

    assert waiting.status_code == 200 and 'http-equiv="refresh"' in waiting.text
    assert "page-run:1" in waiting.text and "waiting" in waiting.text
    assert "refresh" not in done.text and 'class="s done"' in done.text
    assert "&lt;b&gt;x&lt;/b&gt;" in done.text and "<b>x</b>" not in done.text
    assert 'href="/ui/runs/page-run"' in index.text
    assert service.http.get("/ui/runs/missing").status_code == 404
