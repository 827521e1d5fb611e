"""Listening sockets, the connection caps, and a graceful stop for the HTTP server.

`HttpServer.start()` binds (port 0 picks a free port, reported by `.port`); `shutdown()` stops
accepting, lets requests in progress finish within a grace period, then closes every connection.
Connections are budgets: the server holds at most `max_connections`, and one client address (an IPv6
/64, which one host usually owns whole) at most `max_connections_per_client` of them, so a single peer
flooding idle sockets leaves room for everyone else (security probe 2, row 53).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING

from moorage.httpd.messages import App
from moorage.httpd.notices import ThrottledLog
from moorage.settings import HttpLimits

if TYPE_CHECKING:
    from moorage.httpd.protocol import HttpProtocol

__all__ = ["ConnectionRegistry", "HttpServer", "client_key"]

log = logging.getLogger("moorage.httpd")
TOO_MANY = "Too many connections; retry later."


def client_key(address: str) -> str:
    """The budget a peer address counts against: itself, or its /64 for IPv6 (not IPv4-mapped)."""
    try:
        parsed = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class ConnectionRegistry:
    """Every open connection of one server, so the caps and the drain can see them all."""

    def __init__(self, max_connections: int, max_per_client: int | None = None) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client or max_connections
        self.connections: set[HttpProtocol] = set()
        self.per_client: dict[str, int] = {}
        self.draining = False
        self._idle: asyncio.Event | None = None
        self._notices = ThrottledLog(log)

    def add(self, protocol: HttpProtocol, client: str) -> str | None:
        """Register a new connection from `client`; or say why it is refused (it is then not registered)."""
        if self.draining or len(self.connections) >= self.max_connections:
            self._notices.warning(client, "a connection", f"the server holds {self.max_connections} already")
            return TOO_MANY
        key = client_key(client)
        held = self.per_client.get(key, 0)
        if held >= self.max_per_client:
            self._notices.warning(
                client, "a connection", f"{key} holds {held} connections, the most one client may hold"
            )
            return f"Too many connections from {key}; close idle ones or retry later."
        self.connections.add(protocol)
        self.per_client[key] = held + 1
        protocol.budget = key
        return None

    def discard(self, protocol: HttpProtocol) -> None:
        if protocol in self.connections:
            self.connections.discard(protocol)
            left = self.per_client.get(protocol.budget, 1) - 1
            if left > 0:
                self.per_client[protocol.budget] = left
            else:
                self.per_client.pop(protocol.budget, None)
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
        self.registry = ConnectionRegistry(limits.max_connections, limits.max_connections_per_client)
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port = port
        shortest = min(
            limits.header_timeout_s,
            limits.body_idle_timeout_s,
            limits.keepalive_timeout_s,
            limits.request_line_timeout_s,
        )
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
