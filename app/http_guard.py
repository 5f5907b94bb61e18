"""What a browser may make of DARA: which hosts it answers to, which sites may change
its state, and the headers that keep its pages to themselves.

- **Hosts** (DNS rebinding). A request must address DARA by a name it knows
  (``Settings.host_names``: loopback, the hosts of DARA_PUBLIC_URL, DARA_CALLBACK_URLS
  and DATABRICKS_APP_URL, and DARA_ALLOWED_HOSTS, where ``*`` allows any). Otherwise a
  page on ``evil.example``, whose name an attacker re-points at 127.0.0.1, could talk to
  DARA as if it were its own site. The port counts only where the allowed entry names
  one. 400 otherwise. ``GET /health`` is exempt, for probes that address the service by
  an address of the moment (a pod IP); it tells nothing worth rebinding for.
- **Cross-site requests** (CSRF). With the API open (no DARA_API_TOKEN) a page on any
  site could start or cancel runs from a visitor's browser: forms and ``<img>`` need no
  CORS. A request that changes state -- any method but GET, HEAD and OPTIONS, and
  ``GET /run``, which starts a run -- is refused (403) when the browser says it comes
  from another site (``Sec-Fetch-Site: cross-site``, or ``same-site`` without an Origin
  that is DARA's), or when its ``Origin`` is not DARA's (``null`` included). DARA's own
  origin is the one the request addresses, or an allowed host; a loopback origin must
  also be on the request's port, since every local app shares those names. Requests
  that carry neither header -- curl, notebooks, scripts -- are not a browser's and pass.
- **Headers** on every answer: no MIME sniffing, no referrer, no framing, and a
  Content-Security-Policy that allows nothing but inline styles and images from here.
  The console's pages (``/ui``) may also run DARA's own script and style files and call
  DARA's API, nothing inline. ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from
  DARA's own copies (app.console.assets) and start them with an inline script: they get
  a policy of exactly the files their HTML names and the hash of that inline script.
- **Redirects** FastAPI makes (a trailing slash) point at the host the request
  addressed; they are made relative, so even with ``*`` no answer sends a client to a
  host it named.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.limits import error_response

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Routes a safe method reaches that change state all the same.
STATE_CHANGING_GETS = frozenset({"/run"})
#: Routes open to any Host header.
ANY_HOST_PATHS = frozenset({"/health"})

STRICT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: The console's pages (``/ui``): scripts and styles only from DARA's own files
#: (app/static), never inline; their scripts may call DARA's API and nothing else.
CONSOLE_PREFIX = "/ui"
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)

_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.~!$&'()*+,;=%-]+))(?::(?P<port>[0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (``[v6]:port`` for IPv6) as (lower-case host, port), or None if
    it is not one."""
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    host = match["v6"] or match["name"].rstrip(".")
    port = int(match["port"]) if match["port"] else None
    if not host or (port is not None and not 0 < port < 65536):
        return None
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AllowedHosts:
    """DARA_ALLOWED_HOSTS and the names DARA knows itself by, parsed once."""

    any_host: bool
    any_port: frozenset[str]
    on_port: frozenset[tuple[str, int]]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowedHosts:
        any_host, any_port, on_port = False, set(), set()
        for raw in entries:
            entry = raw.strip()
            if entry == "*":
                any_host = True
                continue
            if "://" in entry:  # a URL where a host was meant: take its host
                entry = urlsplit(entry).netloc.rpartition("@")[2]
            if entry.count(":") >= 2 and not entry.startswith("["):  # a bare IPv6 address
                entry = f"[{entry}]"
            parsed = split_host(entry)
            if parsed is None:
                msg = f"DARA_ALLOWED_HOSTS: {raw!r} is not a host name or host:port"
                raise ValueError(msg)
            host, port = parsed
            if port is None:
                any_port.add(host)
            else:
                on_port.add((host, port))
        return cls(any_host, frozenset(any_port), frozenset(on_port))

    def named(self, host: str, port: int) -> bool:
        """Whether an entry names this host (and this port, where the entry has one)."""
        return host in self.any_port or (host, port) in self.on_port

    def allows(self, host: str, port: int) -> bool:
        return self.any_host or self.named(host, port)


