"""The same streams on `--backend ray`: an actor cannot push frames, so the server pulls each part
(streaming/desk.py's PulledStreams); what boto3 sees must not differ from the local backend's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.backends import NO_RAY, RAY_INSTALLED, start_backend_server
from support.servers import RunningServer

from .conftest import (
    check_a_client_that_leaves_stops_the_generator,
    check_model_stream_error_after_two_parts,
    check_parts_leave_before_the_handler_finishes,
)

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.skipif(not RAY_INSTALLED, reason=NO_RAY)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gates: Path) -> Iterator[RunningServer]:
    running = start_backend_server(
        tmp_path_factory.mktemp("stream-ray") / "data", "ray", env={"MOORAGE_SANDBOX_WRITABLE": str(gates)}
    )
    try:
        yield running
    finally:
        running.stop()


def test_parts_arrive_before_the_handler_has_finished(runtime: Any, endpoint: str, gates: Path) -> None:
    check_parts_leave_before_the_handler_finishes(runtime, endpoint, gates)


def test_a_handler_that_raises_after_two_parts_ends_with_model_stream_error(
    runtime: Any, endpoint: str
) -> None:
    check_model_stream_error_after_two_parts(runtime, endpoint)


def test_a_client_that_leaves_stops_the_generator_and_frees_the_actor(
    runtime: Any, endpoint: str, gates: Path
) -> None:
    check_a_client_that_leaves_stops_the_generator(runtime, endpoint, gates)
