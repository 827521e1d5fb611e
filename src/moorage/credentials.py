"""The access keys `moorage serve --auth sigv4` accepts: created, listed and deleted, kept in the data dir.

A key is an AWS-style pair (an `AKIA…` id and a 40-character secret) that unchanged boto3, the aws CLI
and the SageMaker SDK sign requests with. SigV4 needs the server to hold the secret itself, so the
file is the secret store: `credentials.json`, mode 0600, in the 0700 data dir, always replaced whole
(write a temp file, fsync, rename) under a lock so that two `moorage credentials` commands cannot lose
each other's keys. The server re-reads it when it changes, so a deleted key stops working at once.

A key has a role: `admin` may do everything; `invoke` may only call InvokeEndpoint, optionally only
on the endpoints it names.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import re
import secrets
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from moorage.errors import ConfigError, MoorageError

__all__ = [
    "CREDENTIALS_FILE",
    "AccessKey",
    "Keyring",
    "NoSuchAccessKey",
    "Role",
    "create_key",
    "credentials_path",
    "delete_key",
    "ensure_data_dir",
    "list_keys",
    "require_keys",
]

log = logging.getLogger("moorage.credentials")

CREDENTIALS_FILE = "credentials.json"
_LOCK_FILE = "credentials.lock"
_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")

Role = Literal["admin", "invoke"]
ROLES: tuple[Role, ...] = ("admin", "invoke")


class NoSuchAccessKey(MoorageError):
    """`moorage credentials delete` named a key the data dir does not hold (IAM says NoSuchEntity)."""

    code = "NoSuchEntity"
    status = 404


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    role: Role = "admin"
    endpoints: tuple[str, ...] = ()  # invoke role only: the endpoints it may call; empty means all
    created: str = ""  # ISO 8601, UTC

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_invoke(self, endpoint: str) -> bool:
        return self.is_admin or not self.endpoints or endpoint in self.endpoints

    def to_json(self) -> dict[str, object]:
        return {
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "Role": self.role,
            "Endpoints": list(self.endpoints),
            "CreateDate": self.created,
        }

    @classmethod
    def from_json(cls, item: object) -> AccessKey:
        if not isinstance(item, dict):
            raise ValueError("each access key must be a JSON object")
        key_id, secret = item.get("AccessKeyId"), item.get("SecretAccessKey")
        role, endpoints = item.get("Role", "admin"), item.get("Endpoints", [])
        if not isinstance(key_id, str) or not key_id or not isinstance(secret, str) or not secret:
            raise ValueError("an access key needs a non-empty AccessKeyId and SecretAccessKey")
        if role not in ROLES:
            raise ValueError(f"access key {key_id} has an unknown Role {role!r}")
        if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
            raise ValueError(f"access key {key_id}: Endpoints must be a list of endpoint names")
        created = item.get("CreateDate", "")
        return cls(
            access_key_id=key_id,
            secret_access_key=secret,
            role="admin" if role == "admin" else "invoke",
            endpoints=tuple(endpoints),
            created=created if isinstance(created, str) else "",
        )


def credentials_path(data_dir: Path) -> Path:
    return data_dir / CREDENTIALS_FILE


def ensure_data_dir(data_dir: Path) -> None:
    """The data dir exists and only its owner can enter it (it holds secrets and user code)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)


def _parse(text: str, path: Path) -> dict[str, AccessKey]:
    try:
        document = json.loads(text)
        items = document["AccessKeys"] if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise ValueError('the file must be a JSON object with an "AccessKeys" list')
        keys = [AccessKey.from_json(item) for item in items]
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"The credentials file {path} is damaged: {exc}") from None
    return {key.access_key_id: key for key in keys}


def _read(path: Path) -> dict[str, AccessKey]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return _parse(text, path)


def _write(path: Path, keys: Sequence[AccessKey]) -> None:
    """Replace the file whole: a reader sees the old keys or the new ones, never half of either."""
    document = {"AccessKeys": [key.to_json() for key in keys]}
    data = (json.dumps(document, indent=2) + "\n").encode()
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)  # the umask could only narrow it, but say it outright
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[Path]:
    ensure_data_dir(data_dir)
    fd = os.open(data_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield credentials_path(data_dir)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_key(data_dir: Path, role: Role = "admin", endpoints: Sequence[str] = ()) -> AccessKey:
    """A new key, saved before it is returned; `endpoints` limits an `invoke` key to those endpoints."""
    if role not in ROLES:
        raise ConfigError(f"--role {role!r} must be one of: {', '.join(ROLES)}")
    if endpoints and role != "invoke":
        raise ConfigError("--endpoints limits an invoke key; use it with --role invoke")
    for name in endpoints:
        if len(name) > 63 or not _ENDPOINT_NAME.match(name):
            raise ConfigError(f"{name!r} is not a valid endpoint name")
    with _locked(data_dir) as path:
        keys = _read(path)
        key_id = "AKIA" + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))
        while key_id in keys:  # 36^16 ids: a clash is as good as impossible, but cheap to rule out
            key_id = "AKIA" + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))
        key = AccessKey(
            access_key_id=key_id,
            secret_access_key="".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40)),
            role=role,
            endpoints=tuple(dict.fromkeys(endpoints)),
            created=_now(),
        )
        _write(path, [*keys.values(), key])
    return key


def list_keys(data_dir: Path) -> list[AccessKey]:
    return list(_read(credentials_path(data_dir)).values())


def delete_key(data_dir: Path, access_key_id: str) -> None:
    with _locked(data_dir) as path:
        keys = _read(path)
        if access_key_id not in keys:
            raise NoSuchAccessKey(f"The access key {access_key_id} does not exist in {path}.")
        del keys[access_key_id]
        _write(path, list(keys.values()))


def require_keys(data_dir: Path) -> None:
    """Refuse to start an authenticating server that no client could ever sign a request for."""
    path = credentials_path(data_dir)
    hint = f"Create one with: moorage credentials create --data-dir {data_dir}"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"--auth sigv4 needs an access key, and {path} does not exist. {hint}") from None
    if mode & 0o077:
        raise ConfigError(
            f"The credentials file {path} can be read by other users (mode {mode & 0o777:o}); "
            f"run: chmod 600 {path}"
        )
    if not _read(path):
        raise ConfigError(f"--auth sigv4 needs an access key, and {path} holds none. {hint}")


class Keyring:
    """The keys a running server accepts, re-read whenever the file changes (create/delete apply at once).

    A damaged file fails closed: no key is accepted until it is fixed (and the log says why).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, AccessKey] = {}

    def get(self, access_key_id: str) -> AccessKey | None:
        self._refresh()
        return self._keys.get(access_key_id)

    def __len__(self) -> int:
        self._refresh()
        return len(self._keys)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._keys = None, {}
            return
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._keys = _read(self.path)
        except (ConfigError, OSError) as exc:
            log.error("no access key is accepted until this is fixed: %s", exc)
            self._keys = {}
