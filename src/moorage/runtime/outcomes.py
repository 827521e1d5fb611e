"""What became of one request sent to a worker pool: answered, lost with its worker, or timed out.

The pool reports outcomes as data; each HTTP edge decides how to show them (the container route as
SageMaker's container would, InvokeEndpoint as SageMaker's front end would).
"""

from __future__ import annotations

from dataclasses import dataclass

from moorage.streaming.relay import PartStream
from moorage.worker.protocol import Reply

__all__ = ["Answered", "Died", "Outcome", "TimedOut"]


@dataclass(frozen=True)
class Answered:
    """The handler chain ran; `reply.status` may still be an error status set by the handler.

    `stream`: the handler streams (only for a request sent with `stream`); `reply` holds its status,
    content type, headers and first part, and the parts, that one included, come from `stream`."""

    reply: Reply
    stream: PartStream | None = None


@dataclass(frozen=True)
class Died:
    """The worker died while the request was on it; `detail` says how (signal, exit status)."""

    detail: str


@dataclass(frozen=True)
class TimedOut:
    """No answer within the invocation timeout; the worker running it (if any) is killed and replaced."""

    timeout_s: float


Outcome = Answered | Died | TimedOut
