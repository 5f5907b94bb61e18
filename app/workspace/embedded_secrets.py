"""The Secrets API for the embedded workspace, so notebooks read ``dbutils.secrets`` there too.

brickhouse 0.1.0 gives notebooks ``dbutils.secrets.get`` from an in-memory provider
(``WorkspaceContext.secret_provider``) that an embedding application fills and grants
per job, but it serves no REST route to fill it. The callback cell gets the client id
and secret of the service principal that calls DARA through the Databricks Apps proxy
from a secret scope, so without these routes it could only be tried against a real
workspace. This module answers the Secrets API 2.0 subset an operator uses to set up
that scope -- ``secrets/scopes/create``, ``scopes/list``, ``secrets/put`` and
``secrets/list`` -- with the errors Databricks gives, so the same
``databricks secrets ...`` commands and databricks-sdk calls work against both.

Access: on Databricks a scope's ACLs name principals, and a job reads what its run-as
identity may read. Everything in the embedded workspace runs as its one local user,
who created (and so manages) every scope, so every job may read every scope: the
provider's per-job grant is made for each run as it starts. Values stay in the
provider's memory, as brickhouse intends: they are gone when the service stops, and
never written to the workspace's files. No answer repeats a value.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from brickhouse.api.catalog import ApiResponse
from brickhouse.runtime.secrets import SecretProvider, SecretProviderError

PREFIX = "/api/2.0/secrets/"
#: Scope and key names, as Databricks and brickhouse's provider both accept them.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def serve_secrets(jobs_api: Any, provider: SecretProvider) -> None:
    """Answer the Secrets API on brickhouse's Jobs API dispatch, storing into ``provider``."""
    dispatch = jobs_api.dispatch
    store = _Scopes(provider)

    def dispatch_with_secrets(method: str, target: str, body: dict[str, object] | None = None) -> ApiResponse | None:
        parsed = urlsplit(target)
        if not parsed.path.startswith(PREFIX):
            return dispatch(method, target, body)
        route = (method, parsed.path.removeprefix(PREFIX))
        query = {key: values[0] for key, values in parse_qs(parsed.query).items()}
        handler: Callable[[Any], ApiResponse] | None = {
            ("POST", "scopes/create"): store.create_scope,
            ("GET", "scopes/list"): store.list_scopes,
            ("POST", "put"): store.put,
            ("GET", "list"): store.list_keys,
        }.get(route)
        if handler is None:
            return _error(
                HTTPStatus.NOT_IMPLEMENTED,
                "NOT_IMPLEMENTED",
                f"{method} {parsed.path} is not served by the embedded workspace",
            )
        try:
            return handler(body if method == "POST" else query)
        except (SecretProviderError, ValueError) as exc:
            return _error(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", str(exc))

    jobs_api.dispatch = dispatch_with_secrets


class _Scopes:
    """Which scopes and keys exist; the values themselves live only in the provider."""

    def __init__(self, provider: SecretProvider) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._keys: dict[str, set[str]] = {}
        snapshot = provider.snapshot_for_job

        def snapshot_with_every_scope(job_id: int) -> Any:
            # The local user runs every job and manages every scope (module docstring).
            with self._lock:
                scopes = list(self._keys)
            for scope in scopes:
                provider.grant_job(job_id, scope)
            return snapshot(job_id)

        provider.snapshot_for_job = snapshot_with_every_scope  # type: ignore[method-assign]

    def create_scope(self, body: dict[str, Any] | None) -> ApiResponse:
        scope = _text(body, "scope")
        if not NAME.fullmatch(scope):
            raise ValueError("scope names are letters, digits, '-', '_' and '.', at most 128 characters")
        with self._lock:
            if scope in self._keys:
                return _error(HTTPStatus.BAD_REQUEST, "RESOURCE_ALREADY_EXISTS", f"Scope {scope} already exists!")
            self._keys[scope] = set()
        return ApiResponse(HTTPStatus.OK, {})

    def list_scopes(self, _query: dict[str, str]) -> ApiResponse:
        with self._lock:
            scopes = [{"name": name, "backend_type": "DATABRICKS"} for name in sorted(self._keys)]
        return ApiResponse(HTTPStatus.OK, {"scopes": scopes} if scopes else {})

    def put(self, body: dict[str, Any] | None) -> ApiResponse:
        scope, key = _text(body, "scope"), _text(body, "key")
        string_value, bytes_value = (body or {}).get("string_value"), (body or {}).get("bytes_value")
        if (string_value is None) == (bytes_value is None):
            raise ValueError("send exactly one of string_value and bytes_value")
        if string_value is not None:
            if not isinstance(string_value, str):
                raise ValueError("string_value must be a string")
            value: str | bytes = string_value
        else:
            try:
                value = base64.b64decode(str(bytes_value), validate=True)
            except binascii.Error:
                raise ValueError("bytes_value must be base64") from None
        with self._lock:
            if scope not in self._keys:
                return _missing_scope(scope)
            self._provider.put(scope, key, value)
            self._keys[scope].add(key)
        return ApiResponse(HTTPStatus.OK, {})

    def list_keys(self, query: dict[str, str]) -> ApiResponse:
        scope = _text(query, "scope")
        with self._lock:
            if scope not in self._keys:
                return _missing_scope(scope)
            keys = [{"key": key} for key in sorted(self._keys[scope])]
        return ApiResponse(HTTPStatus.OK, {"secrets": keys} if keys else {})


def _text(fields: dict[str, Any] | None, name: str) -> str:
    value = (fields or {}).get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is required")
    return value


def _missing_scope(scope: str) -> ApiResponse:
    return _error(HTTPStatus.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", f"Scope {scope} does not exist!")


def _error(status: HTTPStatus, code: str, message: str) -> ApiResponse:
    return ApiResponse(status, {"error_code": code, "message": message})
