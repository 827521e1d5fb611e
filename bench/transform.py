"""Batch transform throughput and memory: the tiny model, a MultiRecord Line job vs real-time calls.

    .venv/bin/python bench/transform.py             # 400,000 records; a 256 MiB input for the RSS figure
    .venv/bin/python bench/transform.py --quick     # 20,000 records and 16 MiB: proves the script works

One `moorage serve` (local backend, embedded S3). The tiny model (TorchScript Linear(16 → 4), default
handlers, CSV in and out) on one instance of `ml.m5.large` (2 vCPUs: 2 workers):

- transform: one CSV object of N lines, SplitType Line, MultiRecord, 1 MB payloads,
  MaxConcurrentTransforms 2; records/s from the job's own TransformStartTime/EndTime (instances
  starting included) and from the first to the last record (MoorageProgress, sampled);
- real-time: an endpoint of the same model and instance type, the same records sent one per
  InvokeEndpoint call by 2 concurrent clients (what scoring row by row costs);
- memory: the server process's peak RSS (psutil, sampled every 50 ms; workers are separate processes)
  while it transforms a large Line input, against its RSS before the job.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config

from moorage.examples.builders import pack, tiny_model_dir

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))

from bench.procs import Launched, Registry  # noqa: E402
from bench.servers import moorage_environment, wait_for_info  # noqa: E402

INSTANCE = "ml.m5.large"
CONCURRENCY = 2
ROLE = "arn:aws:iam::000000000000:role/bench"


def _serve(
    registry: Registry, data_dir: Path, settings: dict[str, str] | None = None
) -> tuple[Launched, dict[str, Any]]:
    """`moorage serve` on free ports; `settings`: MOORAGE_* variables it runs with."""
    env = moorage_environment(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", **(settings or {})}
    )
    argv = [
        sys.executable,
        "-m",
        "moorage",
        "serve",
        "--port",
        "0",
        "--s3-port",
        "0",
        "--data-dir",
        str(data_dir),
    ]
    launched = registry.launch(
        "transform",
        argv,
        env=env | {"AWS_DEFAULT_REGION": "us-east-1"},
        log_path=data_dir.parent / "serve.log",
    )
    wait_for_info(launched, data_dir / "server.json", 120)
    info: dict[str, Any] = json.loads((data_dir / "server.json").read_text())
    return launched, info


def _client(service: str, url: str) -> Any:
    config = Config(retries={"max_attempts": 1}, read_timeout=300, s3={"addressing_style": "path"})
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=config,
    )


def _write_figures(out: Path, figures: dict[str, Any]) -> None:
    """A figures script's `--out`: its figures as JSON (the folder made if need be); says where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
    print(f"written to {out}")


def _rows(count: int) -> bytes:
    row = ",".join(["0.25"] * 16) + "\n"
    return (row * count).encode()


def _transform(sm: Any, model: str, source: str, output: str, server: psutil.Process) -> dict[str, float]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    baseline = server.memory_info().rss
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        BatchStrategy="MultiRecord",
        MaxConcurrentTransforms=CONCURRENCY,
        MaxPayloadInMB=1,  # many requests per object: progress (and the steady rate) in fine steps
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": output, "Accept": "text/csv", "AssembleWith": "Line"},
        TransformResources={"InstanceType": INSTANCE, "InstanceCount": 1},
    )
    samples = [baseline]
    described, first, last = _follow(sm, name, lambda: samples.append(server.memory_info().rss))
    peak = max(samples)
    job_s = (described["TransformEndTime"] - described["TransformStartTime"]).total_seconds()
    # Steady rate: from the first answers seen to the last progress sample (instances already up).
    steady = (last[1] - first[1]) / (last[0] - first[0]) if first is not None and last[0] > first[0] else 0.0
    return {
        "job_s": job_s,
        "steady_rate": steady,
        "baseline_rss": baseline,
        "peak_rss": peak,
    }


Progress = tuple[float, int]  # (time.monotonic(), records done then)


