"""Which HTTP front end costs least per request: one trivial app under each, measured with wrk.

The app reads the POSTed body (the tiny model's 16 floats) and answers a fixed JSON body, so all that
is measured is the server: parsing, the event loop, the app interface, writing the response.

- moorage: moorage's own HTTP/1.1 server (src/moorage/httpd, httptools on uvloop), as `serve` runs it;
- uvicorn: uvicorn with httptools and uvloop, a raw ASGI app (no framework);
- granian-asgi / granian-rsgi: granian (Rust HTTP, one worker), the raw ASGI app / a raw RSGI app;
- asyncio: a bare asyncio.Protocol on uvloop that finds the end of each request and writes a canned
  response: the floor for a Python front end, not a server anyone should run.

Each runs in its own process; per phase (1 client, then 8) we take wrk's p50/p99 and req/s and the
server's CPU time (utime + stime from /proc/<pid>/stat, its child processes included) per request.
The figures are medians over rounds, the servers interleaved within each round.

    .venv/bin/python bench/frontends.py [--rounds 3] [--seconds 5] [--quick] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))

from bench.choices import write_section  # noqa: E402
from bench.load import post, wrk, wrk_path  # noqa: E402
from bench.procs import Registry, tagged  # noqa: E402
from bench.report import machine_info  # noqa: E402

KINDS = ("moorage", "uvicorn", "granian-asgi", "granian-rsgi", "asyncio")
ANSWER = b"[[0.1348, -0.2712, 0.5539, -0.0417]]"
REQUEST = b"[[" + b", ".join(b"0.%04d" % (i * 613 % 10000) for i in range(16)) + b"]]"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# The apps ------------------------------------------------------------------------------------------
async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app: drain the body, send the fixed answer."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = bool(message.get("more_body"))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


async def rsgi_app(scope: Any, protocol: Any) -> None:
    """A raw RSGI app (granian's own interface)."""
    await protocol()
    protocol.response_bytes(200, [("content-type", "application/json")], ANSWER)


def _serve_moorage(port: int) -> None:
    from moorage.httpd import HttpServer, Request, Response
    from moorage.launch.loop import run_until_signalled
    from moorage.settings import HttpLimits

    async def app(request: Request) -> Response:
        await request.body(1 << 20)
        return Response(200, ANSWER, [("Content-Type", "application/json")])

    async def main(stop: asyncio.Event) -> None:
        server = HttpServer(app, "127.0.0.1", port, HttpLimits())
        await server.start()
        await stop.wait()
        await server.shutdown(1.0)

    run_until_signalled(main)


class _CannedHttp(asyncio.Protocol):
    """Finds each request's end (headers + Content-Length) and writes a fixed response: no parser."""

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(ANSWER)
        + ANSWER
    )

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            assert self.transport is not None
            self.transport.write(self.RESPONSE)


