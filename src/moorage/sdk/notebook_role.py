"""The notebook-instance metadata file that lets the SageMaker SDK's `get_execution_role()` work offline.

On a SageMaker notebook instance, `Session.get_caller_identity_arn()` (SDK 2.x) first reads
`/opt/ml/metadata/resource-metadata.json`; when that file has an `ExecutionRoleArn`, the SDK returns
it without any network call. Anywhere else it asks STS at a fixed AWS address, which cannot work
offline. Writing the file is offered, never imposed: only on request, never over an existing file (it
may be a real notebook instance's), and with a note of exactly what to remove to undo it.

The path is the SDK's constant, so it is fixed; `path` exists for tests of the logic around it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from moorage.errors import ConfigError, MoorageError

__all__ = ["NOTEBOOK_METADATA_FILE", "NotebookRole", "role_arn", "write_notebook_metadata"]

# sagemaker/session.py: NOTEBOOK_METADATA_FILE (SDK 2.x), read by get_caller_identity_arn().
NOTEBOOK_METADATA_FILE = Path("/opt/ml/metadata/resource-metadata.json")
RESOURCE_NAME = "moorage"  # the SDK reads ResourceName only when the file has no ExecutionRoleArn
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")  # IAM's role-name alphabet
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/(?:[\w+=,.@/-]+/)?[\w+=,.@-]{1,64}$")


@dataclass(frozen=True)
class NotebookRole:
    """What `write_notebook_metadata` did: the file, the directories it had to create, and whether the
    file was already there with the same role (then nothing was written)."""

    path: Path
    role_arn: str
    created_dirs: tuple[Path, ...] = ()
    already_there: bool = False

    def undo_command(self) -> str:
        """The shell command that removes exactly what was created."""
        parts = [f"rm {self.path}"]
        if self.created_dirs:  # deepest first, so each is empty when removed
            parts.append("rmdir " + " ".join(str(d) for d in sorted(self.created_dirs, reverse=True)))
        return " && ".join(parts)

    def undo(self) -> None:
        """Remove the file and the directories created for it (a directory someone else has since put
        files in is left, with an OSError saying so)."""
        if self.already_there:
            return
        self.path.unlink(missing_ok=True)
        for directory in sorted(self.created_dirs, reverse=True):
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()

    def describe(self) -> str:
        if self.already_there:
            return f"{self.path} already names {self.role_arn}; get_execution_role() returns it."
        return (
            f"Wrote {self.path}: get_execution_role() now returns {self.role_arn} without calling AWS. "
            f"Undo with: {self.undo_command()} (or .undo() on this object)"
        )


def role_arn(role: str, account_id: str) -> str:
    """A role name becomes the ARN moorage's IAM gives it (`arn:aws:iam::<account>:role/<name>`)."""
    role = role.strip()
    if _ROLE_ARN.match(role):
        return role
    if _ROLE_NAME.match(role):
        return f"arn:aws:iam::{account_id}:role/{role}"
    raise ConfigError(
        f"{role!r} is neither a role name (letters, digits and +=,.@_-, up to 64) "
        "nor a role ARN (arn:aws:iam::<account>:role/<name>)."
    )


def write_notebook_metadata(arn: str, path: Path = NOTEBOOK_METADATA_FILE) -> NotebookRole:
    """Create the metadata file naming `arn`; refuse if a file is there with anything else."""
    existing = _existing_role(path)
    if existing is not None:
        if existing == arn:
            return NotebookRole(path, arn, already_there=True)
        raise MoorageError(
            f"{path} already exists and names {existing or 'no ExecutionRoleArn'}; moorage does not "
            "overwrite it (on a SageMaker notebook instance it is the platform's). Pass that role to "
            f"PyTorchModel(role=...) instead, or remove the file yourself first."
        )
    created: list[Path] = []
    for directory in reversed(path.parents):
        if not directory.exists():
            created.append(directory)
    document = {"ResourceName": RESOURCE_NAME, "ExecutionRoleArn": arn}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for directory in created:
            os.chmod(directory, 0o755)  # the SDK runs as any user: it must be able to read the file
        # O_EXCL: if another process wrote the file since the check above, it stays untouched.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise MoorageError(f"{path} appeared while moorage was writing it; it was left as it is.") from None
    except PermissionError:
        NotebookRole(path, arn, tuple(created)).undo()  # the directories made before the refusal
        raise MoorageError(
            f"Cannot create {path} as this user (it lives under /opt, usually root's). Run the same "
            "command with sudo, or pass a role name or ARN to PyTorchModel(role=...) instead of "
            "get_execution_role()."
        ) from None
    with os.fdopen(fd, "w") as file:
        file.write(json.dumps(document, indent=2) + "\n")
    return NotebookRole(path, arn, tuple(created))


def _existing_role(path: Path) -> str | None:
    """The ARN an existing file names ("" when it names none), or None when there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MoorageError(f"{path} exists but cannot be read ({exc}); moorage leaves it alone.") from None
    try:
        document = json.loads(text)
    except ValueError:
        return ""
    value = document.get("ExecutionRoleArn") if isinstance(document, dict) else None
    return value if isinstance(value, str) else ""
