"""The backends the contract tests run over, and how a test server is started on each.

`ray` runs only where the ray extra is installed; elsewhere its tests are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from support.servers import RunningServer, start_server

RAY_INSTALLED = importlib.util.find_spec("ray") is not None
NO_RAY = "the ray extra is not installed (pip install 'moorage[ray]')"

# The private Ray node of a test server: enough logical CPUs and memory for a blue/green update of two
# small instances on a 2-core CI machine (Ray reserves what an instance type asks for; local does not).
RAY_ENV = {"MOORAGE_RAY_CPUS": "8", "MOORAGE_RAY_MEMORY_GIB": "32", "MOORAGE_RAY_PLACEMENT_TIMEOUT": "60"}

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param(
        "ray", id="ray", marks=[pytest.mark.ray, pytest.mark.skipif(not RAY_INSTALLED, reason=NO_RAY)]
    ),
]


def start_backend_server(data_dir: Path, backend: str, env: dict[str, str] | None = None) -> RunningServer:
    """`moorage serve --backend <backend>`; a Ray server starts its own private single-node cluster."""
    extra = {**(RAY_ENV if backend == "ray" else {}), **(env or {})}
    return start_server(data_dir, args=["--backend", backend], env=extra, timeout=120)


def instance_logs(server: RunningServer, endpoint: str) -> str:
    """Everything the endpoint's instances wrote to their log files under the data dir."""
    texts: list[str] = []
    for path in sorted((server.data_dir / "logs").rglob("*")):
        if path.is_file() and endpoint in path.parts:
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)
