"""The typed messages between the server and a worker process, and their byte framing.

Every message crosses as one frame: a 4-byte big-endian length, a 1-byte kind, then the payload.
Hot-path messages (Invoke, Reply) are packed binary with the body as raw trailing bytes, so a 6 MiB
body is never re-encoded; rare control messages (Ready, LoadFailed) carry a small JSON object.
Nothing is pickled: failures cross as data (status, text), never as exception objects.

A batch is a run of Invoke frames sent back to back; the first says how many follow
(`batch_size`), and the worker answers each with its own Reply.

Large bodies (async inference, up to 1 GB) do not cross the socket: an Invoke with `body_file` or
`reply_file` is framed as its own kind (`INVOKE_FILES`), naming a file in the worker's scratch dir that
holds the input, and the file the worker writes an answer longer than `reply_over` bytes to (the Reply
then has the `REPLY_IN_FILE` flag and no body). Plain Invokes keep their frame byte for byte.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

if TYPE_CHECKING:
    from moorage.streaming.frames import StreamMessage

__all__ = [
    "Invoke",
    "LoadFailed",
    "Message",
    "Ping",
    "Pong",
    "ProtocolError",
    "Ready",
    "Reply",
    "WorkerSpec",
    "decode",
    "encode",
    "split_frames",
]

_LENGTH = struct.Struct("!I")
_INVOKE_HEAD = struct.Struct("!QHB")  # request id, batch size, torch threads (0 = unchanged)
_REPLY_OVER = struct.Struct("!Q")  # INVOKE_FILES: answers longer than this go to the reply file
_REPLY_HEAD = struct.Struct("!QHBI")  # request id, status, flags, handler time in µs
_PING = struct.Struct("!Q")
_STR_LEN = struct.Struct("!H")
_NONE: Final = 0xFFFF
MAX_FRAME: Final = 64 * 1024 * 1024  # far above the 6 MiB payload cap: only a bug gets near it

REPLY_TOO_LARGE: Final = 0x01  # the handler's body exceeded the response cap and was dropped
REPLY_IN_FILE: Final = 0x02  # the body is in the request's reply_file, not in the frame
INVOKE_FILES: Final = 7  # the frame kind of an Invoke that names a body file or a reply file


class ProtocolError(Exception):
    """A frame that does not parse: the peer is broken and the connection must be dropped."""


@dataclass(frozen=True)
class Invoke:
    kind: ClassVar[int] = 1
    request_id: int
    body: bytes
    content_type: str | None = None
    accept: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    batch_size: int = 1  # on the first frame of a batch: how many Invoke frames make the batch
    threads: int = 0  # torch intra-op threads to use for this request; 0 = leave as is
    body_file: str | None = None  # the input is this file (the worker reads, then removes it); body is b""
    reply_file: str | None = None  # an answer longer than reply_over goes to this file (no response cap)
    reply_over: int = 0
    # Not on the wire: the caller takes a streamed answer (moorage.streaming); the worker handle sends a
    # StreamOpen frame before this Invoke, and the worker sets it again when it reads that frame.
    stream: bool = False


@dataclass(frozen=True)
class Reply:
    kind: ClassVar[int] = 2
    request_id: int
    status: int
    body: bytes
    content_type: str | None = None
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    flags: int = 0
    model_us: int = 0  # how long the handler chain ran (ModelLatency)

    @property
    def too_large(self) -> bool:
        return bool(self.flags & REPLY_TOO_LARGE)

    @property
    def in_file(self) -> bool:
        return bool(self.flags & REPLY_IN_FILE)


@dataclass(frozen=True)
class Ready:
    """model_fn returned: the worker takes requests from now on."""

    kind: ClassVar[int] = 3
    pid: int
    load_seconds: float
    device: str


@dataclass(frozen=True)
class LoadFailed:
    """The worker could not load the model; `error` is what the user reads in FailureReason."""

    kind: ClassVar[int] = 4
    error: str
    detail: str  # traceback, for the log


@dataclass(frozen=True)
class Ping:
    kind: ClassVar[int] = 5
    token: int


@dataclass(frozen=True)
class Pong:
    kind: ClassVar[int] = 6
    token: int


Message = Invoke | Reply | Ready | LoadFailed | Ping | Pong


def _put_str(out: list[bytes], value: str | None) -> None:
    if value is None:
        out.append(_STR_LEN.pack(_NONE))
        return
    raw = value.encode("latin-1", "replace")
    if len(raw) >= _NONE:
        raise ProtocolError(f"header value of {len(raw)} bytes is too long to frame")
    out.append(_STR_LEN.pack(len(raw)))
    out.append(raw)


def _put_headers(out: list[bytes], headers: tuple[tuple[str, str], ...]) -> None:
    out.append(_STR_LEN.pack(len(headers)))
    for name, value in headers:
        _put_str(out, name)
        _put_str(out, value)


def _path_field(path: str | None) -> str | None:
    """A path as a frame string: its bytes, one latin-1 character each, so any path survives."""
    return None if path is None else os.fsencode(path).decode("latin-1")


def _path_of(field: str | None) -> str | None:
    return None if field is None else os.fsdecode(field.encode("latin-1"))


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError("frame ends inside a field")
        piece = self.data[self.pos : end]
        self.pos = end
        return piece

    def string(self) -> str | None:
        (n,) = _STR_LEN.unpack(self.take(2))
        if n == _NONE:
            return None
        return bytes(self.take(n)).decode("latin-1")

    def headers(self) -> tuple[tuple[str, str], ...]:
        (count,) = _STR_LEN.unpack(self.take(2))
        pairs = []
        for _ in range(count):
            name, value = self.string(), self.string()
            if name is None or value is None:
                raise ProtocolError("header without a name or value")
            pairs.append((name, value))
        return tuple(pairs)

    def rest(self) -> bytes:
        piece = bytes(self.data[self.pos :])
        self.pos = len(self.data)
        return piece


def encode(message: Message) -> list[bytes]:
    """Frame a message as a list of byte strings (the body last, uncopied) for writelines/sendmsg."""
    parts: list[bytes] = [b"", bytes((message.kind,))]
    body = b""
    if isinstance(message, Invoke):
        parts.append(_INVOKE_HEAD.pack(message.request_id, message.batch_size, message.threads))
        _put_str(parts, message.content_type)
        _put_str(parts, message.accept)
        _put_headers(parts, message.headers)
        body = message.body
        if message.body_file is not None or message.reply_file is not None:
            parts[1] = bytes((INVOKE_FILES,))
            _put_str(parts, _path_field(message.body_file))
            _put_str(parts, _path_field(message.reply_file))
            parts.append(_REPLY_OVER.pack(message.reply_over))
    elif isinstance(message, Reply):
        parts.append(
            _REPLY_HEAD.pack(
                message.request_id, message.status, message.flags, min(message.model_us, 0xFFFFFFFF)
            )
        )
        _put_str(parts, message.content_type)
        _put_str(parts, message.reason)
        _put_headers(parts, message.headers)
        body = message.body
    elif isinstance(message, Ping | Pong):
        parts.append(_PING.pack(message.token))
    else:
        parts.append(json.dumps(asdict(message)).encode())
    if body:
        parts.append(body)
    length = sum(len(p) for p in parts)
    if length > MAX_FRAME:
        raise ProtocolError(f"message of {length} bytes exceeds the frame limit")
    parts[0] = _LENGTH.pack(length)
    return parts


def decode(frame: bytes | memoryview) -> Message | StreamMessage:
    """Parse one frame's content (without its length prefix)."""
    view = memoryview(frame)
    if not view:
        raise ProtocolError("empty frame")
    kind = view[0]
    cursor = _Cursor(view, 1)
    try:
        if kind == Invoke.kind:
            request_id, batch_size, threads = _INVOKE_HEAD.unpack(cursor.take(_INVOKE_HEAD.size))
            content_type, accept = cursor.string(), cursor.string()
            headers = cursor.headers()
            return Invoke(request_id, cursor.rest(), content_type, accept, headers, batch_size, threads)
        if kind == INVOKE_FILES:
            request_id, batch_size, threads = _INVOKE_HEAD.unpack(cursor.take(_INVOKE_HEAD.size))
            content_type, accept = cursor.string(), cursor.string()
            headers = cursor.headers()
            body_file, reply_file = _path_of(cursor.string()), _path_of(cursor.string())
            (reply_over,) = _REPLY_OVER.unpack(cursor.take(_REPLY_OVER.size))
            return Invoke(
                request_id,
                cursor.rest(),
                content_type,
                accept,
                headers,
                batch_size,
                threads,
                body_file=body_file,
                reply_file=reply_file,
                reply_over=reply_over,
            )
        if kind == Reply.kind:
            request_id, status, flags, model_us = _REPLY_HEAD.unpack(cursor.take(_REPLY_HEAD.size))
            content_type, reason = cursor.string(), cursor.string()
            headers = cursor.headers()
            return Reply(request_id, status, cursor.rest(), content_type, reason, headers, flags, model_us)
        if kind >= 16:  # a streamed answer's frames (moorage.streaming.frames)
            from moorage.streaming.frames import STREAM_KINDS, decode_stream

            if kind in STREAM_KINDS:
                return decode_stream(kind, view[1:])
        if kind == Ping.kind:
            return Ping(_PING.unpack(cursor.take(_PING.size))[0])
        if kind == Pong.kind:
            return Pong(_PING.unpack(cursor.take(_PING.size))[0])
        fields: dict[str, Any] = json.loads(bytes(view[1:]))
        if kind == Ready.kind:
            return Ready(**fields)
        if kind == LoadFailed.kind:
            return LoadFailed(**fields)
    except (struct.error, ValueError, TypeError, RecursionError) as exc:  # RecursionError: JSON too deep
        raise ProtocolError(f"malformed message of kind {kind}: {exc}") from exc
    raise ProtocolError(f"unknown message kind {kind}")


