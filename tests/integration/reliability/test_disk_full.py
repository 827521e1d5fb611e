"""Matrix row 9: the disk fills up under the server, during an artifact's download, its extraction, or a
write to the state store.

The server runs with its data dir on a 24 MiB tmpfs of its own (an unprivileged user + mount
namespace; the test sees inside through /proc/<pid>/root). What must hold: the endpoint whose
artifact does not fit fails with a FailureReason that says so (an archive member whose declared size
does not fit is refused before it is written; a copy that runs out of space mid-way says so), its
partial files are gone, other endpoints keep serving; a control-plane write that cannot reach the
disk is a 500 InternalFailure that leaves nothing half-written, reads and invocations go on
meanwhile, and once space is back the same write succeeds.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from integration.reliability.rig import (
    create_config,
    create_model,
    deploy,
    error_of,
    filled,
    inside,
    invoke,
    namespaces_available,
    one_attempt,
    start_on_tmpfs,
    unique,
    wait_status,
)
from support.servers import RunningServer, wait_until_gone

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not namespaces_available(), reason="needs unprivileged user and mount namespaces"),
]

SIZE = 24 * 1024 * 1024
BIG = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # No disk reserve: on a 24 MiB disk the default (1 GiB) would refuse every model, the bystander's too.
    running = start_on_tmpfs(
        tmp_path_factory.mktemp("disk-full") / "data",
        str(SIZE),
        env={"MOORAGE_DRAIN_GRACE": "5", "MOORAGE_DISK_RESERVE_BYTES": "0"},
    )
    yield running
    assert running.stop() == 0, running.log()[-3000:]
    assert not wait_until_gone(running.tag), running.log()[-3000:]


@pytest.fixture(scope="module")
def bystander(server: RunningServer, artifacts: Any) -> str:
    return deploy(server.client("sagemaker"), f"file://{artifacts.fault_tar}")


def archive(path: Path, member: bytes, *, compress: bool) -> Path:
    """A model archive with one large member (incompressible or all zeros) and a handler."""
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        for name, data in (
            ("code/inference.py", b"def model_fn(d):\n    return 1\n"),
            ("weights.bin", member),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def too_big(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("too-big")
    return {
        # 40 MiB that do not compress: the copy into the cache runs out of space.
        "download": archive(root / "random.tar", os.urandom(BIG), compress=False),
        # 40 MiB of zeros in a 40 KiB archive: the extraction runs out of space.
        "extract": archive(root / "zeros.tar.gz", bytes(BIG), compress=True),
    }


def cache_entries(server: RunningServer, sub: str) -> list[str]:
    directory = inside(server, server.data_dir / "cache" / sub)
    return sorted(os.listdir(directory)) if directory.exists() else []


@pytest.mark.parametrize("phase", ["download", "extract"])
def test_an_artifact_that_does_not_fit_fails_its_endpoint_and_leaves_nothing(
    server: RunningServer, bystander: str, too_big: dict[str, Path], phase: str
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    models_before = cache_entries(server, "models")
    name = deploy(sm, f"file://{too_big[phase]}", wait=False)

    described = wait_status(sm, name, {"Failed"})

    reason = described["FailureReason"]
    if phase == "download":  # the copy into the cache runs out of space while it writes
        assert reason.startswith(f"Production variant AllTraffic: could not store {too_big[phase]} "), reason
        assert reason.endswith(": No space left on device"), reason
    else:  # the member's declared size does not fit: refused before a byte of it is written
        assert reason.startswith(
            f"Production variant AllTraffic: not enough disk space for {too_big[phase]}: "
            "'weights.bin' needs 40.0 MiB, "
        ), reason
        assert "MOORAGE_DISK_RESERVE_BYTES keeps 0 B of it free, so the disk is " in reason, reason
    assert cache_entries(server, "tmp") == []  # the partial download or tree was removed
    assert cache_entries(server, "models") == models_before
    free = shutil.disk_usage(inside(server, server.data_dir)).free
    assert free > SIZE // 2  # the space is back
    assert invoke(runtime, bystander, action="echo")["echo"] == {"action": "echo"}
    sm.delete_endpoint(EndpointName=name)


def test_a_state_write_on_a_full_disk_is_a_500_and_leaves_no_partial_state(
    server: RunningServer, bystander: str, artifacts: Any
) -> None:
    sm, runtime = one_attempt(server, "sagemaker"), one_attempt(server)
    url = f"file://{artifacts.fault_tar}"
    bulky = {f"PAD_{i}": "x" * 1000 for i in range(60)}  # each model record is about 60 kB
    written, refused = [], []
    with filled(inside(server, server.data_dir)):
        for _ in range(20):
            name = unique("full")
            try:
                create_model(sm, url, env=bulky, name=name)
            except ClientError as exc:
                assert error_of(exc) == (500, "InternalFailure"), exc.response
                assert exc.response["Error"]["Message"] == "The server failed to process the request."
                refused.append(name)
                continue
            written.append(name)
        assert refused, "no write failed although the disk is full"
        # Reads and invocations go on while the disk is full.
        assert sm.describe_endpoint(EndpointName=bystander)["EndpointStatus"] == "InService"
        for _ in range(5):
            assert invoke(runtime, bystander, action="echo")["echo"] == {"action": "echo"}
        for name in refused:
            with pytest.raises(ClientError) as caught:
                sm.describe_model(ModelName=name)
            assert error_of(caught.value) == (400, "ValidationException")
    for name in written:
        assert sm.describe_model(ModelName=name)["ModelName"] == name
    # Space is back: the write that failed succeeds, and the endpoint can be built on it.
    create_model(sm, url, name=refused[0])
    endpoint = unique("after")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=create_config(sm, refused[0]))
    wait_status(sm, endpoint, {"InService"})
    assert invoke(runtime, endpoint, action="echo")["echo"] == {"action": "echo"}
    sm.delete_endpoint(EndpointName=endpoint)
