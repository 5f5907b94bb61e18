"""Passwords for Lakebase: OAuth credentials that expire within the hour, renewed early.

A Lakebase (Databricks database instance) login takes a short-lived OAuth token as its
password, from databricks-sdk's ``database.generate_database_credential``. A DSN with
a fixed password would work for an hour and then lock the service out of its runs. So
with ``DARA_LAKEBASE_INSTANCE`` set, every new Postgres connection asks
:class:`RotatingPassword` for the password, which hands out the cached credential
until it is :data:`RENEW_BEFORE` from expiry and then fetches a fresh one. Connections
already open keep working: Postgres checks a password only at login.

The credential source and the clock are constructor parameters, so a test can rotate
the password on a real Postgres (``tests/test_postgres_lakebase.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

#: Renew a credential this long before it expires (Lakebase's last one hour).
RENEW_BEFORE = timedelta(minutes=10)

#: A credential: the password, and when it expires (epoch seconds).
type Credential = tuple[str, float]


class RotatingPassword:
    """The current password from ``fetch``, renewed :data:`RENEW_BEFORE` before it expires."""

    def __init__(
        self,
        fetch: Callable[[], Credential],
        *,
        clock: Callable[[], float] = time.time,
        renew_before: timedelta = RENEW_BEFORE,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin = renew_before.total_seconds()
        self._lock = threading.Lock()
        self._current: Credential | None = None

    def __call__(self) -> str:
        """The password to log in with now (blocking: fetching calls the workspace)."""
        with self._lock:
            if self._current is None or self._clock() >= self._current[1] - self._margin:
                self._current = self._fetch()
            return self._current[0]


def lakebase_credential(workspace: object, instance: str) -> Callable[[], Credential]:
    """A credential source for the Lakebase instance ``instance``, through databricks-sdk."""

    def fetch() -> Credential:
        credential = workspace.database.generate_database_credential(instance_names=[instance])  # type: ignore[attr-defined]
        if not credential.token:
            msg = f"Lakebase returned no credential for database instance {instance!r}"
            raise RuntimeError(msg)
        expires = credential.expiration_time
        when = datetime.fromisoformat(expires).timestamp() if expires else time.time() + 3600
        return credential.token, when

    return fetch
