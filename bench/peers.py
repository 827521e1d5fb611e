"""The peers (SageMaker's toolkit + TorchServe, Ray Serve, LitServe) run by their own scripts.

The scripts, their apps and their venv live in shared/peers (see its README); nothing of theirs is
copied here. This module lays their work dir out with *our* artifacts (the same weights, handlers and
image as moorage serves), calls `run_<peer>.sh start|stop`, and adopts each launch by the tag their
launcher puts in the environment (PEERS_RUN_TAG), so the harness times, loads and measures a peer
exactly as it does moorage. Their ports are fixed (18080, 18180, 18280); two toolkits cannot run on
one host (their README, problem A8).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Launched, Registry
from bench.workloads import Workload

__all__ = ["PEER_CONFIGS", "PeerConfig", "PeersSetup", "check_setup", "prepare_work", "start_peer"]

DEFAULT_DIR = Path("/work/shared/peers")
_ALL = ("tiny", "resnet_bytes", "resnet_url")
_RESNET = ("resnet_bytes", "resnet_url")


@dataclass(frozen=True)
class PeerConfig:
    name: str
    family: str  # sagemaker | ray | litserve: the run_*.sh script and run dir
    env: dict[str, str]
    workloads: tuple[str, ...]
    port: int
    workers: int | None  # None: one per core (the toolkit's default)
    grace_s: float = 20.0

    @property
    def script(self) -> str:
        return {"sagemaker": "run_sagemaker_toolkit.sh", "ray": "run_ray_serve.sh"}.get(
            self.family, "run_litserve.sh"
        )


# The peers' own configurations (shared/peers/bench.py), under the same names.
PEER_CONFIGS = {
    c.name: c
    for c in (
        PeerConfig("sagemaker", "sagemaker", {}, _ALL, 18080, None),
        PeerConfig("sagemaker_w1", "sagemaker", {"SM_WORKERS": "1"}, _ALL, 18080, 1),
        PeerConfig("sagemaker_omp1", "sagemaker", {"OMP_NUM_THREADS": "1"}, _ALL, 18080, None),
        PeerConfig("litserve", "litserve", {"LIT_BATCH": "0"}, _ALL, 18280, 1),
        PeerConfig("litserve_batch8", "litserve", {"LIT_BATCH": "8"}, ("tiny",), 18280, 1),
        PeerConfig("ray", "ray", {"RAY_BATCH": "0"}, _ALL, 18180, 1, grace_s=30.0),
        PeerConfig(
            "ray_cpus2", "ray", {"RAY_BATCH": "0", "RAY_REPLICA_CPUS": "2"}, _RESNET, 18180, 1, grace_s=30.0
        ),
        PeerConfig("ray_batch8", "ray", {"RAY_BATCH": "8"}, ("tiny",), 18180, 1, grace_s=30.0),
    )
}

_PROBE = (
    "import importlib.util as u, json; "
    "print(json.dumps({m: u.find_spec(m) is not None for m in "
    "('sagemaker_pytorch_serving_container', 'ts', 'litserve', 'ray', 'torchvision')}))"
)


@dataclass(frozen=True)
class PeersSetup:
    directory: Path
    venv: Path
    work: Path
    families: frozenset[str]  # the peers that can run here
    problems: tuple[str, ...] = field(default=())

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "MOORAGE_"))}
        env.pop("OMP_NUM_THREADS", None)
        env.update(PEERS_VENV=str(self.venv), PEERS_WORK=str(self.work))
        env.update(extra or {})
        return env


def check_setup(directory: Path, venv: Path, work: Path) -> PeersSetup:
    """Which peers can run: their scripts, their venv (shared/peers/setup_env.sh), Java for TorchServe."""
    problems: list[str] = []
    if not (directory / "run_litserve.sh").exists():
        return PeersSetup(directory, venv, work, frozenset(), (f"no peers harness in {directory}",))
    python = venv / "bin" / "python"
    if not python.exists():
        how = f"PEERS_VENV={venv} {directory / 'setup_env.sh'}"
        return PeersSetup(directory, venv, work, frozenset(), (f"the peers' venv is not set up; run: {how}",))
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120)
    found: dict[str, bool] = json.loads(probe.stdout) if probe.returncode == 0 else {}
    families = set()
    if found.get("sagemaker_pytorch_serving_container") and found.get("ts"):
        if shutil.which("java"):
            families.add("sagemaker")
        else:
            problems.append("TorchServe needs Java on PATH: the sagemaker peers are skipped")
    else:
        problems.append("the peers' venv lacks sagemaker-pytorch-inference/torchserve")
    for family in ("litserve", "ray"):
        if found.get(family):
            families.add(family)
        else:
            problems.append(f"the peers' venv lacks {family}")
    if not found.get("torchvision"):
        return PeersSetup(directory, venv, work, frozenset(), ("the peers' venv lacks torchvision",))
    return PeersSetup(directory, venv, work, frozenset(families), tuple(problems))


def prepare_work(setup: PeersSetup, workloads: Mapping[str, Workload]) -> None:
    """Lay out PEERS_WORK/artifacts as their scripts expect it, from this run's artifacts."""
    from moorage.examples.builders import pack

    artifacts = setup.work / "artifacts"
    shutil.rmtree(artifacts, ignore_errors=True)
    if "tiny" in workloads:
        tiny = artifacts / "tiny" / "model"
        shutil.copytree(workloads["tiny"].model_dir, tiny)
        pack(tiny, artifacts / "tiny" / "model.tar.gz")
    resnet = [workloads[name] for name in _RESNET if name in workloads]
    if resnet:
        model = artifacts / "resnet" / "model"
        (model / "code").mkdir(parents=True)
        shutil.copyfile(resnet[0].model_dir / "model_0.pth", model / "model_0.pth")
        # One archive with both handlers: SAGEMAKER_PROGRAM (or the peers' workloads.py) picks one.
        for workload in resnet:
            program = "inference_bytes.py" if workload.name == "resnet_bytes" else "inference.py"
            shutil.copyfile(workload.model_dir / "code" / "inference.py", model / "code" / program)
        pack(model, artifacts / "resnet" / "model.tar.gz")


def start_peer(
    registry: Registry, setup: PeersSetup, config: PeerConfig, workload: str, log: Path
) -> Launched:
    """`run_<peer>.sh start WORKLOAD`, then adopt what it launched (stopped later by its `stop`)."""
    script = str(setup.directory / config.script)
    env = setup.environment(config.env)
    run_dir = setup.work / "run" / config.family
    for stale in ("pid", "tag"):
        (run_dir / stale).unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.run(
            [script, "start", workload],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=300,
        )

    def stop() -> None:
        with log.open("ab") as out:
            subprocess.run(
                [script, "stop"], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=config.grace_s + 60
            )

    launched = Launched(
        name=config.name,
        tag=(run_dir / "tag").read_text().strip(),
        started_at=float((run_dir / "start").read_text()),
        log_path=run_dir / "server.log",
        pid=int((run_dir / "pid").read_text()),
        variable="PEERS_RUN_TAG",
        grace_s=config.grace_s,
        stop_hook=stop,
    )
    return registry.adopt(launched)
