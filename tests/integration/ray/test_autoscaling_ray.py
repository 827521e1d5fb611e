"""Target-tracking autoscaling on the Ray backend (README: "works on both backends").

The same scenario as the local backend's test (tests/integration/test_autoscaling_boto3.py), on a
`moorage serve --backend ray` with its private one-node cluster: load scales the variant out to two
Ray-actor instances, and it scales back in once the load stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.test_autoscaling_boto3 import scale_out_and_back_in
from support.backends import NO_RAY, RAY_INSTALLED, start_backend_server
from support.hosting import pack_fault_handler
from support.servers import RunningServer, wait_until_gone

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.skipif(not RAY_INSTALLED, reason=NO_RAY)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_backend_server(
        tmp_path_factory.mktemp("ray-autoscaling") / "data", "ray", env={"MOORAGE_AUTOSCALE_PERIOD": "2"}
    )
    assert running.info["backend"] == "ray"
    yield running
    running.stop()
    assert not wait_until_gone(running.tag, timeout=60), running.log()[-3000:]


def test_target_tracking_scales_ray_instances_out_and_back_in(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    fault_tar: Path = pack_fault_handler(tmp_path_factory.mktemp("ray-autoscaling-artifacts"))
    scale_out_and_back_in(server, fault_tar)
