"""A local multi-node Ray cluster for tests, run in a process of its own (Ray's state is process-wide).

    python tests/support/ray_cluster.py '{"nodes": [{"name": "head", "num_cpus": 4}, ...]}'

The process starts the nodes with `ray.cluster_utils.Cluster` (every node on this machine's loopback),
prints one JSON line, {"address": ..., "nodes": [{"name", "node_id", "raylet_pid"}, ...]}, then takes
commands on stdin, one per line: `remove <name>` ends that node at once, as if its machine were lost
(answered with {"removed": <name>}); `quit` or EOF shuts the cluster down.

`RayCluster` is the test's side: it starts that process with the environment a cluster on loopback
needs (token authentication on, temp files in a short private dir) and tells which node a pid is on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from support.servers import RunningServer


def ray_environment(token_path: Path, temp_root: Path) -> dict[str, str]:
    """What every process of the test cluster, and every driver joining it, must agree on."""
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep every node on 127.0.0.1
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_path),
        "RAY_TMPDIR": str(temp_root),  # Unix socket paths must stay under 108 bytes
        "RAY_USAGE_STATS_ENABLED": "0",
    }


@dataclass
class RayCluster:
    process: subprocess.Popen[str]
    address: str
    nodes: dict[str, dict[str, Any]]
    env: dict[str, str]
    temp_root: Path
    removed: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, spec: dict[str, Any], env: dict[str, str], timeout: float = 120.0) -> RayCluster:
        temp_root = Path(tempfile.mkdtemp(prefix="mray-"))
        token = temp_root / "token"
        token.write_text(os.urandom(32).hex())
        token.chmod(0o600)
        cluster_env = {**env, **ray_environment(token, temp_root)}
        with (temp_root / "cluster.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, __file__, json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=cluster_env,
            )
        assert process.stdout is not None
        line = _read_line(process, process.stdout, timeout)
        info = json.loads(line)
        return cls(
            process=process,
            address=info["address"],
            nodes={node["name"]: node for node in info["nodes"]},
            env=cluster_env,
            temp_root=temp_root,
        )

    def remove(self, name: str, timeout: float = 60.0) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"remove {name}\n")
        self.process.stdin.flush()
        assert json.loads(_read_line(self.process, self.process.stdout, timeout)) == {"removed": name}
        self.removed.append(name)

    def node_of(self, pid: int) -> str | None:
        """The name of the node whose raylet started process `pid` (None if none of them did)."""
        try:
            ancestors = {parent.pid for parent in psutil.Process(pid).parents()}
        except psutil.NoSuchProcess:
            return None
        for name, node in self.nodes.items():
            if node["raylet_pid"] in ancestors:
                return name
        return None

    def log(self) -> str:
        return (self.temp_root / "cluster.log").read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.temp_root, ignore_errors=True)


_GIB = 1024**3
# Two nodes on loopback. An ml.c5.large or ml.c6i.large worker asks Ray for 2 CPUs and 4 GiB: the head holds
# two of them, the side node one, so two instances spread over both nodes, and once the side node is lost
# both fit on the head. The cluster's own failure detection is made quick for a test (docs/ray.md).
TWO_NODES: dict[str, Any] = {
    "nodes": [
        {"name": "head", "num_cpus": 4, "memory": 16 * _GIB},
        {"name": "side", "num_cpus": 2, "memory": 8 * _GIB},
    ],
    "system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
}


@contextlib.contextmanager
def running_cluster(spec: dict[str, Any]) -> Iterator[RayCluster]:
    """A cluster for a test module: started, then stopped with every process it started gone."""
    from support.servers import base_environment, wait_until_gone

    tag = uuid.uuid4().hex
    running = RayCluster.start(spec, base_environment(tag))
    yield running
    running.stop()
    assert not wait_until_gone(tag, timeout=60), running.log()[-3000:]


@contextlib.contextmanager
def joined_server(cluster: RayCluster, data_dir: Path) -> Iterator[RunningServer]:
    """`moorage serve --backend ray --ray-address` on `cluster`, with quick pings and placement."""
    from support.servers import start_server, wait_until_gone

    env = {
        **{key: value for key, value in cluster.env.items() if key.startswith("RAY_AUTH")},
        "MOORAGE_PING_INTERVAL": "0.5",
        "MOORAGE_RAY_PLACEMENT_TIMEOUT": "60",
    }
    running = start_server(
        data_dir, args=["--backend", "ray", "--ray-address", cluster.address], env=env, timeout=120
    )
    yield running
    running.stop()
    assert not wait_until_gone(running.tag, timeout=60), running.log()[-3000:]


def module_fixtures(spec: dict[str, Any], label: str) -> tuple[Any, Any]:
    """A test module's `cluster` (running `spec`) and `server` (joined to it, its data dir in a temp dir
    named `label`) fixtures, one of each for the module: `cluster, server = module_fixtures(...)`."""
    import pytest

    @pytest.fixture(scope="module", name="cluster")
    def cluster_fixture() -> Iterator[RayCluster]:
        with running_cluster(spec) as running:
            yield running

    @pytest.fixture(scope="module", name="server")
    def server_fixture(
        cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[RunningServer]:
        with joined_server(cluster, tmp_path_factory.mktemp(label) / "data") as running:
            yield running

    return cluster_fixture, server_fixture


def _read_line(process: subprocess.Popen[str], stream: IO[str], timeout: float) -> str:
    """One line from the cluster process, or an error with its log if it dies or stays silent."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            raise TimeoutError(f"the Ray test cluster did not answer within {timeout} s")
    line = stream.readline()
    if not line:
        raise RuntimeError(f"the Ray test cluster exited with {process.wait(10)}")
    return line


def _main(spec: dict[str, Any]) -> None:
    from ray.cluster_utils import Cluster

    nodes = spec["nodes"]
    head = nodes[0]
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": head["num_cpus"],
            "memory": head.get("memory"),
            "resources": head.get("resources", {}),
            "include_dashboard": False,
            "_system_config": spec.get("system_config", {}),
        },
    )
    started: dict[str, Any] = {head["name"]: cluster.head_node}
    for node in nodes[1:]:
        started[node["name"]] = cluster.add_node(
            num_cpus=node["num_cpus"], memory=node.get("memory"), resources=node.get("resources", {})
        )
    cluster.wait_for_nodes()
    described = [
        {"name": name, "node_id": node.node_id, "raylet_pid": node.all_processes["raylet"][0].process.pid}
        for name, node in started.items()
    ]
    print(json.dumps({"address": cluster.address, "nodes": described}), flush=True)
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "remove":
                cluster.remove_node(started.pop(argument), allow_graceful=False)
                print(json.dumps({"removed": argument}), flush=True)
            elif command == "quit":
                break
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
