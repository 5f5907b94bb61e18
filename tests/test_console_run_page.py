"""The run page tells the truth about a run with a Databricks job: its progress counts
the rows of its timeline, and its watcher is shown apart, as what it is doing -- never
as a step "resolved" with the result "waiting"."""

from __future__ import annotations

import re

from tests.harness import Service


def test_progress_counts_the_timeline_and_the_watcher_says_what_it_does(service: Service) -> None:
    service.http.post("/runs", json={"pipeline": "notebook_job", "id": "truthful", "params": {"job": "dara-demo"}})
    run = service.wait_for("truthful")
    page = service.http.get("/ui/runs/truthful").text
    timeline = page.split('<table class="timeline">', 1)[1].split("</table>", 1)[0]
    watchers = page.split('<table class="watchers">', 1)[1].split("</table>", 1)[0]
    progress = re.search(r'<span class="progress">(\d+) of (\d+) steps and waits done</span>', page)
    watcher_labels = re.findall(r'<span class="s [a-z_]+">([^<]+)</span>', watchers)

    assert run["status"] == "done"
    assert progress is not None and progress[1] == progress[2] == str(timeline.count('<tr class="step">'))
    assert [s["kind"] for s in run["steps"]].count("watcher") == len(watcher_labels) == 1
    assert "dara.watch_run" not in timeline
    assert watcher_labels[0] not in ("resolved", "waiting", "pending")
    assert watcher_labels[0].startswith(("watching", "saw the Databricks run end", "stopped"))
