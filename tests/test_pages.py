"""The status pages render what GET /runs/{id} reads, escaped."""

from __future__ import annotations

import re

from tests.harness import Service, sign


def test_run_page_shows_steps_and_updates_live_while_waiting(service: Service) -> None:
    service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "page-run"})
    service.wait_until("page-run", "waiting")

    waiting = service.http.get("/ui/runs/page-run")
    version = re.search(r'data-version="([0-9a-f]+)"', waiting.text)
    assert version is not None, waiting.text
    unchanged = service.http.get("/ui/runs/page-run/live", params={"seen": version[1], "wait": 0})
    service.http.post(
        "/resolve", json={"id": "page-run:1", "value": "<b>x</b>", "token": sign(service.http, "page-run:1")}
    )
    # The long-poll answers once the run changed, without waiting out its 20 s.
    changed = service.http.get("/ui/runs/page-run/live", params={"seen": version[1], "wait": 20})
    service.wait_for("page-run")
    final = service.http.get("/ui/runs/page-run/live", params={"seen": changed.headers["x-dara-version"], "wait": 20})
    done = service.http.get("/ui/runs/page-run")
    index = service.http.get("/ui")

    assert waiting.status_code == 200 and 'http-equiv="refresh"' not in waiting.text
    assert (
        'data-live="/ui/runs/page-run/live"' in waiting.text and 'data-action="/runs/page-run/cancel"' in waiting.text
    )
    assert "page-run:1" in waiting.text and "waiting" in waiting.text
    assert unchanged.status_code == 204 and unchanged.content == b""
    assert changed.status_code == 200 and changed.headers["x-dara-version"] != version[1]
    assert final.status_code == 200 and final.headers.get("x-dara-final") == "true" and 'class="s done"' in final.text
    assert "data-live" not in done.text and "data-action" not in done.text and 'class="s done"' in done.text
    assert "&lt;b&gt;x&lt;/b&gt;" in done.text and "<b>x</b>" not in done.text
    assert 'href="/ui/runs/page-run"' in index.text
    for missing in (service.http.get("/ui/runs/missing"), service.http.get("/ui/runs/missing/live")):
        assert missing.status_code == 404, missing.text
        assert missing.json()["detail"] == "no run 'missing'"


def test_a_waiting_run_offers_cancel_and_repair_where_the_workspace_can_repair() -> None:
    """The run page's buttons post to the run's cancel and repair routes; the embedded
    workspace cannot repair, so its runs get no repair button, and a finished run gets none."""
    from datetime import UTC, datetime

    from app.console.run_view import run_fragment
    from app.services.run_status import RunView

    now = datetime.now(UTC)
    waiting = RunView.model_validate(
        {
            "id": "r1",
            "pipeline": "notebook_job",
            "status": "waiting",
            "started_by": "ada",
            "incarnation": "i",
            "params": {},
            "progress": {"done": 0, "seen": 1},
            "started_at": now,
            "elapsed_seconds": 1.0,
            "deadline": now,
        }
    )
    done = waiting.model_copy(update={"status": "done", "finished_at": now})

    on_databricks = run_fragment(waiting, now=now)
    on_embedded = run_fragment(waiting, now=now, embedded=True)

    assert 'data-action="/runs/r1/cancel"' in on_databricks and 'data-action="/runs/r1/repair"' in on_databricks
    assert 'data-action="/runs/r1/cancel"' in on_embedded and "/repair" not in on_embedded
    assert "data-action" not in run_fragment(done, now=now)