def _serve_asyncio(port: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_CannedHttp, "127.0.0.1", port, backlog=2048)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def _serve_uvicorn(port: int) -> None:
    import uvicorn

    uvicorn.run(
        asgi_app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


def _argv(kind: str, port: int) -> list[str]:
    if kind.startswith("granian"):
        interface = kind.split("-", 1)[1]
        granian = str(Path(sys.executable).with_name("granian"))
        target = "bench.frontends:asgi_app" if interface == "asgi" else "bench.frontends:rsgi_app"
        return [
            granian,
            "--interface",
            interface,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--no-ws",
            "--no-access-log",
            "--log-level",
            "warning",
            target,
        ]
    return [sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port", str(port)]


# Measuring -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrontRecord:
    round: int
    kind: str
    p50_ms: float
    p99_ms: float
    rps_c1: float
    rps_c8: float
    cpu_us_c1: float  # server CPU per request at 1 client
    cpu_us_c8: float
    processes: int
    error: str | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(tag: str) -> tuple[float, int]:
    """utime + stime of every process of the server (psutil reads /proc/<pid>/stat)."""
    total, count = 0.0, 0
    for process in tagged(tag):
        try:
            times = process.cpu_times()
        except Exception:  # the process went away between listing and reading
            continue
        total += times.user + times.system
        count += 1
    return total, count


def _wait_ready(url: str, deadline_s: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if post(url, REQUEST, "application/json", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if not alive():
            raise RuntimeError("the server exited")
        time.sleep(0.05)
    raise TimeoutError(f"no 200 within {deadline_s:.0f} s")


def measure(
    registry: Registry, kind: str, round_no: int, seconds: int, work: Path, body: Path
) -> FrontRecord:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launched = registry.launch(
        f"front-{kind}", _argv(kind, port), env=env, log_path=work / f"front-{kind}.log", cwd=ROOT, grace_s=5
    )
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        _wait_ready(url, 30.0, launched.alive)
        wrk(url, 8, 1, body, "application/json")
        phases = []
        for connections in (1, 8):
            before, count = _cpu_seconds(launched.tag)
            phase = wrk(url, connections, seconds, body, "application/json")
            after, _ = _cpu_seconds(launched.tag)
            if phase.requests == 0 or phase.errors or phase.non_2xx:
                raise RuntimeError(f"c={connections}: {phase}")
            phases.append((phase, (after - before) * 1e6 / phase.requests))
        (c1, cpu1), (c8, cpu8) = phases
        return FrontRecord(round_no, kind, c1.p50_ms, c1.p99_ms, c1.rps, c8.rps, cpu1, cpu8, count)
    except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
        return FrontRecord(round_no, kind, 0, 0, 0, 0, 0, 0, 0, error=f"{exc}\n{launched.log_tail(800)}")
    finally:
        registry.stop(launched)


def table(records: list[FrontRecord]) -> str:
    lines = [
        "| front end | c=1 p50 ms | c=1 p99 ms | c=1 req/s | c=8 req/s | CPU µs/request c=1 | "
        "CPU µs/request c=8 | processes | ok rounds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        mine = [r for r in records if r.kind == kind]
        good = [r for r in mine if r.error is None]
        if not mine:
            continue
        if not good:
            lines.append(f"| {kind} | – | – | – | – | – | – | – | 0/{len(mine)} |")
            continue

        def med(field: str, rows: list[FrontRecord] = good) -> float:
            return float(statistics.median(getattr(r, field) for r in rows))

        lines.append(
            f"| {kind} | {med('p50_ms'):.3f} | {med('p99_ms'):.3f} | {med('rps_c1'):,.0f} | "
            f"{med('rps_c8'):,.0f} | {med('cpu_us_c1'):.0f} | {med('cpu_us_c8'):.0f} | "
            f"{med('processes'):g} | {len(good)}/{len(mine)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/frontends.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="length of the c=1 and the c=8 phase (5)")
    parser.add_argument("--quick", action="store_true", help="one round of 2 s phases")
    parser.add_argument("--only", default=",".join(KINDS), help=f"any of {', '.join(KINDS)}")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "_work" / "frontends")
    parser.add_argument(
        "--write-results", action="store_true", help="rewrite its section of bench/CHOICES.md"
    )
    parser.add_argument("--serve", choices=("moorage", "uvicorn", "asyncio"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        {"moorage": _serve_moorage, "uvicorn": _serve_uvicorn, "asyncio": _serve_asyncio}[args.serve](
            args.port
        )
        return 0
    if wrk_path() is None:
        raise SystemExit("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    kinds = [k for k in args.only.split(",") if k]
    for kind in kinds:
        if kind not in KINDS:
            parser.error(f"unknown front end {kind!r}")
    rounds, seconds = (1, 2) if args.quick else (max(1, args.rounds), max(1, args.seconds))
    args.work.mkdir(parents=True, exist_ok=True)
    body = args.work / "request.json"
    body.write_bytes(REQUEST)
    registry = Registry()
    records: list[FrontRecord] = []
    machine = machine_info()
    try:
        for round_no in range(1, rounds + 1):
            for kind in kinds:
                record = measure(registry, kind, round_no, seconds, args.work, body)
                print(f"[frontends] round {round_no} {kind}: {record.error or record}", file=sys.stderr)
                records.append(record)
    except KeyboardInterrupt:
        return 130
    finally:
        registry.stop_all()
    text = table(records)
    print(text)
    (args.work / "frontends.json").write_text(json.dumps([r.__dict__ for r in records], indent=1))
    if args.write_results:
        write_section("frontends", text, machine, f"{rounds} round(s) of {seconds} s phases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
