"""Several workers on one in-process Resonate server, each of which can be stopped alone.

An in-process server is both the server and a client's connection: stopping the
Resonate client that owns it stops the server and deafens every other client. Each
worker here gets a thin connection of its own that forwards requests to the shared
server, so stopping (or abandoning) one worker leaves the server and the others running
-- which is what a takeover test needs.
"""

from __future__ import annotations

from collections.abc import Callable

from app.durable.in_process import InProcessServer


class SharedServer:
    def __init__(self) -> None:
        self.server = InProcessServer(group="dara")

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    def worker(self, pid: str) -> WorkerConnection:
        return WorkerConnection(self.server, pid)


class WorkerConnection:
    """One worker's view of the shared server (Network and Source)."""

    def __init__(self, server: InProcessServer, pid: str) -> None:
        self._server = server
        self.times_out_waits = server.times_out_waits
        self._pid = pid
        self._receivers: list[Callable[[str], None]] = []
        self.listening = False
        server.recv(self._deliver)

    def unicast(self) -> str:
        return f"poll://uni@dara/{self._pid}"

    def resolve_target(self, target: str) -> str:
        return self._server.resolve_target(target)

    async def start(self) -> None:
        self.listening = True

    async def stop(self) -> None:
        self.listening = False

    def abandon(self) -> None:
        """Go deaf at once, as a killed process would: no clean shutdown."""
        self.listening = False

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        return await self._server.send(req, headers)

    def recv(self, callback: Callable[[str], None]) -> None:
        self._receivers.append(callback)

    def _deliver(self, message: str) -> None:
        if self.listening:
            for receive in self._receivers:
                receive(message)
