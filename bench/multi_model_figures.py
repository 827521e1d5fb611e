"""Multi-model endpoints' figures (issue 13): cache-hit latency, cold load, 1,000 models in a Zipf pattern.

    .venv/bin/python bench/multi_model_figures.py            # 400 timed hits, 10 cold loads, 1,000 models
    .venv/bin/python bench/multi_model_figures.py --quick    # 50, 3, 100 models: proves the script works

One `moorage serve` (embedded S3 store, MOORAGE_CPUS=2) and a tiny JSON handler (model_fn reads a file):

- **cache hit**: one request at a time through boto3, the same archive on a single-model endpoint and,
  loaded already, behind a multi-model endpoint with TargetModel; medians, interleaved;
- **cold load**: the first TargetModel call of archives not seen before (client-side, end to end), against
  (a) the single-model path's own work, measured in this process: `prepare_model` (fetch + verify +
  extract, fresh cache) + importing the handler and running model_fn; and (b) a single-model endpoint's
  cold start, CreateEndpoint until its first answer;
- **scale**: N distinct archives under one prefix, 4 client threads calling them in a Zipf(1.1) pattern
  under a memory budget (MOORAGE_MME_MEMORY_BYTES), the other endpoints deleted first: requests/s, the
  hit ratio from /metrics (ModelCacheHit), the most models loaded at once, and the peak memory (sampled
  every 0.2 s): RSS of the server + fork server, and the sum of the workers' own pages (USS).

Prints the figures and writes them to `--out` (JSON). Asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from moorage.artifacts import ModelSource, prepare_model
from moorage.examples.builders import pack
from moorage.settings import ArtifactPolicy

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))
from bench.procs import Registry  # noqa: E402
from bench.transform import _client, _serve  # noqa: E402

BUCKET = "mme-bench"
BODY = json.dumps({"x": [1, 2, 3]}).encode()
BUDGET = 256 * 1024 * 1024
HANDLER = textwrap.dedent("""
    import json
    import os

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "name.txt")) as handle:
            return handle.read()

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(request, name):
        return {"model": name, "sum": sum(request["x"])}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
