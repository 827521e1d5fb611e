"""Batch transform's closing figures, measured in one run against the limits they are judged by.

    .venv/bin/python bench/transform_figures.py           # 400,000 rows, 64 images, a 1 GiB input
    .venv/bin/python bench/transform_figures.py --quick   # small sizes: proves the script works

One `moorage serve` (local backend, embedded S3). Prints, each beside its reference:

- tiny model (TorchScript Linear(16 → 4), default handlers, CSV): records/s of a Line, MultiRecord
  job (1 MB payloads, 2 workers) vs the same rows sent one per InvokeEndpoint call by 2 clients, vs
  the in-process handler chain on the job's own request body (bench/baseline.py, no HTTP, no IPC);
- the seed's ResNet-50 (random weights, bench/workloads.py; JPEG bodies): images/s of a SingleRecord
  job over a prefix of JPEGs on 2 instances (one worker each, the machine's cores shared between
  them) vs the machine's compute limit, the in-process handler with torch on every core, as
  bench/run.py measures it; the target is ≥ 0.9×;
- the server's peak memory (VmHWM) while a 1 GiB Line input goes up (multipart) and through a job
  (MultiRecord, to a handler that only counts records, as in test_transform_large.py).

Job rates are steady rates: records answered from the first answers seen to the last progress sample
(MoorageProgress, sampled), so instance start-up is not in them; the whole job's time is printed too.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))

from bench.procs import Registry  # noqa: E402
from bench.transform import _client, _follow, _realtime, _records_done, _rows, _serve  # noqa: E402
from moorage.examples.builders import pack  # noqa: E402

ROLE = "arn:aws:iam::000000000000:role/bench"
TINY_INSTANCE = "ml.m5.large"  # 2 vCPUs: 2 workers
TINY_PAYLOAD_MB = 1
LARGE_INPUT_BYTES = 1 << 30  # the "1 GB Line input" (the test uses a quarter: test_transform_large)


def _vm(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def _job(sm: Any, request: dict[str, Any]) -> dict[str, float]:
    """Run one transform job to its end; its whole time and its steady rate (records/s; the whole
    job's rate when too few progress samples came in to tell)."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    sm.create_transform_job(TransformJobName=name, **request)
    described, first, last = _follow(sm, name)
    whole = (described["TransformEndTime"] - described["TransformStartTime"]).total_seconds()
    if first is not None and last[1] > first[1] and last[0] > first[0]:
        steady = (last[1] - first[1]) / (last[0] - first[0])
    else:
        steady = described_records(sm, name) / whole
    return {"whole_s": whole, "steady": steady}


def described_records(sm: Any, name: str) -> int:
    return _records_done(sm.meta.endpoint_url, name)


def _request(
    model: str,
    source: str,
    output: str,
    *,
    content_type: str,
    split: str,
    strategy: str,
    accept: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "ModelName": model,
        "BatchStrategy": strategy,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
            "ContentType": content_type,
            "SplitType": split,
        },
        "TransformOutput": {"S3OutputPath": output, "Accept": accept or content_type, "AssembleWith": "Line"},
        **extra,
    }


def _in_process(work: Path, name: str, spec: dict[str, Any], seconds: float) -> dict[str, Any]:
    """bench/baseline.py on one workload, in a child process (this harness never imports torch)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "manifest.json").write_text(json.dumps({"workloads": {name: spec}}))
    done = subprocess.run(
        [sys.executable, "-m", "bench.baseline", str(work), "--workloads", name, "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def tiny(sm: Any, s3: Any, runtime: Any, work: Path, quick: bool) -> None:
    records = 20_000 if quick else 400_000
    workload = json.loads((work / "workloads" / "manifest.json").read_text())["workloads"]["tiny"]
    sm.create_model(
        ModelName="tiny",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"ModelDataUrl": f"file://{workload['tarball']}"},
    )
    s3.put_object(Bucket="bench", Key="rows/rows.csv", Body=_rows(records))
    job = _job(
        sm,
        _request(
            "tiny",
            "s3://bench/rows/",
            "s3://bench/rows-out",
            content_type="text/csv",
            split="Line",
            strategy="MultiRecord",
            MaxPayloadInMB=TINY_PAYLOAD_MB,
            MaxConcurrentTransforms=2,
            TransformResources={"InstanceType": TINY_INSTANCE, "InstanceCount": 1},
        ),
    )
    realtime = _realtime(sm, runtime, "tiny", 2_000 if quick else 20_000)
    per_body = (TINY_PAYLOAD_MB << 20) // len(_rows(1))  # the rows of one of the job's requests
    body = work / "tiny-body.csv"
    body.write_bytes(_rows(per_body))
    spec = {
        "model_dir": workload["model_dir"],
        "body": str(body),
        "content_type": "text/csv",
        "check": "tiny",
    }
    baseline = _in_process(work / "baseline-tiny", "tiny", spec, 2.0 if quick else 5.0)
    in_process = per_body / (baseline["mean_ms"] / 1000.0)
    print(f"tiny model, {records} rows, Line, MultiRecord, {TINY_PAYLOAD_MB} MB payloads, 2 workers:")
    print(f"  transform job:         {job['steady']:9.0f} records/s ({job['whole_s']:.1f} s, start included)")
    print(
        f"  real-time, 2 clients:  {realtime:9.0f} records/s (one record per call): "
        f"job = {job['steady'] / realtime:.1f}x"
    )
    print(
        f"  in-process handler:    {in_process:9.0f} records/s ({per_body}-row bodies, one thread of calls): "
        f"job = {job['steady'] / in_process:.2f}x"
    )


def resnet(sm: Any, s3: Any, work: Path, quick: bool) -> None:
    manifest = json.loads((work / "workloads" / "manifest.json").read_text())
    spec = manifest["workloads"]["resnet_bytes"]
    images = 8 if quick else 64
    image = Path(spec["body"]).read_bytes()
    for index in range(images):
        s3.put_object(Bucket="bench", Key=f"images/{index:04d}.jpg", Body=image)
    sm.create_model(
        ModelName="resnet",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "ModelDataUrl": f"file://{spec['tarball']}",
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        },
    )
    cores = os.cpu_count() or 1
    job = _job(
        sm,
        _request(
            "resnet",
            "s3://bench/images/",
            "s3://bench/images-out",
            content_type="application/x-image",
            accept="application/json",
            split="None",
            strategy="SingleRecord",
            TransformResources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 2},
        ),
    )
    baseline = _in_process(work / "baseline-resnet", "resnet_bytes", spec, 3.0 if quick else 10.0)
    limit = 1000.0 / baseline["mean_ms"]
    print(
        f"ResNet-50 (seed, random weights), {images} JPEGs, SingleRecord, "
        f"2 instances x 1 worker, {cores} cores:"
    )
    print(f"  transform job:         {job['steady']:9.2f} images/s ({job['whole_s']:.1f} s, start included)")
    print(
        f"  compute limit:         {limit:9.2f} images/s (in-process, torch on {baseline['torch_threads']} "
        f"threads): job = {job['steady'] / limit:.2f}x (target >= 0.9x)"
    )


COUNT_HANDLER = """
def model_fn(model_dir):
    return None


