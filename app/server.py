"""How uvicorn serves DARA: the one configuration ``python -m app`` and the tests both use.

Beyond uvicorn's defaults it bounds how long a client may hold a connection without
sending what it owes. uvicorn closes a keep-alive connection left idle between requests
(``timeout_keep_alive``, set here explicitly), but it has no timeout for a request that
is still coming in: a client that opens a connection and sends nothing, or dribbles its
headers or its body a byte at a time ("slowloris"), would hold a connection and its
buffers for ever. :func:`protocol_class` adds that timeout to uvicorn's HTTP/1.1
protocol, ``DARA_CLIENT_TIMEOUT``: from the moment a connection opens, or the first
byte of a request arrives, to the end of that request's body. A request that misses it
gets ``408 Request Timeout`` if its headers were still incomplete, and its connection is
closed either way (an app already reading a half-received body sees a disconnect).

The time the service then takes to answer is not bounded here: that is the app's
(long polls wait up to 60 s on purpose). Nor is a body the service stopped reading
itself (uvicorn's flow control): the timer waits for reading to resume.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import socket
from collections.abc import Callable
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.settings import Settings

logger = logging.getLogger("uvicorn.error")

#: Seconds an idle keep-alive connection stays open between requests (uvicorn's default).
KEEP_ALIVE_SECONDS = 5
#: Seconds requests still running at SIGTERM may take to end before uvicorn cancels them.
#: Long polls answer at once (DrainingServer), so only ordinary requests use it. The
#: Databricks Apps runtime kills an app 15 s after SIGTERM, and stopping the runtime
#: afterwards may take up to 10 more (Runtime.stop).
SHUTDOWN_GRACE_SECONDS = 3

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
)


class _ClientDeadline(asyncio.Protocol):
    """The request-timeout half of a uvicorn HTTP protocol (mixed in before it)."""

    client_timeout: ClassVar[float]
    _deadline: asyncio.TimerHandle | None = None
    _in_headers = False  # a request has begun, its headers are not all in
    _in_body = False  # its headers are in, its body is not

    # Supplied by uvicorn's protocol class.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    flow: Any
    client: tuple[str, int] | None

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.client_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:  # we stopped reading, not the client
            self._arm()
            return
        client = f"{self.client[0]}:{self.client[1]:d}" if self.client else "a client"
        if self._in_headers:
            logger.warning(
                "%s sent no whole request headers within DARA_CLIENT_TIMEOUT=%gs; closing the connection",
                client,
                self.client_timeout,
            )
            message = f"request not received within {self.client_timeout:g} s (DARA_CLIENT_TIMEOUT)".encode()
            self.transport.write(_TIMEOUT_RESPONSE % (len(message), message))
        elif self._in_body:
            logger.warning(
                "%s sent no whole request body within DARA_CLIENT_TIMEOUT=%gs; closing the connection",
                client,
                self.client_timeout,
            )
        else:
            logger.debug("%s sent nothing within DARA_CLIENT_TIMEOUT=%gs; closing", client, self.client_timeout)
        self.transport.close()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is bounded too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._disarm()  # the connection is the WebSocket protocol's from here on
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]


@functools.cache
def _httptools_class() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsWithDeadline(_ClientDeadline, HttpToolsProtocol):
        """httptools' protocol; its parser says where a request begins and ends."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._arm()

        def on_headers_complete(self) -> None:
            self._in_headers, self._in_body = False, True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            super().on_message_complete()
            self._disarm()

    return HttpToolsWithDeadline


class H11WithDeadline(_ClientDeadline, H11Protocol):
    """h11's protocol; after each batch of events, h11's state says whether a request is
    partly received (headers: idle with bytes buffered; body: SEND_BODY)."""

    def handle_events(self) -> None:
        super().handle_events()
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        self._in_headers = state is h11.IDLE and bool(self.conn.trailing_data[0])
        self._in_body = state is h11.SEND_BODY
        if self._in_headers or self._in_body:
            self._arm()
        elif state is not h11.IDLE:  # DONE, MUST_CLOSE...: the request is in
            self._disarm()


def protocol_class(client_timeout: float, http: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (``auto``: httptools if installed, else h11) with the
    client timeout; pass it as ``uvicorn.Config(http=...)``."""
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if http == "httptools":
        base = _httptools_class()
    elif http == "h11":
        base = H11WithDeadline
    else:
        msg = f"http={http!r}: DARA serves with 'auto', 'httptools' or 'h11'"
        raise ValueError(msg)
    return type(base.__name__, (base,), {"client_timeout": client_timeout, "__module__": __name__})


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration DARA runs with; ``options`` go to ``uvicorn.Config``
    (``http`` may name the parser: ``auto``, ``httptools`` or ``h11``)."""
    options.setdefault("host", settings.host)
    options.setdefault("port", settings.port)
    options.setdefault("timeout_keep_alive", KEEP_ALIVE_SECONDS)
    options.setdefault("timeout_graceful_shutdown", SHUTDOWN_GRACE_SECONDS)
    http = protocol_class(settings.client_timeout, options.pop("http", "auto"))
    return uvicorn.Config(app, http=http, **options)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which says when it begins to shut down.

    On SIGTERM uvicorn stops accepting, waits up to ``timeout_graceful_shutdown`` for the
    requests in flight, and then cancels them: a long poll (``GET /runs/{id}?wait=60``, a
    page's live section) would end in a 500 and a traceback after the whole grace period.
    ``on_shutdown`` runs first, so the app can answer them at once instead.
    """

    def __init__(self, config: uvicorn.Config, *, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.on_shutdown()
        await super().shutdown(sockets)


def dara_server(app: Any, settings: Settings, **options: Any) -> DrainingServer:
    """The server ``python -m app`` and the tests run ``app`` (create_app's) with: its
    runtime's long polls answer as the server begins to stop."""

    def drain() -> None:
        runtime = getattr(app.state, "runtime", None)  # None if the lifespan never started
        if runtime is not None:
            runtime.draining.set()

    return DrainingServer(uvicorn_config(app, settings, **options), on_shutdown=drain)