""")


def archive(root: Path, name: str) -> Path:
    model = root / "trees" / name
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text(HANDLER)
    (model / "name.txt").write_text(name)
    return pack(model, root / "archives" / f"{name}.tar.gz")


def serve(registry: Registry, data_dir: Path) -> dict[str, Any]:
    knobs = {"MOORAGE_CPUS": "2", "MOORAGE_MME_MEMORY_BYTES": str(BUDGET)}
    launched, info = _serve(registry, data_dir, knobs)
    info["pid"] = launched.process.pid if launched.process is not None else None
    return info


def endpoint(sm: Any, container: dict[str, Any], wait: bool = True) -> str:
    name = f"b-{uuid.uuid4().hex[:8]}"
    sm.create_model(
        ModelName=name, ExecutionRoleArn="arn:aws:iam::000000000000:role/bench", PrimaryContainer=container
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 4000}
        )
    return name


def invoke(runtime: Any, name: str, target: str | None = None) -> float:
    extra = {"TargetModel": target} if target else {}
    started = time.perf_counter()
    runtime.invoke_endpoint(EndpointName=name, Body=BODY, ContentType="application/json", **extra)[
        "Body"
    ].read()
    return time.perf_counter() - started


def in_process_single_model(path: Path, work: Path) -> float:
    """What a single-model endpoint's load does in the worker and before it: extract + import + model_fn."""
    started = time.perf_counter()
    prepared = prepare_model(
        ModelSource(str(path)),
        submit_directory=None,
        cache_dir=work / f"cache-{uuid.uuid4().hex}",
        policy=ArtifactPolicy(),
    )
    assert prepared.code_dir is not None
    spec = importlib.util.spec_from_file_location(f"h{uuid.uuid4().hex}", prepared.code_dir / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.model_fn(str(prepared.model_dir))
    elapsed = time.perf_counter() - started
    prepared.release()
    return elapsed


def cold_single_endpoint(sm: Any, runtime: Any, url: str) -> float:
    started = time.perf_counter()
    name = endpoint(sm, {"Image": "bench", "ModelDataUrl": url}, wait=False)
    while sm.describe_endpoint(EndpointName=name)["EndpointStatus"] != "InService":
        time.sleep(0.01)
    invoke(runtime, name)
    elapsed = time.perf_counter() - started
    sm.delete_endpoint(EndpointName=name)
    return elapsed


def metric_sum(url: str, prefix: str, endpoint_name: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and f'EndpointName="{endpoint_name}"' in line
    )


def memory_of(pid: int) -> tuple[int, int]:
    """(RSS of the server + the fork server, the sum of every worker's own pages (USS)): the fixed part,
    and what the loaded models hold, which the budget bounds."""
    server = psutil.Process(pid)
    fixed, models = server.memory_info().rss, 0
    for child in server.children(recursive=True):
        try:
            parent = child.parent()
            if parent is not None and parent.pid == pid:
                fixed += child.memory_info().rss  # the fork server (torch imported once)
            else:
                models += child.memory_full_info().uss
        except psutil.Error:
            continue
    return fixed, models


def zipf_run(url: str, runtime: Any, name: str, pid: int, models: int, requests: int) -> dict[str, float]:
    weights = [1.0 / (rank**1.1) for rank in range(1, models + 1)]
    chooser = random.Random(13)
    targets = [f"m{index:04d}.tar.gz" for index in chooser.choices(range(models), weights, k=requests)]
    peak = {"fixed": 0, "models": 0, "loaded": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            fixed, held = memory_of(pid)
            peak["fixed"], peak["models"] = max(peak["fixed"], fixed), max(peak["models"], held)
            peak["loaded"] = max(peak["loaded"], int(metric_sum(url, "sagemaker_LoadedModelCount{", name)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    hits_before = metric_sum(url, "sagemaker_ModelCacheHit_sum", name)
    calls_before = metric_sum(url, "sagemaker_ModelCacheHit_count", name)
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda target: invoke(runtime, name, target), targets))
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    hits = metric_sum(url, "sagemaker_ModelCacheHit_sum", name) - hits_before
    calls = metric_sum(url, "sagemaker_ModelCacheHit_count", name) - calls_before
    return {
        "models": models,
        "requests": requests,
        "throughput_rps": requests / elapsed,
        "hit_ratio": hits / calls if calls else 0.0,
        "peak_loaded_models": peak["loaded"],
        "peak_server_and_forkserver_rss_mib": peak["fixed"] / 2**20,
        "peak_workers_uss_mib": peak["models"] / 2**20,
        "budget_mib": BUDGET / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "multi_model_figures.json")
    args = parser.parse_args()
    hits, colds, models, requests = (50, 3, 100, 300) if args.quick else (400, 10, 1000, 2000)
    registry = Registry()
    work = Path(tempfile.mkdtemp(prefix="mme-bench-"))
    try:
        info = serve(registry, work / "data")
        sm, runtime = _client("sagemaker", info["url"]), _client("sagemaker-runtime", info["url"])
        s3 = _client("s3", info["s3_url"])
        s3.create_bucket(Bucket=BUCKET)
        one = archive(work, "hot")
        s3.upload_file(str(one), BUCKET, "single/hot.tar.gz")
        s3.upload_file(str(one), BUCKET, "mme/hot.tar.gz")
        single = endpoint(sm, {"Image": "bench", "ModelDataUrl": f"s3://{BUCKET}/single/hot.tar.gz"})
        multi = endpoint(sm, {"Image": "bench", "Mode": "MultiModel", "ModelDataUrl": f"s3://{BUCKET}/mme/"})
        for _ in range(20):
            invoke(runtime, single), invoke(runtime, multi, "hot.tar.gz")
        single_times, multi_times = [], []
        for _ in range(hits):
            single_times.append(invoke(runtime, single))
            multi_times.append(invoke(runtime, multi, "hot.tar.gz"))
        hit = {
            "single_p50_ms": statistics.median(single_times) * 1000,
            "multi_p50_ms": statistics.median(multi_times) * 1000,
        }
        hit["ratio"] = hit["multi_p50_ms"] / hit["single_p50_ms"]
        print(
            f"cache hit p50: single-model {hit['single_p50_ms']:.2f} ms, "
            f"multi-model {hit['multi_p50_ms']:.2f} ms (x{hit['ratio']:.3f})",
            flush=True,
        )

        cold_calls, in_process, single_cold = [], [], []
        for index in range(colds):
            path = archive(work, f"cold{index}")
            s3.upload_file(str(path), BUCKET, f"mme/cold{index}.tar.gz")
            cold_calls.append(invoke(runtime, multi, f"cold{index}.tar.gz"))
            in_process.append(in_process_single_model(path, work))
            s3.upload_file(str(path), BUCKET, f"single/cold{index}.tar.gz")
            single_cold.append(cold_single_endpoint(sm, runtime, f"s3://{BUCKET}/single/cold{index}.tar.gz"))
        cold = {
            "mme_first_call_ms": statistics.median(cold_calls) * 1000,
            "extract_and_model_fn_in_process_ms": statistics.median(in_process) * 1000,
            "single_endpoint_cold_start_ms": statistics.median(single_cold) * 1000,
        }
        cold["ratio_vs_in_process"] = cold["mme_first_call_ms"] / cold["extract_and_model_fn_in_process_ms"]
        cold["ratio_vs_single_endpoint"] = cold["mme_first_call_ms"] / cold["single_endpoint_cold_start_ms"]
        print(
            f"cold load: first TargetModel call {cold['mme_first_call_ms']:.0f} ms; extraction + model_fn "
            f"in process {cold['extract_and_model_fn_in_process_ms']:.0f} ms "
            f"(x{cold['ratio_vs_in_process']:.2f}); "
            f"single-model endpoint cold start {cold['single_endpoint_cold_start_ms']:.0f} ms "
            f"(x{cold['ratio_vs_single_endpoint']:.2f})",
            flush=True,
        )

        for name in (single, multi):  # their workers must not count in the scale run's memory
            sm.delete_endpoint(EndpointName=name)
            sm.get_waiter("endpoint_deleted").wait(
                EndpointName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 600}
            )
        for index in range(models):
            s3.upload_file(str(archive(work, f"m{index:04d}")), BUCKET, f"zipf/m{index:04d}.tar.gz")
        zipf = endpoint(sm, {"Image": "bench", "Mode": "MultiModel", "ModelDataUrl": f"s3://{BUCKET}/zipf/"})
        scale = zipf_run(info["url"], runtime, zipf, int(info["pid"]), models, requests)
        print(
            f"scale: {models} models, {requests} Zipf(1.1) requests from 4 threads on 2 cores: "
            f"{scale['throughput_rps']:.1f} req/s, hit ratio {scale['hit_ratio']:.3f}, at most "
            f"{scale['peak_loaded_models']:.0f} models loaded; peak memory of the models' workers (USS) "
            f"{scale['peak_workers_uss_mib']:.0f} MiB for a budget of {scale['budget_mib']:.0f} MiB, "
            f"server + fork server {scale['peak_server_and_forkserver_rss_mib']:.0f} MiB (RSS)",
            flush=True,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"cache_hit": hit, "cold_load": cold, "scale": scale}, indent=2) + "\n"
        )
        print(f"wrote {args.out}")
    finally:
        registry.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
