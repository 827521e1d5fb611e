"""Starting moorage the two ways users do, and timing how long until it answers.

- `moorage serve-model MODEL.tar.gz`: one model on /ping and /invocations, as a SageMaker container;
  timed from launch to the first 200 on /ping and on /invocations.
- `moorage serve`, already running: CreateModel, CreateEndpointConfig, CreateEndpoint with unchanged
  boto3; timed from the CreateEndpoint call to the first 200 from InvokeEndpoint.

Each launch gets a fresh data dir, so every start pays for extracting the artifact, as a new
instance does. Servers bind port 0 and say where they listen in a JSON file in their data dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import post
from bench.procs import Launched, Registry

__all__ = [
    "Deployed",
    "Startup",
    "deploy_endpoint",
    "instance_type_for",
    "launch_serve",
    "launch_serve_model",
    "moorage_environment",
    "serve_workers_from_log",
    "time_startup",
    "wait_for_info",
    "wait_for_status",
    "workers_from_log",
]

POLL_S = 0.025
# The smallest general-purpose instance type with at least as many vCPUs as this machine has cores,
# so that an endpoint may use the whole machine, as `serve-model` does.
_M5_SIZES = ((2, "ml.m5.large"), (4, "ml.m5.xlarge"), (8, "ml.m5.2xlarge"), (16, "ml.m5.4xlarge"))
_M5_LARGEST = (48, "ml.m5.12xlarge")
_READY_LINE = re.compile(r"model ready: (\d+) worker")


@dataclass(frozen=True)
class Startup:
    ping_s: float | None  # launch → first 200 on /ping
    first_200_s: float | None  # launch → first 200 on /invocations
    response_ok: bool  # the first 200's body matched the in-process answer
    error: str | None = None


@dataclass(frozen=True)
class Deployed:
    endpoint: str
    invoke_url: str
    create_to_200_s: float | None
    response_ok: bool
    error: str | None = None


def moorage_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without AWS_*, MOORAGE_* and SAGEMAKER_* (a config names its own), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOORAGE_", "SAGEMAKER_"))}
    env.pop("OMP_NUM_THREADS", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def instance_type_for(cores: int) -> str:
    for vcpus, name in _M5_SIZES:
        if vcpus >= cores:
            return name
    return _M5_LARGEST[1]


def launch_serve_model(
    registry: Registry, name: str, tarball: Path, data_dir: Path, env: Mapping[str, str]
) -> Launched:
    shutil.rmtree(data_dir, ignore_errors=True)  # a cold artifact cache, as on a new instance
    argv = [sys.executable, "-m", "moorage", "serve-model", str(tarball), "--port", "0"]
    argv += ["--data-dir", str(data_dir)]
    return registry.launch(name, argv, env=env, log_path=data_dir.parent / f"{data_dir.name}.log")


def launch_serve(registry: Registry, name: str, data_dir: Path, env: Mapping[str, str]) -> Launched:
    shutil.rmtree(data_dir, ignore_errors=True)
    argv = [sys.executable, "-m", "moorage", "serve", "--port", "0", "--no-s3", "--data-dir", str(data_dir)]
    return registry.launch(name, argv, env=env, log_path=data_dir.parent / f"{data_dir.name}.log")


def wait_for_info(launched: Launched, info_path: Path, timeout_s: float) -> str:
    """The URL the server wrote once it listens (the file names our pid, not a stale server's)."""
    deadline = time.monotonic() + timeout_s
    pid = launched.process.pid if launched.process is not None else None
    while time.monotonic() < deadline:
        try:
            info = json.loads(info_path.read_text())
            if info.get("pid") == pid:
                return str(info["url"])
        except (OSError, ValueError, KeyError):
            pass
        if not launched.alive():
            raise RuntimeError(f"{launched.name} exited before listening:\n{launched.log_tail()}")
        time.sleep(POLL_S)
    raise TimeoutError(f"{launched.name} did not listen within {timeout_s:.0f} s")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0


def wait_for_status(
    probe: Callable[[], tuple[int, bytes]], started_at: float, timeout_s: float, alive: Callable[[], bool]
) -> tuple[float | None, bytes, str]:
    """Poll `probe` until it answers 200: (seconds since `started_at`, body, last failure)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            status, body = probe()
        except (OSError, ValueError) as exc:
            status, body = 0, str(exc).encode()
        if status == 200:
            return time.time() - started_at, body, ""
        last = f"HTTP {status}: {body[:200]!r}" if status else body[:200].decode(errors="replace")
        if not alive():
            return None, b"", f"the server exited ({last})"
        time.sleep(POLL_S)
    return None, b"", f"no 200 within {timeout_s:.0f} s ({last})"


def time_startup(
    launched: Launched,
    base_url: Callable[[], str],
    body: bytes,
    content_type: str,
    check: Callable[[bytes], bool],
    timeout_s: float,
) -> Startup:
    """Launch → first 200 on /ping, then launch → first 200 on /invocations (the peers' order)."""
    try:
        url = base_url()
    except (RuntimeError, TimeoutError) as exc:
        return Startup(None, None, False, str(exc))
    ping_s, _, why = wait_for_status(
        lambda: (_get(url + "/ping"), b""), launched.started_at, timeout_s, launched.alive
    )
    if ping_s is None:
        return Startup(None, None, False, f"/ping: {why}")
    first_s, answer, why = wait_for_status(
        lambda: post(url + "/invocations", body, content_type, timeout=60),
        launched.started_at,
        timeout_s,
        launched.alive,
    )
    if first_s is None:
        return Startup(ping_s, None, False, f"/invocations: {why}")
    ok = check(answer)
    return Startup(ping_s, first_s, ok, None if ok else f"unexpected response {answer[:200]!r}")


def workers_from_log(launched: Launched) -> int | None:
    """serve-model's own count ("model ready: N worker(s)"), for the compute-limit ratio."""
    match = _READY_LINE.search(launched.log_tail(200_000))
    return int(match[1]) if match else None


def serve_workers_from_log(launched: Launched, endpoint: str) -> int | None:
    """How many workers of the endpoint's instance said "ready" in `moorage serve`'s log."""
    pattern = re.compile(re.escape(endpoint) + r"/[^/\s]+/[^/\s]+/(\d+) ready in")
    found = {match[1] for match in pattern.finditer(launched.log_tail(500_000))}
    return len(found) or None


def _sagemaker_client(api_url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sagemaker",
        endpoint_url=api_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120),
    )


def deploy_endpoint(
    api_url: str,
    tarball: Path,
    instance_type: str,
    body: bytes,
    content_type: str,
    check: Callable[[bytes], bool],
    alive: Callable[[], bool],
    timeout_s: float,
    environment: Mapping[str, str] | None = None,
) -> Deployed:
    """CreateModel + CreateEndpointConfig, then time CreateEndpoint → first 200 from InvokeEndpoint."""
    sagemaker = _sagemaker_client(api_url)
    suffix = uuid.uuid4().hex[:8]
    endpoint, model, config = f"bench-{suffix}", f"bench-model-{suffix}", f"bench-config-{suffix}"
    sagemaker.create_model(
        ModelName=model,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/moorage-bench",
        PrimaryContainer={
            "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310",
            "ModelDataUrl": tarball.resolve().as_uri(),
            "Environment": dict(environment or {}),
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": instance_type,
            }
        ],
    )
    invoke_url = f"{api_url}/endpoints/{endpoint}/invocations"
    started = time.time()
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    seconds, answer, why = wait_for_status(
        lambda: post(invoke_url, body, content_type, timeout=60), started, timeout_s, alive
    )
    if seconds is None:
        return Deployed(endpoint, invoke_url, None, False, why)
    ok = check(answer)
    return Deployed(
        endpoint, invoke_url, seconds, ok, None if ok else f"unexpected response {answer[:200]!r}"
    )