def split_frames(buffer: bytearray) -> list[bytes]:
    """Remove and return every complete frame at the start of `buffer` (the rest stays)."""
    frames: list[bytes] = []
    pos = 0
    size = len(buffer)
    while size - pos >= 4:
        (length,) = _LENGTH.unpack_from(buffer, pos)
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds the frame limit")
        if size - pos - 4 < length:
            break
        frames.append(bytes(buffer[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    if pos:
        del buffer[:pos]
    return frames


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to load its model, as plain JSON-able data."""

    endpoint: str
    variant: str
    instance_id: str
    worker_index: int
    model_dir: str
    code_dir: str | None
    deps_dir: str | None
    program: str
    environment: dict[str, str] = field(default_factory=dict)
    default_accept: str = "application/json"
    max_response_bytes: int = 6 * 1024 * 1024
    npy_allow_pickle: bool = False
    tracebacks_in_errors: bool = False
    batch_size: int = 1
    torch_threads: int = 0  # fixed intra-op threads; 0 = chosen per request by the server (runtime/cpu.py)
    max_threads: int = 1  # the most threads a request may get: the instance's vCPUs, within this machine
    gpu_id: int | None = None
    memory_limit_bytes: int | None = None
    # The kernel sandbox (moorage.sandbox): on unless MOORAGE_SANDBOX=off. scratch_dir is the worker's
    # only writable directory (HOME and TMPDIR), made by the backend; None: a private temp dir.
    sandbox: bool = True
    scratch_dir: str | None = None
    sandbox_writable: list[str] = field(default_factory=list)  # MOORAGE_SANDBOX_WRITABLE

    @property
    def model_dir_path(self) -> Path:
        return Path(self.model_dir)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))