class HttpGuard:
    """The checks and headers above, as pure ASGI middleware (outermost of DARA's own)."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: AllowedHosts,
        swagger_paths: Iterable[str | None] = (),
        redoc_paths: Iterable[str | None] = (),
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.docs_policies = {
            **{path: SWAGGER_POLICY for path in swagger_paths if path},
            **{path: REDOC_POLICY for path in redoc_paths if path},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host_header = headers.get("host", "")
        scheme = scope.get("scheme", "http")
        addressed = split_host(host_header)
        refusal = self._host_refusal(scope, host_header, addressed, scheme)
        if refusal is None and _changes_state(scope):
            refusal = self._cross_site_refusal(scope, headers, addressed, scheme)
        if refusal is not None:
            status, detail = refusal
            logger.warning("refused %s %s (%d): %s", scope["method"], _shown(scope["path"], 200), status, detail)
            await _answer(send, status, detail)
            return
        await self.app(scope, receive, self._sending(scope, host_header, send))

    # -- hosts -------------------------------------------------------------------

    def _host_refusal(
        self, scope: Scope, host_header: str, addressed: tuple[str, int | None] | None, scheme: str
    ) -> tuple[int, str] | None:
        if scope["path"] in ANY_HOST_PATHS and scope["method"] in ("GET", "HEAD"):
            return None
        if not host_header:
            return 400, "no Host header: send the host name DARA is reached under"
        if addressed is not None:
            host, port = addressed
            if self.hosts.allows(host, port or _DEFAULT_PORTS.get(scheme, 80)):
                return None
        return 400, (
            f"host {_shown(host_header)!r} is not allowed: DARA answers only to the host names it is "
            "configured with; if it is meant to be reached as this host, add it to DARA_ALLOWED_HOSTS "
            "(comma-separated host or host:port; * allows any)"
        )

    # -- cross-site requests -----------------------------------------------------

    def _cross_site_refusal(
        self, scope: Scope, headers: dict[str, str], addressed: tuple[str, int | None] | None, scheme: str
    ) -> tuple[int, str] | None:
        what = f"{scope['method']} {_shown(scope['path'], 200)}"
        site = headers.get("sec-fetch-site", "").strip().lower()
        origin = headers.get("origin")
        if site == "cross-site":
            return 403, (
                f"cross-site request refused: {what} changes state, and the browser says it comes from "
                "another site (Sec-Fetch-Site: cross-site); send it from DARA's own pages, or from a "
                "client that is not a browser (curl, a script)"
            )
        if origin is None:
            if site == "same-site":
                return 403, (
                    f"cross-site request refused: {what} changes state, and the browser says it comes "
                    "from another origin of this site (Sec-Fetch-Site: same-site) without naming it "
                    "(no Origin header); send it from DARA's own pages"
                )
            return None  # not a browser's request, or a browser's own navigation
        if self._own_origin(origin, addressed, scheme):
            return None
        return 403, (
            f"cross-site request refused: {what} changes state, and it comes from origin "
            f"{_shown(origin)!r}, which is not DARA's; send it from DARA's own pages, or from a client "
            "that is not a browser (curl, a script). If that origin serves DARA too, add its host to "
            "DARA_ALLOWED_HOSTS"
        )

    def _own_origin(self, origin: str, addressed: tuple[str, int | None] | None, scheme: str) -> bool:
        """Whether ``Origin`` is DARA's: the host:port the request addressed, or an allowed
        host (a loopback one only on the request's own port)."""
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or parts.path or parts.query or "@" in parts.netloc:
            return False  # "null", or not an origin at all
        parsed = split_host(parts.netloc)
        if parsed is None or addressed is None:
            return False
        host, port = parsed[0], parsed[1] or _DEFAULT_PORTS[parts.scheme]
        own_host, own_port = addressed[0], addressed[1] or _DEFAULT_PORTS.get(scheme, 80)
        if host == own_host and (parsed[1] == addressed[1] or port == own_port):
            return True  # the same origin (both without a port: TLS may end at a proxy)
        if is_loopback(host):
            return (host, port) in self.hosts.on_port or (
                host in self.hosts.any_port and is_loopback(own_host) and port == own_port
            )
        return self.hosts.named(host, port)

    # -- what goes out -----------------------------------------------------------

    def _sending(self, scope: Scope, host_header: str, send: Send) -> Send:
        docs_policy = self.docs_policies.get(scope["path"])
        held: Message | None = None
        chunks: list[bytes] = []

        async def sending(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                message = _relative_redirect(message, host_header)
                if docs_policy is None:
                    await send(_with_headers(message, _page_policy(scope["path"])))
                else:
                    held = message  # its policy depends on the page, which follows
                return
            if held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                page = b"".join(chunks)
                start, held = held, None
                assert docs_policy is not None  # a response is held only to apply it
                await send(_with_headers(start, docs_policy.for_page(page)))
                await send({"type": "http.response.body", "body": page})
                return
            await send(message)

        return sending


@dataclass(frozen=True)
class DocsPolicy:
    """The CSP of a docs page: the files its HTML loads, the hashes of its inline scripts,
    and what the viewer does once running (``extra``)."""

    extra: tuple[str, ...]

    def for_page(self, html: bytes) -> str:
        page = _PageAssets()
        page.feed(html.decode("utf-8", "replace"))
        page.close()
        hashes = [
            "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
            for script in page.inline_scripts
        ]
        sources = {
            "script-src": [*page.scripts, *hashes],
            "style-src": ["'unsafe-inline'", *page.styles],
            "img-src": ["'self'", "data:", "blob:", *page.icons],
            "connect-src": ["'self'"],
        }
        for directive in self.extra:
            name, _, values = directive.partition(" ")
            sources.setdefault(name, []).extend(values.split())
        listed = "; ".join(f"{name} {' '.join(dict.fromkeys(values))}" for name, values in sources.items() if values)
        return f"default-src 'none'; {listed}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


#: Swagger UI fetches the schema and, with "Try it out", the API itself (same origin).
SWAGGER_POLICY = DocsPolicy(extra=())
#: ReDoc runs its search in a Worker made from a blob; it is served without Google Fonts
#: (app.console.assets), so no other host is named.
REDOC_POLICY = DocsPolicy(extra=("worker-src blob:",))


class _PageAssets(HTMLParser):
    """The scripts, stylesheets and icons an HTML page names, and its inline scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.icons: list[str] = []
        self.inline_scripts: list[str] = []
        self._inline: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "script":
            if src := attributes.get("src"):
                self.scripts.append(_source(src))
            else:
                self._inline = []
        elif tag == "link" and (href := attributes.get("href")):
            rel = attributes.get("rel", "").lower().split()
            if "stylesheet" in rel:
                self.styles.append(_source(href))
            elif "icon" in rel:
                self.icons.append(_source(href))

    def handle_data(self, data: str) -> None:
        if self._inline is not None:
            self._inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._inline is not None:
            self.inline_scripts.append("".join(self._inline))
            self._inline = None


def _source(url: str) -> str:
    """A CSP source for one file: the URL without its query (CSP ignores queries), or
    'self' for a path on this origin."""
    parts = urlsplit(url)
    if not parts.scheme:
        return "'self'"
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def declare_responses(app: FastAPI) -> None:
    """Add the cross-site 403 to the OpenAPI answers of every operation that changes
    state (the Host 400 is among every route's ``LIMIT_RESPONSES``). On the schema, not
    the routes: those belong to routers every app shares."""
    refused = "A browser's request from another site or origin was refused (cross-site)."
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    if method.upper() in SAFE_METHODS and path not in STATE_CHANGING_GETS:
                        continue
                    responses = operation.setdefault("responses", {})
                    if "403" in responses:
                        described = f"{responses['403']['description']} Or: {refused}"
                        responses["403"] = {**responses["403"], "description": described}
                    else:
                        responses["403"] = error_response(refused)
        assert app.openapi_schema is not None  # build() stored the schema it returned
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _page_policy(path: str) -> str:
    """The CSP of an answer that is not a docs page: the console's, or the strictest."""
    if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
        return CONSOLE_CSP
    return STRICT_CSP


def _changes_state(scope: Scope) -> bool:
    method = scope["method"]
    if method not in SAFE_METHODS:
        return True
    return method in ("GET", "HEAD") and scope["path"].rstrip("/") in STATE_CHANGING_GETS


_READ_HEADERS = frozenset({b"host", b"origin", b"sec-fetch-site"})


def _headers(scope: Scope) -> dict[str, str]:
    """The headers the guard reads, by name, decoded as Latin-1 as Starlette does; a
    repeated one joined with ", ", so that two Host or Origin headers match nothing."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if (key := name.lower()) in _READ_HEADERS:
            text, field = value.decode("latin-1"), key.decode()
            found[field] = f"{found[field]}, {text}" if field in found else text
    return found


def _relative_redirect(message: Message, host_header: str) -> Message:
    """A redirect to the host the request addressed, as a path on it (when it is one)."""
    if not 300 <= message["status"] < 400 or not host_header:
        return message
    headers = list(message.get("headers", []))
    for index, (name, value) in enumerate(headers):
        if name.lower() != b"location":
            continue
        target = urlsplit(value.decode("latin-1"))
        if target.netloc.lower() != host_header.lower() or not target.path.startswith("/"):
            continue
        relative = target.path + (f"?{target.query}" if target.query else "")
        if relative.startswith(("//", "/\\")):
            continue  # a path a browser would read as another host: left absolute
        headers[index] = (name, relative.encode("latin-1"))
    return {**message, "headers": headers}


def _with_headers(message: Message, csp: str) -> Message:
    headers = list(message.get("headers", []))
    present = {name.lower() for name, _ in headers}
    headers += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
    if b"content-security-policy" not in present:
        headers.append((b"content-security-policy", csp.encode()))
    return {**message, "headers": headers}


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    await send(_with_headers(start, STRICT_CSP))
    await send({"type": "http.response.body", "body": body})


def _shown(value: str, limit: int = 255) -> str:
    """A header value safe to show and log: printable ASCII, bounded."""
    return _UNPRINTABLE.sub("?", value)[:limit]
