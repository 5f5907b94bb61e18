"""The ``resonate`` CLI's client side, for tests: the requests it sends, what it prints.

A line-for-line rendition of the Resonate server v0.9.8's ``src/cli.rs`` (the CLI is
that binary, and no Rust toolchain here can build it): every command is one ``POST
{server}/`` of ``build_envelope(kind, corrId, token, data)``, with the token also as
``Authorization: Bearer``; an answer whose ``head.status`` is 2xx prints its ``data``
pretty (``serde_json::to_string_pretty``: two spaces, keys sorted), anything else
prints ``Error: <data as JSON>`` and exits 1. ``tree`` pages through ``promise.search``
on ``resonate:origin`` 100 at a time and prints ``print_tree``'s drawing.
"""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Printed:
    """What a command printed and its exit code; ``data`` is the answer's data."""

    out: str
    code: int
    data: Any


class ResonateCli:
    def __init__(self, http: httpx.Client, server: str, token: str | None = None) -> None:
        self.http = http
        self.server = server  # -S
        self.token = token  # -T

    # -- src/cli.rs: build_envelope, post -----------------------------------------

    def request(self, kind: str, data: Any) -> dict[str, Any]:
        head: dict[str, Any] = {
            "corrId": f"cli-{time.time_ns() // 1_000_000}-{time.time_ns() % 1_000_000}",
            "version": "2026-04-01",
        }
        if self.token is not None:
            head["auth"] = self.token
        return {"kind": kind, "head": head, "data": data}

    def post(self, kind: str, data: Any) -> tuple[bool, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token is not None else {}
        answer = self.http.post(f"{self.server.rstrip('/')}/", json=self.request(kind, data), headers=headers).json()
        status = answer["head"]["status"] if isinstance(answer["head"].get("status"), int) else 0
        return 200 <= status < 300, answer["data"]

    def run(self, kind: str, data: Any) -> Printed:
        ok, answer = self.post(kind, data)
        if ok:
            return Printed(json.dumps(answer, indent=2, sort_keys=True, ensure_ascii=False), 0, answer)
        return Printed(f"Error: {json.dumps(answer, ensure_ascii=False)}", 1, answer)

    # -- resonate promises ... --------------------------------------------------------

    def get(self, promise_id: str) -> Printed:
        return self.run("promise.get", {"id": promise_id})

    def search(
        self, state: str | None = None, tags: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Printed:
        data: dict[str, Any] = {"limit": limit}
        if state is not None:
            data["state"] = state
        if cursor is not None:
            data["cursor"] = cursor
        if tags is not None:
            data["tags"] = json.loads(tags)
        return self.run("promise.search", data)

    def resolve(self, promise_id: str, value: str | None = None) -> Printed:
        return self.settle(promise_id, "resolved", value)

    def reject(self, promise_id: str, value: str | None = None) -> Printed:
        return self.settle(promise_id, "rejected", value)

    def cancel(self, promise_id: str, value: str | None = None) -> Printed:
        return self.settle(promise_id, "rejected_canceled", value)

    def settle(self, promise_id: str, state: str, value: str | None) -> Printed:
        data: dict[str, Any] = {"id": promise_id, "state": state}
        if value is not None:
            data["value"] = b64_encode_data_field(json.loads(value))
        return self.run("promise.settle", data)

    def create(self, promise_id: str, timeout_ms: int, param: str | None = None, tags: str | None = None) -> Printed:
        data: dict[str, Any] = {"id": promise_id, "timeoutAt": time.time_ns() // 1_000_000 + timeout_ms}
        if param is not None:
            data["param"] = b64_encode_data_field(json.loads(param))
        if tags is not None:
            data["tags"] = json.loads(tags)
        return self.run("promise.create", data)

    def task_get(self, task_id: str) -> Printed:
        return self.run("task.get", {"id": task_id})

    # -- resonate tree ------------------------------------------------------------

    def tree(self, root_id: str) -> Printed:
        promises: list[dict[str, Any]] = []
        cursor = None
        while True:
            data: dict[str, Any] = {"limit": 100, "tags": {"resonate:origin": root_id}}
            if cursor is not None:
                data["cursor"] = cursor
            ok, page = self.post("promise.search", data)
            if not ok:
                return Printed(f"Error: {json.dumps(page, ensure_ascii=False)}", 1, page)
            promises.extend(page.get("promises") or [])
            cursor = page.get("cursor") if isinstance(page.get("cursor"), str) else None
            if cursor is None:
                break
        root: dict[str, Any] = {"id": root_id}
        children: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for promise in promises:
            if promise["id"] == root_id:
                root = promise
            parent = (promise.get("tags") or {}).get("resonate:parent")
            if isinstance(parent, str) and parent != promise["id"]:
                children[parent].append(promise)
        for kids in children.values():
            kids.sort(key=lambda p: p.get("createdAt") or 0)  # stable, as Rust's sort_by_key
        lines: list[str] = []
        _print_tree(root, children, "", True, True, lines)
        return Printed("\n".join(lines), 0, promises)


def b64_encode_data_field(value: Any) -> Any:
    """``b64_encode_data_field``: ``data`` as it was typed (a string's own text), in base64."""
    if isinstance(value, dict) and "data" in value:
        raw = (
            value["data"]
            if isinstance(value["data"], str)
            else json.dumps(value["data"], separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        )
        value["data"] = base64.b64encode(raw.encode()).decode()
    return value


_STATUS = {
    "pending": " 🟡",
    "resolved": " 🟢",
    "rejected": " 🔴",
    "rejected_canceled": " 🔴",
    "rejected_timedout": " 🔴",
}


def _print_tree(
    promise: dict[str, Any],
    children: dict[str, list[dict[str, Any]]],
    prefix: str,
    is_last: bool,
    is_root: bool,
    lines: list[str],
) -> None:
    promise_id = promise.get("id", "<unknown>")
    status = _STATUS.get(promise.get("state", ""), "")
    connector = "" if is_root else ("└── " if is_last else "├── ")
    lines.append(f"{prefix}{connector}{promise_id}{status} {_detail(promise)}")
    kids = children.get(promise_id, [])
    for index, child in enumerate(kids):
        new_prefix = prefix if is_root else prefix + ("    " if is_last else "│   ")
        _print_tree(child, children, new_prefix, index == len(kids) - 1, False, lines)


def _detail(promise: dict[str, Any]) -> str:
    """``promise_detail``: sleep, or rpc/run and the function decoded from ``param.data``."""
    tags = promise.get("tags") or {}
    func = ""
    try:
        decoded = json.loads(base64.b64decode((promise.get("param") or {}).get("data") or "", validate=True))
        if isinstance(decoded, dict) and isinstance(decoded.get("func"), str):
            func = f" {decoded['func']}"
    except ValueError:
        pass
    if tags.get("resonate:timer"):
        return "(sleep)"
    if tags.get("resonate:scope") == "global":
        return f"(rpc{func})"
    if tags.get("resonate:scope") == "local":
        return f"(run{func})"
    return ""
