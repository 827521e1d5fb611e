"""A loopback HTTP server that a handler calls to wait for the test: named gates the test opens.

Handlers report through their answers and their calls here, never through files (workers may write only
their scratch dir) and never by sleeping: a request that calls `url(name)` is held until `open(name)`;
`arrived[name]` says it got there and `calls[name]` how many times (a request run again after a restart
calls twice).
"""

from __future__ import annotations

import http.server
import threading
from collections import Counter, defaultdict
from types import TracebackType

__all__ = ["Gate"]


class Gate:
    """A loopback HTTP server: GET /<name> answers only once the test has opened <name>."""

    def __init__(self) -> None:
        self.arrived: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.opened: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.calls: Counter[str] = Counter()
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/")
                gate.calls[name] += 1
                gate.arrived[name].set()
                gate.opened[name].wait(600)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def open(self, name: str) -> None:
        self.opened[name].set()

    def close(self) -> None:
        for event in list(self.opened.values()):
            event.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Gate:
        """`with Gate() as gate:` closes it however the block ends (a fixture yields from this)."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