def _follow(
    sm: Any, name: str, each_poll: Callable[[], object] = lambda: None
) -> tuple[dict[str, Any], Progress | None, Progress]:
    """Poll transform job `name` every 50 ms until it ends (calling `each_poll` first each time); raise
    unless it Completed. Its description, when answers were first seen (None if never while it ran)
    and the last progress sample: the ends of a steady rate, instance start-up left out."""
    first: Progress | None = None
    last = (time.monotonic(), 0)
    while True:
        each_poll()
        described: dict[str, Any] = sm.describe_transform_job(TransformJobName=name)
        if described["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            break
        last = (time.monotonic(), _records_done(sm.meta.endpoint_url, name))
        if first is None and last[1] > 0:
            first = last
        time.sleep(0.05)
    if described["TransformJobStatus"] != "Completed":
        raise RuntimeError(
            f"the job ended {described['TransformJobStatus']}: {described.get('FailureReason')}"
        )
    return described, first, last


def _records_done(url: str, name: str) -> int:
    """MoorageProgress.RecordsDone, from the raw answer (boto3 drops members it does not model)."""
    request = urllib.request.Request(
        url + "/",
        data=json.dumps({"TransformJobName": name}).encode(),
        headers={
            "X-Amz-Target": "SageMaker.DescribeTransformJob",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(json.loads(answer.read()).get("MoorageProgress", {}).get("RecordsDone", 0))


def _realtime(sm: Any, runtime: Any, model: str, count: int) -> float:
    """Records/s of `count` one-record InvokeEndpoint calls from CONCURRENCY clients."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": INSTANCE,
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.25, "MaxAttempts": 800}
    )
    row = _rows(1)
    for _ in range(50):  # warm up
        runtime.invoke_endpoint(EndpointName=name, Body=row, ContentType="text/csv", Accept="text/csv")
    lock = threading.Lock()
    left = [count]

    def client() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            runtime.invoke_endpoint(EndpointName=name, Body=row, ContentType="text/csv", Accept="text/csv")

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        for future in [pool.submit(client) for _ in range(CONCURRENCY)]:
            future.result()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: proves the script works")
    parser.add_argument("--large-mib", type=int, help="the size of the input for the RSS figure")
    args = parser.parse_args()
    records = 20_000 if args.quick else 400_000
    large_mib = args.large_mib or (16 if args.quick else 256)
    realtime_calls = 2_000 if args.quick else 20_000
    with tempfile.TemporaryDirectory(prefix="bench-transform-") as scratch:
        work = Path(scratch)
        tarball = pack(tiny_model_dir(work / "tiny"), work / "tiny.tar.gz")
        registry = Registry()
        try:
            launched, info = _serve(registry, work / "data")
            assert launched.process is not None
            server = psutil.Process(launched.process.pid)
            sm, s3 = _client("sagemaker", info["url"]), _client("s3", info["s3_url"])
            runtime = _client("sagemaker-runtime", info["url"])
            sm.create_model(
                ModelName="tiny",
                ExecutionRoleArn=ROLE,
                PrimaryContainer={"ModelDataUrl": f"file://{tarball}"},
            )
            s3.create_bucket(Bucket="bench")
            s3.put_object(Bucket="bench", Key="rows/rows.csv", Body=_rows(records))
            job = _transform(sm, "tiny", "s3://bench/rows/", "s3://bench/out", server)
            rate = job["steady_rate"]
            whole = records / job["job_s"]
            print(f"transform, {records} records (Line, MultiRecord, 1 MB payloads, {CONCURRENCY} workers):")
            print(
                f"  {whole:.0f} records/s over the whole job ({job['job_s']:.1f} s, instance start included)"
            )
            print(f"  {rate:.0f} records/s once answers flow (sampled progress; 0: too few samples)")
            realtime = _realtime(sm, runtime, "tiny", realtime_calls)
            print(f"real-time, one record per call, {CONCURRENCY} clients: {realtime:.0f} records/s")
            print(
                f"  transform / real-time: {whole / realtime:.1f}x whole job, {rate / realtime:.1f}x steady"
            )
            rows_per_mib = (1 << 20) // len(_rows(1))
            s3.put_object(Bucket="bench", Key="large/rows.csv", Body=_rows(large_mib * rows_per_mib))
            big = _transform(sm, "tiny", "s3://bench/large/", "s3://bench/large-out", server)
            print(
                f"server RSS while transforming a {large_mib} MiB Line input: peak "
                f"{big['peak_rss'] / 2**20:.0f} MiB, {big['baseline_rss'] / 2**20:.0f} MiB before the job"
            )
        finally:
            registry.stop_all()


if __name__ == "__main__":
    main()
