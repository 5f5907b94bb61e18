"""A flood: many clients start and settle runs at once, on embedded defaults.

1,000 runs of ``waits_for_callback``. Every id is started twice and resolved twice, all
requests shuffled together and sent with bounded concurrency, so starts race starts,
resolves race resolves, and a resolve often arrives before its run's promise exists.
That early resolve is a 404, which a client retries (a notebook cannot race like this:
it learns the promise id from the run that created it). Nothing may be a 5xx, no run
may be lost or started twice, and the first resolve of each run must win.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.harness import Service, callback_token

#: Runs in the flood; DARA_FLOOD_RUNS overrides it for a quicker local run.
RUNS = int(os.environ.get("DARA_FLOOD_RUNS", "1000"))
#: Requests in flight at once.
CONCURRENCY = 64
#: How long a resolve that got a 404 keeps trying, once its run's start was answered,
#: before the test calls the callback lost.
RESOLVE_PATIENCE = 30.0


@pytest.mark.anyio
async def test_a_thousand_concurrent_starts_and_resolves(service: Service) -> None:
    ids = [f"flood-{n}" for n in range(RUNS)]
    starts: dict[str, list[int]] = defaultdict(list)
    answered: dict[str, float] = {}  # when the first start of each id was answered
    resolves: dict[str, list[dict[str, Any]]] = defaultdict(list)
    early: dict[str, int] = defaultdict(int)  # resolves answered 404: the run was not there yet
    failures: list[str] = []
    gate = asyncio.Semaphore(CONCURRENCY)

    async def send(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async with gate:
            response = await http.request(method, url, **kwargs)
        if response.status_code >= 500:
            failures.append(f"{method} {url} {kwargs.get('json')}: {response.status_code} {response.text}")
        return response

    async def start(http: httpx.AsyncClient, run_id: str) -> None:
        body = {"pipeline": "waits_for_callback", "id": run_id}
        starts[run_id].append((await send(http, "POST", "/runs", json=body)).status_code)
        answered.setdefault(run_id, time.monotonic())

    async def resolve(http: httpx.AsyncClient, run_id: str, value: Any) -> None:
        promise = f"{run_id}:1"
        delay = 0.01

        async def token() -> str | None:
            """The notebook's token: bound to the run's incarnation, known once it started."""
            found = await send(http, "GET", f"/runs/{run_id}")
            return callback_token(promise, found.json()["incarnation"]) if found.status_code == 200 else None

        while (signed := await token()) is None or (
            response := await send(http, "POST", "/resolve", json={"id": promise, "value": value, "token": signed})
        ).status_code == 404:
            early[run_id] += 1
            if run_id in answered and time.monotonic() > answered[run_id] + RESOLVE_PATIENCE:
                failures.append(f"{promise} still unknown {RESOLVE_PATIENCE}s after its run started")
                return
            await asyncio.sleep(delay)  # a client's back-off before asking again
            delay = min(delay * 2, 0.5)
        if response.status_code == 409:  # the other copy won: this value was not taken
            resolves[run_id].append({"already_settled": True, "state": "resolved", "sent": value})
            return
        if response.status_code != 200:
            failures.append(f"resolve {promise}: {response.status_code} {response.text}")
            return
        resolves[run_id].append(response.json() | {"sent": value})

    requests: list[tuple[str, str, int]] = [
        (kind, run_id, copy) for run_id in ids for kind in ("start", "resolve") for copy in (0, 1)
    ]
    random.Random(5).shuffle(requests)
    began = time.monotonic()
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them, so no
    # request goes out on a connection the server is closing.
    limits = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=service.url, timeout=60, limits=limits) as http:
        await asyncio.gather(
            *(
                start(http, run_id) if kind == "start" else resolve(http, run_id, {"run": run_id, "copy": copy})
                for kind, run_id, copy in requests
            )
        )
        flooded = time.monotonic() - began
        listed: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"pipeline": "waits_for_callback", "limit": 100}
            if cursor is not None:
                params["cursor"] = cursor
            page = (await send(http, "GET", "/runs", params=params)).json()
            for run in page["runs"]:
                if run["id"].startswith("flood-"):
                    assert run["id"] not in listed, f"{run['id']} is listed twice"
                    listed[run["id"]] = run
            if (cursor := page["next_cursor"]) is None:
                break
        # A listing carries no results: read each run, waiting for one whose resolve was
        # just answered and that may still be finishing.
        for response in await asyncio.gather(
            *(send(http, "GET", f"/runs/{run_id}", params={"wait": 30}) for run_id in listed)
        ):
            listed[response.json()["id"]] = response.json()
    total = time.monotonic() - began
    print(
        f"\n{RUNS} runs: {4 * RUNS + sum(early.values())} requests (of which {sum(early.values())} early "
        f"resolves retried) in {flooded:.1f}s; listed and checked by {total:.1f}s"
    )

    assert failures == []
    # Each id was started (201) and every repeat found it (200) -- though two starts
    # that race can both be told 201: see test_two_racing_starts_of_one_id_create_it_once.
    assert all(201 in starts[run_id] and set(starts[run_id]) <= {200, 201} for run_id in ids), starts
    # The first resolve won, the second was told so; the run returned the winner's value.
    assert sorted(listed) == sorted(ids)  # nothing lost, nothing twice
    for run_id in ids:
        [won] = [r for r in resolves[run_id] if not r["already_settled"]]
        [lost] = [r for r in resolves[run_id] if r["already_settled"]]
        assert won["state"] == lost["state"] == "resolved", resolves[run_id]
        run = listed[run_id]
        assert (run["status"], run["result"]) == ("done", won["sent"]), run


def test_two_racing_starts_of_one_id_are_told_apart(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting an id that exists returns it with 200 (README: "never a second
    pipeline"); a client may rely on 201 meaning "you started it".

    The race is forced, not hoped for: both requests create the run before either
    reads it back. Each start is held right after its create until the other's create
    has returned too, so both reach the read-back with the run already there; only the
    one whose incarnation the run carries is told 201. Nothing in this process orders
    them, so the same holds for two workers on one backend.
    """
    runtime = service.runtime
    created = 0
    both_created = asyncio.Event()
    real_start_run = runtime.start_run

    async def start_run_held(run_id: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal created
        facts = await real_start_run(run_id, *args, **kwargs)
        if run_id == "race":
            created += 1
            if created == 2:
                both_created.set()
            await asyncio.wait_for(both_created.wait(), 20)  # TimeoutError: the other never started
        return facts

    monkeypatch.setattr(runtime, "start_run", start_run_held)
    body = {"pipeline": "waits_for_callback", "id": "race"}

    def post(_: int) -> int:
        with httpx.Client(base_url=service.url, timeout=60) as http:
            return http.post("/runs", json=body).status_code

    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(post, range(2)))

    assert created == 2, "both starts must have created before reading back"
    assert codes == [200, 201]
