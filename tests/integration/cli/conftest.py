"""A real `moorage serve` for the CLI tests, and the `moorage` command pointed at it (or at nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.examples.builders import tiny_model_dir
from support.cli import Cli, isolated_environment
from support.servers import RunningServer, start_server, wait_until_gone


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("cli-server") / "data")
    try:
        yield running
    finally:
        running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


@pytest.fixture(scope="module")
def cli(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    home = tmp_path_factory.mktemp("cli-home")
    return Cli(home, isolated_environment(home, {"MOORAGE_URL": server.url}))


@pytest.fixture
def offline_cli(tmp_path: Path) -> Cli:
    """The command with no server configured (MOORAGE_URL unset)."""
    return Cli(tmp_path, isolated_environment(tmp_path))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.pt: a TorchScript Linear(16 → 4)."""
    return tiny_model_dir(tmp_path_factory.mktemp("cli-tiny")) / "model.pt"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """An independent S3 implementation on loopback (moto's server), for `upload` to "any S3"."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    yield f"http://{host}:{port}"
    moto.stop()
