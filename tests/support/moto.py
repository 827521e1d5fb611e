"""moto's server on a free loopback port: an independent AWS API (S3, SNS, ...) for tests to point at."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["moto_server"]


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """The server's URL while the block runs."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
