"""Access keys in the data dir: the files' modes, the CLI's output, and a keyring that follows the file."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from pathlib import Path

import pytest

from moorage.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from moorage.credentials import (
    Keyring,
    NoSuchAccessKey,
    create_key,
    credentials_path,
    delete_key,
    list_keys,
    require_keys,
)
from moorage.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_key_looks_like_an_aws_key_and_is_stored_privately(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = create_key(data)
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", key.access_key_id)
    assert re.fullmatch(r"[A-Za-z0-9+/]{40}", key.secret_access_key)
    assert key.role == "admin" and key.is_admin and key.may_invoke("anything")
    assert mode(data) == 0o700
    assert mode(credentials_path(data)) == 0o600
    assert key.secret_access_key not in repr(key)
    assert list_keys(data) == [key]
    leftovers = [p.name for p in data.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_an_existing_open_data_dir_is_closed_to_others(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    create_key(data)
    assert mode(data) == 0o700


def test_invoke_keys_can_be_limited_to_endpoints(tmp_path: Path) -> None:
    key = create_key(tmp_path, "invoke", ["a", "b", "a"])
    assert key.endpoints == ("a", "b") and not key.is_admin
    assert key.may_invoke("a") and not key.may_invoke("c")
    assert create_key(tmp_path, "invoke").may_invoke("c")
    with pytest.raises(ConfigError, match="--role invoke"):
        create_key(tmp_path, "admin", ["a"])
    with pytest.raises(ConfigError, match="not a valid endpoint name"):
        create_key(tmp_path, "invoke", ["no_underscores"])


def test_delete_removes_only_the_named_key(tmp_path: Path) -> None:
    first, second = create_key(tmp_path), create_key(tmp_path)
    delete_key(tmp_path, first.access_key_id)
    assert list_keys(tmp_path) == [second]
    with pytest.raises(NoSuchAccessKey):
        delete_key(tmp_path, first.access_key_id)


def test_concurrent_creates_lose_no_key(tmp_path: Path) -> None:
    made: list[str] = []

    def create() -> None:
        made.append(create_key(tmp_path).access_key_id)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(made) == sorted(key.access_key_id for key in list_keys(tmp_path))
    assert len(made) == 8


def test_the_server_refuses_to_start_without_a_usable_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="moorage credentials create --data-dir"):
        require_keys(tmp_path)
    key = create_key(tmp_path)
    require_keys(tmp_path)
    delete_key(tmp_path, key.access_key_id)
    with pytest.raises(ConfigError, match="holds none"):
        require_keys(tmp_path)
    create_key(tmp_path)
    os.chmod(credentials_path(tmp_path), 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        require_keys(tmp_path)


def test_the_keyring_follows_the_file_and_fails_closed(tmp_path: Path) -> None:
    keyring = Keyring(credentials_path(tmp_path))
    assert len(keyring) == 0
    key = create_key(tmp_path)
    assert keyring.get(key.access_key_id) == key
    delete_key(tmp_path, key.access_key_id)
    assert keyring.get(key.access_key_id) is None
    other = create_key(tmp_path)
    assert keyring.get(other.access_key_id) == other
    credentials_path(tmp_path).write_text("{not json")
    assert keyring.get(other.access_key_id) is None
    assert len(keyring) == 0


def test_cli_create_prints_what_aws_iam_create_access_key_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["credentials", "create", "--data-dir", str(tmp_path), "--output", "json"]) == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["AccessKey"]
    assert sorted(printed["AccessKey"]) == ["AccessKeyId", "SecretAccessKey"]
    [stored] = list_keys(tmp_path)
    assert printed["AccessKey"] == {
        "AccessKeyId": stored.access_key_id,
        "SecretAccessKey": stored.secret_access_key,
    }


def test_cli_list_never_prints_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    admin = create_key(tmp_path)
    invoker = create_key(tmp_path, "invoke", ["ep-1"])
    for output in ("json", "text"):
        assert main(["credentials", "list", "--data-dir", str(tmp_path), "--output", output]) == EXIT_OK
        printed = capsys.readouterr().out
        assert admin.access_key_id in printed and invoker.access_key_id in printed
        assert admin.secret_access_key not in printed and invoker.secret_access_key not in printed
    main(["credentials", "list", "--data-dir", str(tmp_path), "--output", "json"])
    listed = json.loads(capsys.readouterr().out)["AccessKeyMetadata"]
    assert [(k["AccessKeyId"], k["Role"], k["Endpoints"], k["Status"]) for k in listed] == [
        (admin.access_key_id, "admin", [], "Active"),
        (invoker.access_key_id, "invoke", ["ep-1"], "Active"),
    ]


def test_cli_delete_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = create_key(tmp_path)
    assert main(["credentials", "delete", key.access_key_id, "--data-dir", str(tmp_path)]) == EXIT_OK
    assert list_keys(tmp_path) == []
    assert main(["credentials", "delete", key.access_key_id, "--data-dir", str(tmp_path)]) == EXIT_FAILED
    assert key.access_key_id in capsys.readouterr().err
    args = ["credentials", "create", "--endpoints", "a", "--data-dir", str(tmp_path)]
    assert main(args) == EXIT_USAGE