def transform_fn(model, data, content_type, accept):
    body = data.encode() if isinstance(data, str) else bytes(data)
    return str(body.count(b"\\n")) + "\\n", "text/plain"
"""


def large(sm: Any, s3: Any, work: Path, pid: int, quick: bool) -> None:
    """Through a handler that only counts records: the figure is the server's memory, not a model's."""
    size = (16 << 20) if quick else LARGE_INPUT_BYTES
    (work / "count" / "code").mkdir(parents=True)
    (work / "count" / "code" / "inference.py").write_text(COUNT_HANDLER)
    tarball = pack(work / "count", work / "count.tar.gz")
    sm.create_model(
        ModelName="count", ExecutionRoleArn=ROLE, PrimaryContainer={"ModelDataUrl": f"file://{tarball}"}
    )
    row = _rows(1)
    path = work / "large.csv"
    with path.open("wb") as handle:
        block = row * 65536
        for _ in range(size // len(block)):
            handle.write(block)
        handle.write(row * ((size % len(block)) // len(row)))
    before = _vm(pid)
    started = time.monotonic()
    s3.upload_file(str(path), "bench", "large/rows.csv")  # boto3's managed upload: 8 MiB parts
    uploaded = time.monotonic()
    job = _job(
        sm,
        _request(
            "count",
            "s3://bench/large/",
            "s3://bench/large-out",
            content_type="text/csv",
            split="Line",
            strategy="MultiRecord",
            TransformResources={"InstanceType": TINY_INSTANCE, "InstanceCount": 1},
        ),
    )
    after = _vm(pid)
    path.unlink()
    print(f"{size >> 20} MiB Line input (a handler that counts records, MultiRecord, 6 MB payloads):")
    print(
        f"  upload {uploaded - started:.1f} s, job {job['whole_s']:.1f} s "
        f"({size / job['whole_s'] / 2**20:.0f} MiB/s)"
    )
    print(
        f"  server VmRSS before {before['VmRSS'] >> 20} MiB; peak (VmHWM) {after['VmHWM'] >> 20} MiB "
        f"(peak before the input: {before['VmHWM'] >> 20} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: proves the script works")
    parser.add_argument("--parts", default="large,tiny,resnet", help="which figures, comma-separated")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-transform-figures-") as scratch:
        work = Path(scratch)
        subprocess.run(
            [sys.executable, "-m", "bench.workloads", str(work / "workloads")], cwd=ROOT, check=True
        )
        registry = Registry()
        try:
            launched, info = _serve(registry, work / "data")
            assert launched.process is not None
            sm, s3 = _client("sagemaker", info["url"]), _client("s3", info["s3_url"])
            runtime = _client("sagemaker-runtime", info["url"])
            s3.create_bucket(Bucket="bench")
            # First, so that the server's lifetime peak (VmHWM) is this input's, not an earlier stage's.
            if "large" in parts:
                large(sm, s3, work, launched.process.pid, args.quick)
            if "tiny" in parts:
                tiny(sm, s3, runtime, work, args.quick)
            if "resnet" in parts:
                resnet(sm, s3, work, args.quick)
        finally:
            registry.stop_all()


if __name__ == "__main__":
    main()
