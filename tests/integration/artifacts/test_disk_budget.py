"""A decompression bomb is refused before it can fill the disk (security-probe-2 rows 40 and 41).

The bomb is a small gzip whose one member declares and holds 64 MiB of zeros. Against a small
MOORAGE_MAX_EXTRACTED_BYTES it is refused from the declared size (row 41 already held). Against the
free disk it is refused too: rather than filling the disk, the test makes MOORAGE_DISK_RESERVE_BYTES
larger than any disk, so that no archive fits above the reserve.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import WaiterError

from support.hosting import FAST, deploy
from support.model_trees import serving, tree_of
from support.servers import RunningServer

pytestmark = pytest.mark.slow

BOMB_BYTES = 64 * 1024 * 1024
HUGE_RESERVE = 2**60  # 1 EiB: more than any disk's free space


def bomb(path: Path) -> Path:
    """A ~64 KiB tar.gz whose one member expands to BOMB_BYTES of zeros."""
    with tarfile.open(path, "w:gz", compresslevel=9) as archive:
        info = tarfile.TarInfo("model.bin")
        info.size = BOMB_BYTES
        with open("/dev/zero", "rb") as zeros:
            archive.addfile(info, zeros)
    assert path.stat().st_size < BOMB_BYTES // 100
    return path


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serving(tmp_path_factory, {"MOORAGE_MAX_EXTRACTED_BYTES": str(1024 * 1024)})


@pytest.fixture(scope="module")
def reserved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serving(tmp_path_factory, {"MOORAGE_DISK_RESERVE_BYTES": str(HUGE_RESERVE)})


def failure_of(server: RunningServer, archive: Path) -> str:
    sm = server.client("sagemaker")
    name = deploy(sm, archive, wait=False)
    with pytest.raises(WaiterError, match="Failed"):
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "Failed"
    return str(described["FailureReason"])


def assert_nothing_left(server: RunningServer, archive: Path) -> None:
    assert not tree_of(server.data_dir, archive).exists()
    assert list((server.data_dir / "cache" / "tmp").iterdir()) == []


def test_a_bomb_over_the_extraction_cap_is_refused(capped: RunningServer, tmp_path: Path) -> None:
    archive = bomb(tmp_path / "bomb.tar.gz")

    reason = failure_of(capped, archive)

    assert "'model.bin'" in reason
    assert "(MOORAGE_MAX_EXTRACTED_BYTES)" in reason
    assert_nothing_left(capped, archive)


def test_an_archive_that_would_eat_into_the_disk_reserve_is_refused(
    reserved: RunningServer, tmp_path: Path
) -> None:
    archive = bomb(tmp_path / "bomb.tar.gz")
    disk = shutil.disk_usage(reserved.data_dir)

    reason = failure_of(reserved, archive)

    assert reason.startswith("Production variant AllTraffic: not enough disk space for ")
    assert "'model.bin' needs 64.0 MiB" in reason
    assert "MOORAGE_DISK_RESERVE_BYTES keeps 1073741824.0 GiB of it free" in reason
    short = re.search(r"the disk is [0-9.]+ GiB \((\d+) bytes\) short", reason)
    assert short is not None, reason
    # short = declared size + reserve - free space, and the free space is at most the disk's size.
    assert HUGE_RESERVE - disk.total < int(short.group(1)) <= BOMB_BYTES + HUGE_RESERVE
    assert_nothing_left(reserved, archive)
