"""The notebook metadata file behind `get_execution_role()`: written on request, never over another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moorage.errors import ConfigError, MoorageError
from moorage.sdk.notebook_role import role_arn, write_notebook_metadata

ACCOUNT = "000000000000"


@pytest.mark.parametrize(
    ("role", "arn"),
    [
        ("SageMakerRole", "arn:aws:iam::000000000000:role/SageMakerRole"),
        ("  a.b@c-d_e+f=g,h  ", "arn:aws:iam::000000000000:role/a.b@c-d_e+f=g,h"),
        ("arn:aws:iam::123456789012:role/Other", "arn:aws:iam::123456789012:role/Other"),
        ("arn:aws:iam::123456789012:role/service-role/X", "arn:aws:iam::123456789012:role/service-role/X"),
    ],
)
def test_a_role_name_becomes_an_arn_in_the_servers_account(role: str, arn: str) -> None:
    assert role_arn(role, ACCOUNT) == arn


@pytest.mark.parametrize("role", ["", "two words", "x" * 65, "arn:aws:iam::12:role/Short", "a/b"])
def test_anything_else_is_refused(role: str) -> None:
    with pytest.raises(ConfigError, match="neither a role name"):
        role_arn(role, ACCOUNT)


def test_the_file_is_what_the_sdk_reads_and_the_undo_removes_what_was_created(tmp_path: Path) -> None:
    path = tmp_path / "opt" / "ml" / "metadata" / "resource-metadata.json"
    written = write_notebook_metadata("arn:aws:iam::000000000000:role/R", path)
    assert json.loads(path.read_text()) == {
        "ResourceName": "moorage",
        "ExecutionRoleArn": "arn:aws:iam::000000000000:role/R",
    }
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert written.created_dirs == (
        tmp_path / "opt",
        tmp_path / "opt" / "ml",
        tmp_path / "opt" / "ml" / "metadata",
    )
    assert written.undo_command() == (
        f"rm {path} && rmdir {tmp_path}/opt/ml/metadata {tmp_path}/opt/ml {tmp_path}/opt"
    )
    assert "Undo with: rm " in written.describe()


def test_the_same_role_again_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "resource-metadata.json"
    write_notebook_metadata("arn:aws:iam::000000000000:role/R", path)
    stamp = path.stat().st_mtime_ns
    again = write_notebook_metadata("arn:aws:iam::000000000000:role/R", path)
    assert again.already_there and again.created_dirs == ()
    assert path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("existing", "named"),
    [
        (
            '{"ExecutionRoleArn": "arn:aws:iam::111111111111:role/Real"}',
            "arn:aws:iam::111111111111:role/Real",
        ),
        ('{"ResourceName": "my-notebook-instance"}', "no ExecutionRoleArn"),
        ("not json", "no ExecutionRoleArn"),
    ],
)
def test_an_existing_file_is_never_overwritten(tmp_path: Path, existing: str, named: str) -> None:
    path = tmp_path / "resource-metadata.json"
    path.write_text(existing)
    with pytest.raises(MoorageError, match="does not overwrite it") as raised:
        write_notebook_metadata("arn:aws:iam::000000000000:role/R", path)
    assert named in raised.value.message
    assert path.read_text() == existing


def test_undo_removes_the_file_and_the_directories_made_for_it(tmp_path: Path) -> None:
    path = tmp_path / "opt" / "ml" / "metadata" / "resource-metadata.json"
    written = write_notebook_metadata("arn:aws:iam::000000000000:role/R", path)
    written.undo()
    assert list(tmp_path.iterdir()) == []
    written.undo()  # twice is harmless
