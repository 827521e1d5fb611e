"""Run the `moorage` command as a user runs it: a subprocess with only the environment a shell has.

`Cli.run` starts `python -m moorage ...` with AWS settings isolated from the developer's (no profile,
no config file, test keys); `MOORAGE_URL` (when set) names the server, as the README tells users.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from support.servers import base_environment

TIMEOUT_S = 240  # a generous bound; a deploy on a busy machine takes seconds


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:  # what pytest shows when an assertion about a run fails
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass(frozen=True)
class Cli:
    home: Path
    environment: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Result:
        completed = subprocess.run(
            [sys.executable, "-m", "moorage", *args],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            env={**self.environment, **(env or {})},
            cwd=cwd or self.home,
            timeout=TIMEOUT_S,
            check=False,
        )
        return Result(completed.returncode, completed.stdout.decode(), completed.stderr.decode())


def isolated_environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """No AWS profile or config of the developer's leaks in: keys, region and files are the test's."""
    return base_environment(
        uuid.uuid4().hex,
        {
            "HOME": str(home),
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **(extra or {}),
        },
    )
