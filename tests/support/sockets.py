"""Raw-socket helpers for tests that play a client which misbehaves on purpose (floods, silence)."""

from __future__ import annotations

import socket


def read_until_closed(sock: socket.socket, within: float) -> bytes | None:
    """All the server sends until it closes the connection (b"" for a silent close, including a reset),
    or None if the connection is still open and silent after `within` seconds."""
    sock.settimeout(within)
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    except TimeoutError:
        return answer or None
    except ConnectionResetError:
        pass
    return answer
