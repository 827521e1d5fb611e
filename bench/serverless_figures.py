"""Serverless figures (issue 16 item 6, issue 14's async cold start): what scale to zero costs here.

    .venv/bin/python bench/serverless_figures.py            # 5 cold starts per model, 20 idle endpoints
    .venv/bin/python bench/serverless_figures.py --quick    # 2 cold starts, 5 idle endpoints

One `moorage serve` (local backend, embedded S3 store) with MOORAGE_SERVERLESS_IDLE_SECONDS=1 and
MOORAGE_AUTOSCALE_PERIOD=0.5:

- **serverless cold start**, zero instances → answer, through boto3's InvokeEndpoint: the tiny model
  (TorchScript Linear(16 → 4), default handlers) and the seed's ResNet-50 (random weights,
  bench/handlers/inference_bytes.py, a JPEG as the body). Each cold call waits until DescribeEndpoint
  shows 0 instances; against the median warm call of the same endpoint right after, and the server's
  own ModelSetupTime (fork + model_fn, from /metrics);
- **memory held by idle serverless endpoints**: after a first endpoint (the fork server done preloading,
  the server's one-off imports paid), the server process's USS and the PSS of every process of the
  server (server, fork server, workers) before and after deploying N more tiny serverless endpoints
  that are then at zero instances: the per-endpoint share is what the server keeps (records, a pool,
  a route);
- **async cold start**: an async endpoint at zero instances (Application Auto Scaling MinCapacity 0,
  SageMaker's recipe: target tracking on ApproximateBacklogSizePerInstance + a step policy on
  HasBacklogWithoutCapacity), InvokeEndpointAsync → output object visible. The autoscaler's period
  (here 0.5 s; CloudWatch's minute by default) is part of that figure.

SageMaker's own figures, for comparison: AWS publishes no number for serverless cold starts; its
benchmarking toolkit post says they are "in the order of seconds" (AWS Machine Learning Blog,
"Introducing the Amazon SageMaker Serverless Inference Benchmarking Toolkit", 2022-10). Prints the
figures and writes them to `--out` (JSON). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from moorage.examples.builders import jpeg_bytes, pack, seed_model_dir, test_image, tiny_model_dir

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))
from bench.procs import Registry, memory  # noqa: E402
from bench.transform import _client, _serve, _write_figures  # noqa: E402  (one `moorage serve` with its S3 store)
from bench.workloads import BYTES_HANDLER  # noqa: E402

TINY_BODY = json.dumps([[0.25] * 16]).encode()
WARM_CALLS = 20
ROLE = "arn:aws:iam::000000000000:role/moorage-bench"
ENV = {"MOORAGE_SERVERLESS_IDLE_SECONDS": "1", "MOORAGE_AUTOSCALE_PERIOD": "0.5"}


def _model(sm: Any, tarball: Path, name: str) -> None:
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"ModelDataUrl": tarball.resolve().as_uri()},
    )


def _endpoint(sm: Any, name: str, variant: dict[str, Any], **config: Any) -> None:
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], **config)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.25, "MaxAttempts": 400}
    )


def _serverless(sm: Any, tarball: Path, name: str, memory_mb: int) -> None:
    _model(sm, tarball, name)
    config = {"MemorySizeInMB": memory_mb, "MaxConcurrency": 5}
    _endpoint(sm, name, {"VariantName": "AllTraffic", "ModelName": name, "ServerlessConfig": config})


def _instances(sm: Any, name: str) -> int:
    count: int = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"]
    return count


def _until_instances(sm: Any, name: str, count: int, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _instances(sm, name) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} never reached {count} instance(s)")
        time.sleep(0.05)


def _setup_ms(url: str, name: str) -> float:
    """The server's mean ModelSetupTime for this endpoint, from /metrics."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    labels = f'{{EndpointName="{name}",VariantName="AllTraffic"}}'
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"sagemaker_ModelSetupTime_microseconds_sum{labels}"):
            total = float(line.split()[-1])
        elif line.startswith(f"sagemaker_ModelSetupTime_microseconds_count{labels}"):
            count = float(line.split()[-1])
    return total / count / 1000.0 if count else float("nan")


def cold_and_warm(
    sm: Any, runtime: Any, url: str, name: str, body: bytes, content_type: str, rounds: int
) -> dict[str, float]:
    def call() -> float:
        began = time.perf_counter()
        runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType=content_type)["Body"].read()
        return (time.perf_counter() - began) * 1000.0

    cold, warm = [], []
    for _ in range(rounds):
        _until_instances(sm, name, 0)
        cold.append(call())
        warm += [call() for _ in range(WARM_CALLS)]
    return {
        "cold_p50_ms": statistics.median(cold),
        "cold_max_ms": max(cold),
        "warm_p50_ms": statistics.median(warm),
        "model_setup_ms": _setup_ms(url, name),
        "rounds": rounds,
    }


def idle_memory(sm: Any, tag: str, server_pid: int, tarball: Path, count: int) -> dict[str, float]:
    """Memory before and after `count` tiny serverless endpoints that are then at zero instances; the
    server process's own (USS) share per endpoint is what an idle endpoint costs."""
    import psutil

    server = psutil.Process(server_pid)

    def settle() -> tuple[Any, int]:
        time.sleep(2.0)  # stopped workers' pages returned before measuring
        return memory(tag), server.memory_full_info().uss

    # One endpoint first: the fork server finishes preloading and the server imports what a deployment
    # uses once (about 10 MiB); what follows is what each further idle endpoint holds.
    _serverless(sm, tarball, "idle-first", 1024)
    _until_instances(sm, "idle-first", 0)
    before, before_uss = settle()
    names = [f"idle-{index}" for index in range(count)]
    for name in names:
        _serverless(sm, tarball, name, 1024)
    for name in names:
        _until_instances(sm, name, 0)
    after, after_uss = settle()
    return {
        "endpoints": count,
        "pss_before_mb": before.pss_mb,
        "pss_after_mb": after.pss_mb,
        "processes_before": before.processes,
        "processes_after": after.processes,
        "server_uss_before_mb": before_uss / 2**20,
        "server_uss_after_mb": after_uss / 2**20,
        "server_per_endpoint_kb": (after_uss - before_uss) / 1024.0 / count,
    }


