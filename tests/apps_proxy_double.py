"""A stand-in for the Databricks Apps proxy, and the workspace's OAuth token endpoint.

As a Databricks App, DARA is reached only through the Apps proxy. The proxy signs
people in, lets machines in with an OAuth token (client credentials of a service
principal, from the workspace's ``/oidc/v1/token``) on ``/api/`` routes only, refuses
everyone without ``CAN USE`` on the App, and tells the App who called with
``X-Forwarded-Email`` / ``X-Forwarded-User``. This double does the same in front of a
DARA on a loopback port, so tests can run DARA as the Apps runtime would and send the
demo notebook's callback through it:

- ``POST /oidc/v1/token`` (``grant_type=client_credentials``, ``scope=all-apis``, the
  client id and secret as HTTP Basic auth) issues a token to a registered principal;
- any other request is forwarded only with a valid bearer token (on ``/api/`` paths) or
  a signed-in person's session cookie (``sign_in``), from a principal allowed to use the
  App; otherwise it is answered here, 401 or 403, in plain text -- not DARA's JSON;
- the client's own ``X-Forwarded-*`` and ``Authorization`` headers never reach DARA;
  the proxy's do.

Every request is recorded (``seen``), with who made it and how it was answered.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

TOKEN_PATH = "/oidc/v1/token"
SESSION_COOKIE = "dara-apps-session"
#: Headers that describe one connection, not the request (RFC 9110), and so are not forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


@dataclass(frozen=True)
class Principal:
    """Someone the workspace knows: a person (email) or a service principal (application id)."""

    name: str
    email: str
    can_use: bool = True


@dataclass
class Seen:
    """One request the proxy answered or forwarded."""

    method: str
    path: str
    principal: str | None
    authenticated_by: str | None  # "bearer", "session" or None
    status: int


@dataclass
class AppsProxyDouble:
    """The proxy, listening on loopback, in front of the app on ``upstream_port``."""

    upstream_port: int
    seen: list[Seen] = field(default_factory=list)
    #: Forwarding of callbacks waits while this is clear (set: forward at once).
    callbacks_flowing: threading.Event = field(default_factory=threading.Event)
    #: The paths of requests sent on to the app whose answer has not come back yet.
    in_flight: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str, Principal]] = {}  # client id -> (secret, principal)
        self._tokens: dict[str, tuple[Principal, float]] = {}  # token -> (principal, expiry)
        self._sessions: dict[str, Principal] = {}
        self.callbacks_flowing.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        # A client or an app that went away mid-answer is not the test's business to print.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    # -- the workspace's identities ------------------------------------------------

    def add_service_principal(self, name: str, *, can_use: bool = True) -> tuple[str, str]:
        """Register a service principal with an OAuth secret; returns (client id, secret)."""
        client_id, secret = f"{name}-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
        with self._lock:
            self._clients[client_id] = (secret, Principal(name, client_id, can_use))
        return client_id, secret

    def sign_in(self, email: str, *, can_use: bool = True) -> dict[str, str]:
        """A person's browser session: the cookie header to send."""
        session = secrets.token_urlsafe(16)
        with self._lock:
            self._sessions[session] = Principal(email.split("@")[0], email, can_use)
        return {"Cookie": f"{SESSION_COOKIE}={session}"}

    def requests_to(self, method: str, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if (s.method, s.path.split("?")[0]) == (method, path)]

    # -- serving -----------------------------------------------------------------------

    def start(self) -> AppsProxyDouble:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.callbacks_flowing.set()
        self._server.shutdown()
        self._server.server_close()

    def issue_token(self, authorization: str, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "all-apis":
            return 400, {"error": "invalid_request", "error_description": "expected client_credentials for all-apis"}
        try:
            client_id, _, secret = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return 401, {"error": "invalid_client"}
        with self._lock:
            known = self._clients.get(client_id)
            if known is None or not secrets.compare_digest(known[0], secret):
                return 401, {"error": "invalid_client"}
            token = secrets.token_urlsafe(32)
            self._tokens[token] = (known[1], time.time() + 3600)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": "all-apis"}

    def caller(self, path: str, headers: http.client.HTTPMessage) -> tuple[Principal | None, str | None, int]:
        """Who is calling, how, and the status to refuse with (0: let through)."""
        authorization = headers.get("Authorization", "")
        with self._lock:
            if authorization[:7].lower() == "bearer ":
                principal, expires = self._tokens.get(authorization[7:].strip(), (None, 0.0))
                if principal is None or expires < time.time():
                    return None, None, 401
                if not path.startswith("/api/"):  # token auth covers /api/ routes only
                    return principal, "bearer", 401
                return principal, "bearer", 0 if principal.can_use else 403
            for part in headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == SESSION_COOKIE and value in self._sessions:
                    principal = self._sessions[value]
                    return principal, "session", 0 if principal.can_use else 403
        return None, None, 401

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)


def _handler(proxy: AppsProxyDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0]
            if path == TOKEN_PATH and self.command == "POST":
                form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
                status, answer = proxy.issue_token(self.headers.get("Authorization", ""), form)
                proxy.record(Seen(self.command, self.path, None, None, status))
                self._reply(status, json.dumps(answer).encode(), "application/json")
                return
            principal, how, refusal = proxy.caller(path, self.headers)
            if refusal:
                proxy.record(Seen(self.command, self.path, principal and principal.email, how, refusal))
                reason = b"Unauthorized" if refusal == 401 else b"Forbidden: no CAN USE on this app"
                self._reply(refusal, reason, "text/plain", {"WWW-Authenticate": "Bearer"} if refusal == 401 else {})
                return
            assert principal is not None
            if path in ("/api/resolve", "/api/reject"):
                proxy.callbacks_flowing.wait()
            status = self._forward(body, principal)
            proxy.record(Seen(self.command, self.path, principal.email, how, status))

        def _forward(self, body: bytes, principal: Principal) -> int:
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in HOP_BY_HOP
                and not name.lower().startswith("x-forwarded-")
                and name.lower() not in ("authorization", "cookie", "content-length")
            }
            headers |= {
                "X-Forwarded-Email": principal.email,
                "X-Forwarded-User": f"{principal.name}@workspace",
                "X-Forwarded-Preferred-Username": principal.name,
                "X-Forwarded-Host": self.headers.get("Host", ""),
                "X-Forwarded-Proto": "https",
                "Content-Length": str(len(body)),
            }
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=90)
            try:
                upstream.request(self.command, self.path, body, headers)
                proxy.in_flight.append(self.path)  # in the app's hands now
                try:
                    answer = upstream.getresponse()
                    payload = answer.read()
                finally:
                    proxy.in_flight.remove(self.path)
            except OSError:
                self._reply(502, b"Bad Gateway: the app is not answering", "text/plain")
                return 502
            finally:
                upstream.close()
            extra = {
                k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length", "content-type"}
            }
            self._reply(answer.status, payload, answer.getheader("Content-Type", "application/octet-stream"), extra)
            return answer.status

        def _reply(self, status: int, payload: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # BaseHTTPRequestHandler's name
            pass

    return Handler


@contextmanager
def apps_proxy(upstream_port: int) -> Iterator[AppsProxyDouble]:
    proxy = AppsProxyDouble(upstream_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
