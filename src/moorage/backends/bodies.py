"""How a backend carries an async request's large body (worker/protocol.py's INVOKE_FILES).

The local backend hard-links the input into the worker's scratch dir and moves the worker's answer
file back out (`link_or_copy`, `take_reply_file`); the Ray backend, whose actors may run on other nodes
in a private scratch dir, carries the input inline instead, up to a limit (`carried`, `inline`).
docs/async.md, "Large bodies", says what each means for users.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import shutil
from collections.abc import Sequence

from moorage.worker.protocol import Invoke, Reply

__all__ = ["RAY_INLINE_LIMIT", "carried", "inline", "link_or_copy", "take_reply_file"]

# The largest async input carried to an actor (read whole into the server, sent as Ray bytes): below
# the worker protocol's frame limit.
RAY_INLINE_LIMIT = 60 * 1024 * 1024


def link_or_copy(source: str, target: str) -> None:
    """`target` becomes `source`'s content: a hard link when both are on one filesystem (the data dir),
    else a kernel-side copy (sendfile), never through this process's memory."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copyfile(source, target)


def take_reply_file(reply: Reply, files: tuple[str, str] | None) -> Reply:
    """A Reply whose body the worker wrote to its scratch dir: move that file to the path the server
    chose (so it outlives the worker's scratch dir). The server reads it without following links and
    only if it is a plain file (asyncinf/bodies.py), since the worker could have planted anything there."""
    if files is None:
        return reply  # unconfined worker: it wrote the server's file itself
    try:
        os.rename(*files)
    except OSError as exc:
        text = f"the worker said its answer was in {files[0]}, which cannot be moved ({exc})"
        return Reply(reply.request_id, 500, text.encode(), None, text)
    return reply


def carried(
    messages: Sequence[Invoke], futures: list[asyncio.Future[Reply]]
) -> list[tuple[Invoke, asyncio.Future[Reply]]]:
    """The requests to send, each with its future; a large input that cannot be carried is answered
    at once instead (see `inline`), and the batch's first frame counts what is left."""
    pairs: list[tuple[Invoke, asyncio.Future[Reply]]] = []
    for message, future in zip(messages, futures, strict=True):
        if message.body_file is None and message.reply_file is None:
            pairs.append((message, future))
            continue
        sent = inline(message)
        if isinstance(sent, Reply):
            future.set_result(sent)
        else:
            pairs.append((sent, future))
    if pairs and pairs[0][0].batch_size != len(pairs):
        pairs[0] = (dataclasses.replace(pairs[0][0], batch_size=len(pairs)), pairs[0][1])
    return pairs


def inline(message: Invoke) -> Invoke | Reply:
    """A large-body request as the actor takes it: Ray moves bytes, not files (the actor may run on
    another node, in a private scratch dir), so the input is read into this process and sent inline, up
    to `RAY_INLINE_LIMIT`; a larger one is refused with a 413 saying so. The answer comes back inline,
    within the real-time response cap (docs/async.md, "Large bodies")."""
    if message.body_file is None:
        return dataclasses.replace(message, reply_file=None)
    size = os.path.getsize(message.body_file)
    if size > RAY_INLINE_LIMIT:
        text = (
            f"The input ({size} bytes) is larger than the {RAY_INLINE_LIMIT} bytes the Ray backend "
            "carries to a worker: on --backend ray a request's input is held whole in the server's "
            "memory. Use --backend local for inputs up to 1 GB."
        )
        return Reply(message.request_id, 413, text.encode(), "text/plain", text)
    with open(message.body_file, "rb") as handle:
        body = handle.read()
    return dataclasses.replace(message, body=body, body_file=None, reply_file=None)
