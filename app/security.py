"""Who may call the API: a bearer token, or the user a Databricks Apps proxy vouches for.

With ``DARA_API_TOKEN`` set, every route except ``GET /health`` and the callbacks
(``POST /resolve``, ``POST /reject``, which check their own per-promise token) needs
``Authorization: Bearer <token>``: 401 without one, 403 with a wrong one. The token is
compared in constant time, and no answer or log line ever repeats it.

A browser cannot send that header, so the console (``/ui``) signs in once with the
token (``/ui/login``) and then carries a session cookie derived from it, which stands
for the token on every route the token opens.

With ``DARA_TRUST_FORWARDED_USER=true`` (a Databricks App, whose proxy signs users in
and sets ``X-Forwarded-Email`` / ``X-Forwarded-User``), a request carrying those
headers is accepted as that user without the token. The headers are only as good as
the proxy: anyone who can reach the port directly could send them, so set this only
when the proxy is the sole way in. Then a request with neither a forwarded user nor a
valid token is refused, even when no token is configured.

Whoever it is lands on ``request.state.user`` (``anonymous`` when access is open), for
:func:`audit` to log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn
from urllib.parse import unquote_plus

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.limits import error_response
from app.settings import Settings

logger = logging.getLogger(__name__)
audit_logger = logging.getLogger("app.audit")

ANONYMOUS = "anonymous"
TOKEN_USER = "api-token"  # a caller known only by the shared token
MIN_TOKEN_LENGTH = 16
#: Forwarded identity headers of Databricks Apps, most specific first.
FORWARDED_USER_HEADERS = ("x-forwarded-email", "x-forwarded-preferred-username", "x-forwarded-user")
#: Either of these makes a request "forwarded"; the preferred username alone does not.
FORWARDED_USER_REQUIRED = ("x-forwarded-email", "x-forwarded-user")

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="DARA_API_TOKEN",
    description="`Authorization: Bearer <DARA_API_TOKEN>`",
)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
#: The console's session cookie: this browser was given DARA_API_TOKEN once, on
#: /ui/login. HttpOnly and SameSite=Strict: no script reads it, no other site sends it.
SESSION_COOKIE = "dara_console"


@dataclass(frozen=True, repr=False)
class ApiAccess:
    """The access rule of one app, from its settings. Holds a digest, never the token."""

    token_digest: bytes | None
    trust_forwarded_user: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiAccess:
        token = settings.api_token.get_secret_value().strip() if settings.api_token else ""
        if token and len(token) < MIN_TOKEN_LENGTH:
            msg = f"DARA_API_TOKEN must be at least {MIN_TOKEN_LENGTH} characters"
            raise ValueError(msg)
        return cls(_digest(token) if token else None, settings.trust_forwarded_user)

    def __repr__(self) -> str:
        token = "set" if self.token_digest else "unset"
        return f"ApiAccess(token={token}, trust_forwarded_user={self.trust_forwarded_user})"

    @property
    def enabled(self) -> bool:
        return self.token_digest is not None or self.trust_forwarded_user

    def dependencies(self) -> list[Any]:
        """For ``include_router``: put a router behind this rule (nothing when access is open)."""
        return [Depends(self.authenticate)] if self.enabled else []

    def responses(self) -> dict[int | str, dict[str, Any]]:
        """For ``include_router``: the answers this rule adds to a router's routes."""
        if not self.enabled:
            return {}
        return {
            401: error_response("No API token was sent (nor a forwarded user, where trusted)."),
            403: error_response("The API token is wrong."),
        }

    async def authenticate(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        """The caller's name, also put on ``request.state.user``; else 401 or 403."""
        user = self._forwarded_user(request) if self.trust_forwarded_user else None
        if user is None:
            user = self._token_user(request, credentials)
        request.state.user = user
        return user

    def _forwarded_user(self, request: Request) -> str | None:
        if not any(request.headers.get(name, "").strip() for name in FORWARDED_USER_REQUIRED):
            return None
        for name in FORWARDED_USER_HEADERS:
            if value := request.headers.get(name, "").strip():
                return _printable(value)
        return None  # unreachable: a required header was non-empty

    def session_for(self, token: str) -> str | None:
        """The console's session cookie value for a browser that typed ``token``, or None
        if it is not DARA_API_TOKEN (app.routers.console_login)."""
        if self.token_digest is None or not hmac.compare_digest(_digest(token.strip()), self.token_digest):
            return None
        return _session_value(self.token_digest)

    def _has_session(self, request: Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE)
        return (
            cookie is not None
            and bool(cookie)
            and self.token_digest is not None
            and hmac.compare_digest(cookie.encode(), _session_value(self.token_digest).encode())
        )

    def _token_user(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
        if (credentials is None or not credentials.credentials) and self._has_session(request):
            return TOKEN_USER  # a browser that signed in to the console with the token
        if credentials is None or not credentials.credentials:
            sent = (
                "an Authorization header that is not `Bearer <token>`"
                if request.headers.get("authorization")
                else "no Authorization header"
            )
            self._refuse(request, 401, f"missing API token: {sent}; {self._how()}")
        if self.token_digest is None:  # forwarded users only; a token cannot stand in for one
            self._refuse(request, 401, f"no API token is configured (DARA_API_TOKEN); {self._how()}")
        assert credentials is not None
        if not hmac.compare_digest(_digest(credentials.credentials), self.token_digest):
            self._refuse(request, 403, "wrong API token: it does not match DARA_API_TOKEN", error="invalid_token")
        return TOKEN_USER

    def _how(self) -> str:
        ways = []
        if self.token_digest is not None:
            ways.append("send `Authorization: Bearer <DARA_API_TOKEN>`")
        if self.trust_forwarded_user:
            ways.append("come through the Databricks Apps proxy, which sets X-Forwarded-Email")
        return " or ".join(ways)

    @staticmethod
    def _refuse(request: Request, code: int, detail: str, *, error: str | None = None) -> NoReturn:
        client = request.client.host if request.client else "?"
        logger.warning("refused %s %s from %s (%d): %s", request.method, request.url.path, client, code, detail)
        challenge = f'Bearer error="{error}"' if error else "Bearer"
        raise HTTPException(code, detail, headers={"WWW-Authenticate": challenge})


async def current_user(request: Request) -> str:  # async: FastAPI runs a sync one on a thread
    """Who made the request: a forwarded user, ``api-token``, or ``anonymous``."""
    return getattr(request.state, "user", None) or ANONYMOUS


CurrentUser = Annotated[str, Depends(current_user)]


def audit(user: str, action: str, run_id: str, pipeline: str | None = None) -> None:
    """Log (INFO, logger ``app.audit``) who did what to which run."""
    suffix = f" ({pipeline})" if pipeline else ""
    audit_logger.info("%s %s run %r%s", user, action, run_id, suffix)


class RedactQueryTokens(logging.Filter):
    """Blank secret query values in uvicorn's access log (``POST /resolve?...&token=``).

    The log shows the query as the client sent it, so a key may come in any case or
    percent-encoding (``%74oken``, ``TOKEN``, ``callback%5Fsignature``): keys are decoded
    before they are compared, and a secret's value is blanked whole, up to the next ``&``.
    """

    SECRET_KEYS = frozenset({"token", "callback_signature"})

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "=" in a for a in record.args):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        return True

    @classmethod
    def redact(cls, text: str) -> str:
        """``text`` (a path with its query, or a query) with every secret value blanked."""
        path, mark, query = text.partition("?")
        if not mark:
            path, query = "", text
        pairs = query.split("&")
        for index, pair in enumerate(pairs):
            parts = pair.split(";")  # not a separator to the server; a client may mean one
            for at, part in enumerate(parts):
                key, equals, _ = part.partition("=")
                if equals and _query_key(key) in cls.SECRET_KEYS:
                    pairs[index] = ";".join([*parts[:at], f"{key}=[redacted]"])
                    break
        return path + mark + "&".join(pairs)


def redact_access_log() -> None:
    """Install :class:`RedactQueryTokens` on uvicorn's access logger, once."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryTokens) for f in access.filters):
        access.addFilter(RedactQueryTokens())


def _query_key(key: str) -> str:
    """A query key as a server would read it, however often it was percent-encoded."""
    for _ in range(4):
        decoded = unquote_plus(key)
        if decoded == key:
            break
        key = decoded
    return key.strip().lower()


def _session_value(token_digest: bytes) -> str:
    """Derived from the token, so it is never the token itself, and changing
    DARA_API_TOKEN signs every browser out."""
    return hmac.new(token_digest, b"dara console session", hashlib.sha256).hexdigest()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _printable(value: str) -> str:
    """A header value safe to log: printable ASCII, at most 256 characters."""
    return _UNPRINTABLE.sub("?", value)[:256]
