"""`TargetModel` → the URL of one archive under the endpoint's prefix, refusing paths that leave it.

The header is a path relative to ModelDataUrl (spec §c.1): `"customer-42.tar.gz"` or `"a/b/c.tar.gz"`.
A `..` segment, an absolute path or a backslash would let a caller name an object outside the prefix
(another tenant's models, or any file for a local prefix), so they are refused before anything is read;
a local prefix is also checked after symlinks are resolved.
"""

from __future__ import annotations

import re
from pathlib import Path

from moorage.errors import ValidationError

__all__ = ["check_target", "target_url"]

_PRINTABLE = re.compile(r"\A\S[\x20-\x7e]*\Z")


def check_target(target: str) -> None:
    """The header's own constraints (botocore does not check them) and the escape rules."""
    if not 1 <= len(target) <= 1024 or not _PRINTABLE.match(target):
        raise ValidationError(
            "1 validation error detected: Value at 'targetModel' failed to satisfy constraint: Member must "
            "have length between 1 and 1024 and satisfy regular expression pattern: \\A\\S[\\p{Print}]*\\z"
        )
    segments = target.split("/")
    if target.startswith("/") or "\\" in target or any(part in ("..", ".") for part in segments):
        raise ValidationError(
            f"TargetModel {target!r} is not a path under the endpoint's ModelDataUrl prefix: it must be "
            "relative (no leading '/'), without '.' or '..' segments or backslashes, for example "
            "'customer-42.tar.gz' or 'team/model-1.tar.gz'."
        )


def target_url(prefix: str, target: str) -> str:
    """The archive's URL: `prefix` joined with the checked `target`."""
    check_target(target)
    if prefix.startswith("s3://"):
        return _join(prefix, target)
    base = Path(prefix.removeprefix("file://")).resolve()
    path = (base / target).resolve()
    if not path.is_relative_to(base):
        raise ValidationError(
            f"TargetModel {target!r} resolves outside the endpoint's model directory {base} "
            "(through a symbolic link); it is refused."
        )
    return f"file://{path}"


def _join(prefix: str, target: str) -> str:
    return (prefix if prefix.endswith("/") else prefix + "/") + target
