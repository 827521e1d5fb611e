"""Run one of our HTTP apps on 127.0.0.1 in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from moorage.httpd import App, HttpServer
from moorage.settings import HttpLimits


@contextmanager
def serve_in_thread(app: App, limits: HttpLimits | None = None) -> Iterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) while `app` is being served; stop it afterwards."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, HttpServer] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = HttpServer(app, "127.0.0.1", 0, limits or HttpLimits())
        loop.run_until_complete(server.start())
        holder["server"] = server
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="test-http-server", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the test server did not start within 10 s")
    server = holder["server"]
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.shutdown(1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