def async_cold_start(
    sm: Any, runtime: Any, aas: Any, s3: Any, tarball: Path, rounds: int
) -> dict[str, float]:
    name, bucket = "async-zero", "serverless-bench"
    s3.create_bucket(Bucket=bucket)
    _model(sm, tarball, name)
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }
    _endpoint(
        sm, name, variant, AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"s3://{bucket}/out"}}
    )
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{name}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    aas.register_scalable_target(**target, MinCapacity=0, MaxCapacity=1)
    metric = {
        "MetricName": "ApproximateBacklogSizePerInstance",
        "Namespace": "AWS/SageMaker",
        "Statistic": "Average",
    }
    tracking = {
        "TargetValue": 5.0,
        "CustomizedMetricSpecification": metric,
        "ScaleInCooldown": 0,
        "ScaleOutCooldown": 0,
    }
    aas.put_scaling_policy(
        **target,
        PolicyName="backlog",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=tracking,
    )
    step = {
        "AdjustmentType": "ChangeInCapacity",
        "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
    }
    aas.put_scaling_policy(
        **target, PolicyName="zero", PolicyType="StepScaling", StepScalingPolicyConfiguration=step
    )
    s3.put_object(Bucket=bucket, Key="in.json", Body=TINY_BODY)
    seconds = []
    for _ in range(rounds):
        _until_instances(sm, name, 0)
        began = time.perf_counter()
        accepted = runtime.invoke_endpoint_async(
            EndpointName=name, InputLocation=f"s3://{bucket}/in.json", ContentType="application/json"
        )
        key = accepted["OutputLocation"].removeprefix(f"s3://{bucket}/")
        while True:
            try:
                s3.head_object(Bucket=bucket, Key=key)
                break
            except Exception:  # not there yet (404)
                time.sleep(0.005)
        seconds.append(time.perf_counter() - began)
    return {
        "p50_s": statistics.median(seconds),
        "max_s": max(seconds),
        "rounds": rounds,
        "autoscale_period_s": 0.5,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 cold starts per model, 5 idle endpoints")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "serverless_figures.json")
    args = parser.parse_args(argv)
    rounds, idle = (2, 5) if args.quick else (5, 20)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="moorage-serverless-bench-") as tmp:
        work = Path(tmp)
        tiny = pack(tiny_model_dir(work / "tiny"), work / "tiny.tar.gz")
        image = test_image(work / "image.jpg")
        resnet = pack(
            seed_model_dir(work / "resnet", images=[image], handler=BYTES_HANDLER), work / "resnet.tar.gz"
        )
        registry = Registry()
        try:
            launched, info = _serve(registry, work / "data", ENV)
            url = str(info["url"])
            sm, runtime = _client("sagemaker", url), _client("sagemaker-runtime", url)
            aas, s3 = _client("application-autoscaling", url), _client("s3", str(info["s3_url"]))
            assert launched.process is not None
            # First, with nothing deployed: every other endpoint's workers would blur the per-endpoint share.
            figures["idle_memory"] = idle_memory(sm, launched.tag, launched.process.pid, tiny, idle)
            _serverless(sm, tiny, "tiny", 1024)
            figures["tiny"] = cold_and_warm(sm, runtime, url, "tiny", TINY_BODY, "application/json", rounds)
            _serverless(sm, resnet, "resnet", 3072)
            figures["resnet50"] = cold_and_warm(
                sm, runtime, url, "resnet", jpeg_bytes(image), "application/x-image", rounds
            )
            figures["async"] = async_cold_start(sm, runtime, aas, s3, tiny, rounds)
        finally:
            registry.stop_all()
    print(f"serverless cold start (0 instances → answer, boto3 InvokeEndpoint, {rounds} rounds, medians):")
    for model in ("tiny", "resnet50"):
        row = figures[model]
        print(
            f"  {model:9} cold {row['cold_p50_ms']:8.1f} ms (max {row['cold_max_ms']:.1f}), "
            f"ModelSetupTime {row['model_setup_ms']:7.1f} ms, warm {row['warm_p50_ms']:6.2f} ms, "
            f"cold/warm {row['cold_p50_ms'] / row['warm_p50_ms']:6.1f}x"
        )
    print(
        "  SageMaker serverless: 'cold starts in the order of seconds' "
        "(AWS ML Blog, 2022-10; no figure published)"
    )
    row = figures["idle_memory"]
    print(
        f"{row['endpoints']} idle serverless endpoints (0 instances): server process USS "
        f"{row['server_uss_before_mb']:.1f} → {row['server_uss_after_mb']:.1f} MiB, "
        f"{row['server_per_endpoint_kb']:.0f} KiB per endpoint; PSS of all server processes "
        f"{row['pss_before_mb']:.1f} → {row['pss_after_mb']:.1f} MiB "
        f"({row['processes_before']} → {row['processes_after']} processes)"
    )
    row = figures["async"]
    print(
        f"async cold start (0 instances → output object, autoscaler period {row['autoscale_period_s']} s): "
        f"{row['p50_s']:.2f} s median, {row['max_s']:.2f} s max over {row['rounds']}"
    )
    figures["load_average"] = os.getloadavg()
    print(f"load average at the end: {figures['load_average'][0]:.1f} (other work on the machine)")
    _write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
