"""Fixtures of the contract tests: the fault handler's artifact and a server per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.backends import BACKENDS, start_backend_server
from support.hosting import pack_fault_handler
from support.servers import RunningServer, wait_until_gone


@pytest.fixture(scope="session")
def fault_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_fault_handler(tmp_path_factory.mktemp("contract-artifacts"))


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One `moorage serve` per backend for the whole module; nothing it started may outlive it."""
    backend = str(request.param)
    running = start_backend_server(
        tmp_path_factory.mktemp(f"contract-{backend}") / "data",
        backend,
        # A serverless variant stops its idle instances after half a second (test_endpoint_journey.py).
        env={
            "MOORAGE_DRAIN_GRACE": "20",
            "MOORAGE_PING_INTERVAL": "1",
            "MOORAGE_SERVERLESS_IDLE_SECONDS": "0.5",
        },
    )
    assert running.info["backend"] == backend
    yield running
    running.stop()
    assert not wait_until_gone(running.tag, timeout=60), running.log()[-3000:]
