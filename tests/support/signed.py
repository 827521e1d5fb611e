"""Keys for `moorage serve --auth sigv4`, made the way a user makes them, and what a signed test module
shares: the server, an admin key, an invoke-only key and the one endpoint that key may call.

The auth, console and security suites all sign with these, so a key is always created by the CLI
(`moorage credentials create --output json`), never written into the data dir by a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from support.servers import RunningServer

Key = tuple[str, str]


def create_key(data_dir: Path, *args: str) -> Key:
    """`moorage credentials create --output json`, parsed as a script parses `aws iam create-access-key`."""
    result = subprocess.run(
        [sys.executable, "-m", "moorage", "credentials", "create", "--data-dir", str(data_dir),
         "--output", "json", *args],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    created = json.loads(result.stdout)["AccessKey"]
    return created["AccessKeyId"], created["SecretAccessKey"]


@dataclass
class Secured:
    """A module's signed server; `server_secret` is the server's own AWS secret where the module gave it
    one (a worker must never see it)."""

    server: RunningServer
    admin: Key
    invoker: Key
    endpoint: str
    server_secret: str = ""
