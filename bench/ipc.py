"""What it costs to move a request to a worker process and its answer back, by transport.

One request/response round trip between two processes, for a 200-byte, a 1 MiB and a 100 MiB body
(the answer is as large as the request), each message framed as moorage frames it
(src/moorage/worker/protocol.py: an Invoke out, a Reply back; nothing pickled):

- socketpair: an AF_UNIX stream socketpair, both ends blocking, the worker's own receive loop
  (`moorage.worker.main.Channel`);
- socketpair-2MiB-buffers: the same with SO_SNDBUF/SO_RCVBUF raised to 2 MiB (the kernel caps them at
  net.core.wmem_max / rmem_max, 208 KiB on a stock Debian), so a 1 MiB body crosses in one piece;
- socketpair-asyncio: the same, with the server's end on uvloop as moorage's server holds it;
- mp-pipe: a multiprocessing Pipe, `send_bytes` / `recv_bytes` of the same frames;
- shm+pipe: the frame written into a shared-memory block, a 4-byte length sent over a pipe as the
  signal, the answer back the same way;
- file: moorage's large-body path (async inference): the body written to a file, hard-linked into the
  worker's scratch dir (`backends/bodies.py`), an INVOKE_FILES frame over the socketpair; the worker
  reads and removes it (`worker/main.py`), writes its answer to the reply file and says so in its
  Reply (REPLY_IN_FILE); the server moves it out and reads it back (`asyncinf/bodies.py`).

A 100 MiB body is over the worker protocol's 64 MiB frame limit, so only `shm+pipe` and `file` carry it.

For each: round-trip p50 and p99, and the CPU of both processes per round trip (utime + stime).

    .venv/bin/python bench/ipc.py [--seconds 2] [--quick] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.choices import write_section  # noqa: E402
from bench.report import machine_info  # noqa: E402
from bench.stats import percentile  # noqa: E402
from moorage.asyncinf.bodies import BodyFiles  # noqa: E402
from moorage.backends.bodies import link_or_copy, take_reply_file  # noqa: E402
from moorage.worker.main import Channel, _take_body_file  # noqa: E402
from moorage.worker.protocol import (  # noqa: E402
    MAX_FRAME,
    REPLY_IN_FILE,
    Invoke,
    Reply,
    decode,
    encode,
    split_frames,
)

KINDS = ("socketpair", "socketpair-2MiB-buffers", "socketpair-asyncio", "mp-pipe", "shm+pipe", "file")
UNFRAMED = ("shm+pipe", "file")  # the kinds that carry a body over MAX_FRAME
BIG_BUFFERS = 2 << 20
SIZES = (200, 1 << 20, 100 << 20)
_LEN = struct.Struct("!I")
_FORK = multiprocessing.get_context("fork")


@dataclass(frozen=True)
class IpcRecord:
    round: int
    kind: str
    size: int
    round_trips: int
    p50_us: float
    p99_us: float
    cpu_us: float  # both processes, per round trip


def _request(size: int, request_id: int) -> Invoke:
    return Invoke(request_id, b"x" * size, "application/json", "application/json")


def _answer(message: Invoke) -> Reply:
    return Reply(message.request_id, 200, message.body, "application/json")


# Workers (the child side) --------------------------------------------------------------------------
def _socket_worker(sock: socket.socket, parent_end: socket.socket) -> None:
    parent_end.close()  # inherited by the fork: keeping it open would hide the parent's close (EOF)
    channel = Channel(sock)
    while (message := channel.receive()) is not None:
        assert isinstance(message, Invoke)
        channel.send(_answer(message))


def _file_worker(sock: socket.socket, parent_end: socket.socket) -> None:
    parent_end.close()
    channel = Channel(sock)
    while (message := channel.receive()) is not None:
        assert isinstance(message, Invoke) and message.body_file and message.reply_file
        body = _take_body_file(message.body_file)
        with open(message.reply_file, "wb") as handle:
            handle.write(body)
        channel.send(Reply(message.request_id, 200, b"", "application/json", flags=REPLY_IN_FILE))


def _pipe_worker(conn: Connection, parent_end: Connection) -> None:
    parent_end.close()
    while True:
        try:
            frame = conn.recv_bytes()
        except EOFError:
            return
        message = decode(memoryview(frame)[4:])
        assert isinstance(message, Invoke)
        conn.send_bytes(b"".join(encode(_answer(message))))


def _read_exactly(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def _unbounded(message: Invoke | Reply) -> list[bytes]:
    """The message's frame without the frame limit (shared memory has none; the length prefix is not
    read): the frame of the message without its body, then the body."""
    return [*encode(dataclasses.replace(message, body=b"")), message.body]


def _put(block: memoryview, parts: list[bytes]) -> int:
    at = 0
    for part in parts:
        block[at : at + len(part)] = part
        at += len(part)
    return at


def _shm_worker(name: str, half: int, inbound: int, outbound: int, parent_ends: tuple[int, int]) -> None:
    for fd in parent_ends:
        os.close(fd)
    shm = SharedMemory(name=name)
    try:
        view = shm.buf
        assert view is not None
        while signal := _read_exactly(inbound, 4):
            (length,) = _LEN.unpack(signal)
            message = decode(view[4:length])  # the body is copied out before the slot is reused
            assert isinstance(message, Invoke)
            written = _put(view[half:], _unbounded(_answer(message)))
            os.write(outbound, _LEN.pack(written))
    finally:
        shm.close()


# Round trips (the server side) ---------------------------------------------------------------------
def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _run_socketpair(size: int, seconds: float, buffer_bytes: int = 0) -> tuple[list[float], float]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for end in (ours, theirs) if buffer_bytes else ():
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
    child = _FORK.Process(target=_socket_worker, args=(theirs, ours), daemon=True)
    child.start()
    theirs.close()
    buffer = bytearray()
    chunk = bytearray(256 * 1024)
    view = memoryview(chunk)

    def round_trip(i: int) -> None:
        ours.sendall(b"".join(encode(_request(size, i))))
        while True:
            frames = split_frames(buffer)
            if frames:
                reply = decode(frames[0])
                assert isinstance(reply, Reply) and len(reply.body) == size
                return
            count = ours.recv_into(view)
            buffer.extend(view[:count])

    return _with_child(child, round_trip, seconds, lambda: ours.close(), size)


def _run_file(size: int, seconds: float, work: Path) -> tuple[list[float], float]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = _FORK.Process(target=_file_worker, args=(theirs, ours), daemon=True)
    child.start()
    theirs.close()
    bodies = BodyFiles(work / "bodies")
    scratch = work / "scratch"
    scratch.mkdir(exist_ok=True)
    payload = b"x" * size
    buffer = bytearray()
    view = memoryview(bytearray(256 * 1024))

    def round_trip(i: int) -> None:
        staged, reply_path = bodies.input_path(str(i)), bodies.reply_path(str(i))
        staged.write_bytes(
            payload
        )  # what S3 → file costs the server (the kernel's copy for the embedded store)
        worker_in, worker_out = str(scratch / f"{i}.in"), str(scratch / f"{i}.out")
        link_or_copy(str(staged), worker_in)
        request = Invoke(
            i, b"", "application/json", "application/json", body_file=worker_in, reply_file=worker_out
        )
        ours.sendall(b"".join(encode(request)))
        while not (frames := split_frames(buffer)):
            count = ours.recv_into(view)
            buffer.extend(view[:count])
        answer = decode(frames[0])
        assert isinstance(answer, Reply)
        reply = take_reply_file(answer, (worker_out, str(reply_path)))
        assert reply.flags & REPLY_IN_FILE
        assert len(bodies.head(reply_path, size)) == size
        bodies.discard(str(i))

    return _with_child(child, round_trip, seconds, ours.close, size)


def _run_socketpair_asyncio(size: int, seconds: float) -> tuple[list[float], float]:
    import uvloop

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = _FORK.Process(target=_socket_worker, args=(theirs, ours), daemon=True)
    child.start()
    theirs.close()
    result: list[float] = []

    class Server(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = bytearray()
            self.waiter: asyncio.Future[Reply] | None = None

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            for frame in split_frames(self.buffer):
                reply = decode(frame)
                assert isinstance(reply, Reply) and self.waiter is not None
                self.waiter.set_result(reply)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_accepted_socket(Server, ours)
        deadline = time.perf_counter() + seconds
        i = 0
        while i < 50 or time.perf_counter() < deadline or len(result) < 100:
            begin = time.perf_counter_ns()
            protocol.waiter = loop.create_future()
            transport.writelines(encode(_request(size, i)))
            reply = await protocol.waiter
            assert len(reply.body) == size
            if i >= 50:
                result.append((time.perf_counter_ns() - begin) / 1000.0)
            i += 1
        transport.close()

    worker = psutil.Process(child.pid)
    before = _cpu(worker) + time.process_time()
    uvloop.run(main())
    cpu = _cpu(worker) + time.process_time() - before
    child.join(10)
    return result, cpu


def _run_pipe(size: int, seconds: float) -> tuple[list[float], float]:
    ours, theirs = _FORK.Pipe(duplex=True)
    child = _FORK.Process(target=_pipe_worker, args=(theirs, ours), daemon=True)
    child.start()
    theirs.close()

    def round_trip(i: int) -> None:
        ours.send_bytes(b"".join(encode(_request(size, i))))
        reply = decode(memoryview(ours.recv_bytes())[4:])
        assert isinstance(reply, Reply) and len(reply.body) == size

    return _with_child(child, round_trip, seconds, ours.close, size)


def _run_shm(size: int, seconds: float) -> tuple[list[float], float]:
    half = size + 64 * 1024
    shm = SharedMemory(create=True, size=2 * half)
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    child = _FORK.Process(
        target=_shm_worker,
        args=(shm.name, half, to_child_r, to_parent_w, (to_child_w, to_parent_r)),
        daemon=True,
    )
    child.start()
    os.close(to_child_r)
    os.close(to_parent_w)
    view = shm.buf
    assert view is not None

    def round_trip(i: int) -> None:
        written = _put(view, _unbounded(_request(size, i)))
        os.write(to_child_w, _LEN.pack(written))
        (length,) = _LEN.unpack(_read_exactly(to_parent_r, 4))
        reply = decode(view[half + 4 : half + length])
        assert isinstance(reply, Reply) and len(reply.body) == size

    def close() -> None:
        os.close(to_child_w)

    try:
        return _with_child(child, round_trip, seconds, close, size)
    finally:
        os.close(to_parent_r)
        shm.close()
        shm.unlink()


def _with_child(
    child: multiprocessing.process.BaseProcess,
    round_trip: Callable[[int], None],
    seconds: float,
    close: Callable[[], None],
    size: int,
) -> tuple[list[float], float]:
    """Time the round trips; CPU = this process + the child, over the timed part only. A 100 MiB body
    gets a few warm-up and 10 timed round trips at least; smaller ones 50 and 100."""
    assert child.pid is not None
    worker = psutil.Process(child.pid)
    warm, least = (3, 10) if size > MAX_FRAME else (50, 100)
    try:
        for i in range(warm):
            round_trip(i)
        before = _cpu(worker) + time.process_time()
        samples: list[float] = []
        deadline = time.perf_counter() + seconds
        i = warm
        while time.perf_counter() < deadline or len(samples) < least:
            begin = time.perf_counter_ns()
            round_trip(i)
            samples.append((time.perf_counter_ns() - begin) / 1000.0)
            i += 1
        cpu = _cpu(worker) + time.process_time() - before
        return samples, cpu
    finally:
        close()
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join(5)


RUNNERS: dict[str, Callable[[int, float, Path], tuple[list[float], float]]] = {
    "socketpair": lambda size, seconds, _: _run_socketpair(size, seconds),
    "socketpair-2MiB-buffers": lambda size, seconds, _: _run_socketpair(size, seconds, BIG_BUFFERS),
    "socketpair-asyncio": lambda size, seconds, _: _run_socketpair_asyncio(size, seconds),
    "mp-pipe": lambda size, seconds, _: _run_pipe(size, seconds),
    "shm+pipe": lambda size, seconds, _: _run_shm(size, seconds),
    "file": _run_file,
}


def measure(kind: str, size: int, seconds: float, round_no: int, work: Path) -> IpcRecord:
    samples, cpu = RUNNERS[kind](size, seconds, work)
    return IpcRecord(
        round=round_no,
        kind=kind,
        size=size,
        round_trips=len(samples),
        p50_us=round(statistics.median(samples), 1),
        p99_us=round(percentile(samples, 99), 1),
        cpu_us=round(cpu * 1e6 / len(samples), 1),
    )


def table(records: list[IpcRecord]) -> str:
    lines = [
        "| transport | body | round trip p50 µs | round trip p99 µs | CPU µs per round trip (both sides) "
        "| rounds |",
        "|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        for kind in KINDS:
            mine = [r for r in records if r.kind == kind and r.size == size]
            if not mine:
                continue
            label = "200 B" if size < 1024 else f"{size >> 20} MiB"
            p50 = statistics.median(r.p50_us for r in mine)
            p99 = statistics.median(r.p99_us for r in mine)
            cpu = statistics.median(r.cpu_us for r in mine)
            lines.append(f"| {kind} | {label} | {p50:,.1f} | {p99:,.1f} | {cpu:,.1f} | {len(mine)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/ipc.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed round trips per case (2 s)")
    parser.add_argument("--quick", action="store_true", help="one round of 0.5 s per case")
    parser.add_argument("--only", default=",".join(KINDS), help=f"any of {', '.join(KINDS)}")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "_work" / "ipc")
    parser.add_argument(
        "--write-results", action="store_true", help="rewrite its section of bench/CHOICES.md"
    )
    args = parser.parse_args(argv)
    kinds = [k for k in args.only.split(",") if k]
    for kind in kinds:
        if kind not in KINDS:
            parser.error(f"unknown transport {kind!r}")
    rounds, seconds = (1, 0.5) if args.quick else (max(1, args.rounds), args.seconds)
    machine = machine_info()
    records = []
    args.work.mkdir(parents=True, exist_ok=True)
    for round_no in range(1, rounds + 1):
        for size in SIZES:
            for kind in kinds:
                if size > MAX_FRAME and kind not in UNFRAMED:
                    continue  # over the frame limit: this transport cannot carry it as moorage frames it
                record = measure(kind, size, seconds, round_no, args.work)
                print(f"[ipc] {record}", file=sys.stderr)
                records.append(record)
    text = table(records)
    print(text)
    (args.work / "ipc.json").write_text(json.dumps([asdict(r) for r in records], indent=1))
    if args.write_results:
        write_section("ipc", text, machine, f"{rounds} round(s) of {seconds:g} s per case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
