"""The server's own AWS credentials, held in this process only and out of its environment.

The server may need AWS credentials of its own (to read model data from a real S3, to publish to SNS).
They usually arrive as `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` variables. Left in `os.environ`,
every process the server starts later would inherit them unless each launch remembered to scrub them;
so `moorage serve` takes them out once, at start, and every AWS client the server makes gets them from
here (`session()`). Reading them through `/proc/<pid>/environ` or the process's memory is blocked
separately: the server is non-dumpable and workers are sandboxed (docs/security.md).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

import boto3

__all__ = ["SECRET_VARIABLES", "session", "take_from"]

SECRET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@dataclass(frozen=True)
class _Keys:
    access_key_id: str
    secret_access_key: str
    session_token: str | None


_held: _Keys | None = None


def take_from(environ: MutableMapping[str, str]) -> bool:
    """Move the AWS key variables out of `environ` (os.environ) into this process; True if there were keys.

    A key id without its secret (or the reverse) is removed too: botocore would ignore half a pair.
    """
    global _held
    values = {name: environ.pop(name, None) for name in SECRET_VARIABLES}
    key_id, secret = values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"]
    if key_id and secret:
        token = values["AWS_SESSION_TOKEN"] or values["AWS_SECURITY_TOKEN"]
        _held = _Keys(key_id, secret, token or None)
    return _held is not None


def session() -> boto3.session.Session:
    """A boto3 session with the server's own keys when it was started with some, else boto3's usual
    chain (shared credentials file, profile, instance metadata)."""
    if _held is None:
        return boto3.session.Session()
    return boto3.session.Session(
        aws_access_key_id=_held.access_key_id,
        aws_secret_access_key=_held.secret_access_key,
        aws_session_token=_held.session_token,
    )
