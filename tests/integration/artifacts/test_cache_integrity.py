"""A tree in the shared cache that changed after extraction is never served (security-probe-2 row 66).

The probe's handler appended code to another model's extracted tree; a later endpoint deployed from
the untouched archive ran it, with or without MOORAGE_MODEL_DATA_SHA256 pinned. Here the test does
the same write a malicious worker running as root would do, then deploys again from the archive.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hosting import deploy
from support.model_trees import (
    CLEAN_HANDLER,
    TAMPER,
    deployment_log,
    handler_archive,
    serving,
    sha256_of,
    tree_of,
)
from support.servers import RunningServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serving(tmp_path_factory, {})


def served(server: RunningServer, endpoint: str) -> str:
    runtime = server.client("sagemaker-runtime")
    body = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}", ContentType="application/json")["Body"]
    answer: dict[str, str] = json.loads(body.read())
    return answer["served"]


@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "sha256-pinned"])
def test_a_tampered_tree_is_discarded_and_extracted_again(
    server: RunningServer, tmp_path: Path, pinned: bool
) -> None:
    sm = server.client("sagemaker")
    archive = handler_archive(tmp_path, "ok")
    env = {"MOORAGE_MODEL_DATA_SHA256": sha256_of(archive)} if pinned else {}
    first = deploy(sm, archive, env=env)
    assert served(server, first) == "clean"
    tree = tree_of(server.data_dir, archive)
    handler = tree / "code" / "inference.py"
    # Sealed: no write bits (a root worker ignores them; the manifest is what catches the change).
    assert stat.S_IMODE(handler.stat().st_mode) & 0o222 == 0
    assert stat.S_IMODE(tree.stat().st_mode) & 0o222 == 0

    mode = stat.S_IMODE(handler.stat().st_mode)
    os.chmod(handler, mode | 0o200)
    with handler.open("a") as tampered:
        tampered.write(TAMPER)
    os.chmod(handler, mode)  # a careful attacker puts the mode back

    second = deploy(sm, archive, env=env)

    assert served(server, second) == "clean"
    log = deployment_log(server.data_dir, second)
    assert "was changed after it was extracted: code/inference.py has" in log
    assert "discarding it and extracting the archive again" in log
    assert f"extracted {archive}:" in log
    assert handler.read_text() == CLEAN_HANDLER  # the tree in the cache is the archive's again


def test_an_unchanged_tree_is_reused_after_verification(server: RunningServer, tmp_path: Path) -> None:
    sm = server.client("sagemaker")
    archive = handler_archive(tmp_path, "ok", weights_bytes=1024 * 1024)
    deploy(sm, archive)
    inode = tree_of(server.data_dir, archive).stat().st_ino

    second = deploy(sm, archive)

    assert served(server, second) == "clean"
    log = deployment_log(server.data_dir, second)
    assert "is unchanged since it was prepared as sha256:" in log
    assert "was changed after it was extracted" not in log
    assert tree_of(server.data_dir, archive).stat().st_ino == inode  # not extracted again
