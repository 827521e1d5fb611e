"""Listening sockets, the connection cap, and a graceful stop for the HTTP server.

`HttpServer.start()` binds (port 0 picks a free port, reported by `.port`); `shutdown()` stops
accepting, lets requests in progress finish within a grace period, then closes every connection.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from moorage.httpd.messages import App
from moorage.settings import HttpLimits

if TYPE_CHECKING:
    from moorage.httpd.protocol import HttpProtocol

__all__ = ["ConnectionRegistry", "HttpServer"]


class ConnectionRegistry:
    """Every open connection of one server, so the cap and the drain can see them all."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        self._idle: asyncio.Event | None = None

    def add(self, protocol: HttpProtocol) -> bool:
        if self.draining or len(self.connections) >= self.max_connections:
            return False
        self.connections.add(protocol)
        return True

    def discard(self, protocol: HttpProtocol) -> None:
        self.connections.discard(protocol)
        self.cycle_done()

    def cycle_done(self) -> None:
        if self._idle is not None and not any(c.busy for c in self.connections):
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        self._idle = asyncio.Event()
        self.cycle_done()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False


class HttpServer:
    def __init__(self, app: App, host: str, port: int, limits: HttpLimits) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.limits = limits
        self.registry = ConnectionRegistry(limits.max_connections)
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port = port
        shortest = min(limits.header_timeout_s, limits.body_idle_timeout_s, limits.keepalive_timeout_s)
        self.sweep_interval = min(1.0, max(0.02, shortest / 4))

    async def start(self) -> None:
        from moorage.httpd.protocol import HttpProtocol

        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.requested_port))
        sock.setblocking(False)
        self._server = await loop.create_server(
            lambda: HttpProtocol(self.app, self.limits, self.registry), sock=sock, backlog=2048
        )
        self.port = sock.getsockname()[1]
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Enforce every connection's deadline (slow headers, stalled bodies, idle keep-alives)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.sweep_interval)
            now = loop.time()
            for connection in list(self.registry.connections):
                connection.check_deadline(now)

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting; finish what is in progress within `grace_s`; then close everything."""
        if self._server is None:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._server.close()
        self.registry.draining = True
        for connection in list(self.registry.connections):
            connection.close_if_idle()
        await self.registry.wait_idle(grace_s)
        for connection in list(self.registry.connections):
            if connection.transport is not None:
                connection.transport.close()
        await self._server.wait_closed()
        self._server = None
