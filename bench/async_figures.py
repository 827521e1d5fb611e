"""Asynchronous inference's figures (issue 14): queue overhead, sustained throughput, server memory.

    .venv/bin/python bench/async_figures.py            # 200 timed requests, 1,000 for throughput, 1 GB
    .venv/bin/python bench/async_figures.py --quick    # 30, 200 and 100 MB: proves the script works

One `moorage serve` (embedded S3 store), the tiny model (TorchScript Linear(16 → 4), default handlers):

- **queue overhead**: one async endpoint (1 instance). One request at a time: the time from sending
  InvokeEndpointAsync (inline body) until its output object is visible (HeadObject polled every ms),
  against InvokeEndpoint on a real-time endpoint of the same model; both through boto3, medians;
- **sustained throughput**: async with 2 instances (one request per instance at a time): N requests
  sent by 4 client threads, then until /metrics counts N processed; against a 2-instance real-time
  endpoint given N requests by 4 keep-alive client threads;
- **peak server RSS** for 1 MB, 100 MB and 1 GB inputs (in S3, a byte-counting handler): the peak is
  reset (`/proc/<pid>/clear_refs`) after the upload, so VmHWM is what the async run itself added.

Prints the figures and their ratios and writes them to `--out` (JSON). Asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from moorage.examples.builders import pack, tiny_model_dir

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))
from bench.capture_cost import _deploy  # noqa: E402  (an endpoint of one worker per instance)
from bench.procs import Registry  # noqa: E402
from bench.transform import _client, _serve, _write_figures  # noqa: E402  (one `moorage serve` with its S3 store)

BODY = json.dumps([[0.25] * 16]).encode()
BUCKET = "async-bench"
CLIENTS = 4
PART = 64 * 1024 * 1024
COUNT_HANDLER = textwrap.dedent("""
    import json

    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        return json.dumps({"bytes": len(body)}), "application/json"
""")


def _async_config(prefix: str) -> dict[str, Any]:
    return {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
        "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/{prefix}"},
    }


def _visible(s3: Any, location: str, timeout_s: float = 600.0) -> None:
    bucket, key = location.removeprefix("s3://").split("/", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return
        except ClientError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{location} did not appear within {timeout_s:g} s") from None
            time.sleep(0.001)


def queue_overhead(runtime: Any, s3: Any, async_ep: str, realtime_ep: str, count: int) -> dict[str, float]:
    async_ms, accepted_ms, realtime_ms = [], [], []
    for index in range(count + 10):
        started = time.perf_counter()
        answer = runtime.invoke_endpoint_async(
            EndpointName=async_ep, Body=BODY, ContentType="application/json"
        )
        accepted = time.perf_counter()
        _visible(s3, answer["OutputLocation"])
        done = time.perf_counter()
        runtime.invoke_endpoint(EndpointName=realtime_ep, Body=BODY, ContentType="application/json")[
            "Body"
        ].read()
        if index >= 10:
            async_ms.append((done - started) * 1000)
            accepted_ms.append((accepted - started) * 1000)
            realtime_ms.append((time.perf_counter() - done) * 1000)
    return {
        "async_p50_ms": statistics.median(async_ms),
        "async_202_p50_ms": statistics.median(accepted_ms),
        "realtime_p50_ms": statistics.median(realtime_ms),
    }


def _processed(url: str, endpoint: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = f'sagemaker_InvocationsProcesssed_total{{EndpointName="{endpoint}"}} '
    return sum(float(line.removeprefix(wanted)) for line in text.splitlines() if line.startswith(wanted))


def async_throughput(url: str, endpoint: str, count: int) -> float:
    local = threading.local()

    def send(_: int) -> None:
        if not hasattr(local, "runtime"):
            local.runtime = _client("sagemaker-runtime", url)
        local.runtime.invoke_endpoint_async(EndpointName=endpoint, Body=BODY, ContentType="application/json")

    before = _processed(url, endpoint)
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(send, range(count)))
    while _processed(url, endpoint) < before + count:
        time.sleep(0.01)
    return count / (time.perf_counter() - started)


def realtime_throughput(url: str, endpoint: str, count: int) -> float:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    share = count // CLIENTS

    def client(_: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        for _ in range(share):
            connection.request(
                "POST",
                f"/endpoints/{endpoint}/invocations",
                body=BODY,
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{endpoint} answered {response.status}")
        connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return share * CLIENTS / (time.perf_counter() - started)


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def peak_rss(runtime: Any, s3: Any, endpoint: str, pid: int, size: int) -> dict[str, float]:
    key = f"in/{size}.bin"
    part = (bytes(range(256)) * (PART // 256))[: min(size, PART)]
    if size <= PART:
        s3.put_object(Bucket=BUCKET, Key=key, Body=part)
    else:
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
        parts: list[dict[str, Any]] = []
        left = size
        while left:
            body = part[: min(left, PART)]
            number, left = len(parts) + 1, left - len(body)
            etag = s3.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=body
            )
            parts.append({"PartNumber": number, "ETag": etag["ETag"]})
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
    del part
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS now
    rss = _kib(pid, "VmRSS")
    started = time.perf_counter()
    answer = runtime.invoke_endpoint_async(EndpointName=endpoint, InputLocation=f"s3://{BUCKET}/{key}")
    _visible(s3, answer["OutputLocation"])
    took = time.perf_counter() - started
    bucket, out_key = answer["OutputLocation"].removeprefix("s3://").split("/", 1)
    counted = json.loads(s3.get_object(Bucket=bucket, Key=out_key)["Body"].read())["bytes"]
    if counted != size:
        raise RuntimeError(f"the handler counted {counted} bytes of {size}")
    peak = _kib(pid, "VmHWM")
    return {
        "input_bytes": size,
        "rss_mib": rss / 1024,
        "peak_mib": peak / 1024,
        "growth_mib": (peak - rss) / 1024,
        "seconds": took,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="few requests, inputs up to 100 MB")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "async_figures.json")
    args = parser.parse_args(argv)
    timed, sustained = (30, 200) if args.quick else (200, 1000)
    sizes = [1_000_000, 100 * 1024 * 1024] + ([] if args.quick else [1024 * 1024 * 1024])
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="moorage-async-bench-") as tmp:
        work = Path(tmp)
        tiny = pack(tiny_model_dir(work / "tiny"), work / "tiny.tar.gz")
        (work / "count" / "code").mkdir(parents=True)
        (work / "count" / "code" / "inference.py").write_text(COUNT_HANDLER)
        counter = pack(work / "count", work / "count.tar.gz")
        registry = Registry()
        try:
            launched, info = _serve(registry, work / "data")
            assert launched.process is not None
            pid, url = launched.process.pid, str(info["url"])
            s3 = _client("s3", str(info["s3_url"]))
            s3.create_bucket(Bucket=BUCKET)
            sm, runtime = _client("sagemaker", url), _client("sagemaker-runtime", url)
            _deploy(sm, tiny, "tiny-async", async_config=_async_config("one"))
            _deploy(sm, tiny, "tiny-realtime")
            figures["overhead"] = queue_overhead(runtime, s3, "tiny-async", "tiny-realtime", timed)
            print(f"[async] {figures['overhead']}", file=sys.stderr)
            _deploy(sm, tiny, "tiny-async-2", instances=2, async_config=_async_config("two"))
            _deploy(sm, tiny, "tiny-realtime-2", instances=2)
            figures["throughput"] = {
                "async_per_s": async_throughput(url, "tiny-async-2", sustained),
                "realtime_per_s": realtime_throughput(url, "tiny-realtime-2", sustained),
            }
            print(f"[async] {figures['throughput']}", file=sys.stderr)
            _deploy(sm, counter, "count-async", async_config=_async_config("count"))
            figures["memory"] = [peak_rss(runtime, s3, "count-async", pid, size) for size in sizes]
        finally:
            registry.stop_all()
    overhead, throughput = figures["overhead"], figures["throughput"]
    print(f"queue overhead, tiny model, one request at a time ({timed} requests, medians):")
    print(f"  async: send → output object visible  {overhead['async_p50_ms']:8.2f} ms")
    print(f"  async: send → 202                    {overhead['async_202_p50_ms']:8.2f} ms")
    print(f"  real-time InvokeEndpoint             {overhead['realtime_p50_ms']:8.2f} ms")
    ratio = overhead["async_p50_ms"] / overhead["realtime_p50_ms"]
    print(f"  ratio async / real-time              {ratio:8.1f}")
    print(f"sustained throughput, 2 instances, {CLIENTS} client threads, {sustained} requests:")
    print(f"  async      {throughput['async_per_s']:8.1f} requests/s")
    print(f"  real-time  {throughput['realtime_per_s']:8.1f} requests/s")
    print(f"  ratio      {throughput['async_per_s'] / throughput['realtime_per_s']:8.2f}")
    print("peak server RSS during one async request (peak reset after the upload):")
    for row in figures["memory"]:
        print(
            f"  input {row['input_bytes']:>13,} B: RSS {row['rss_mib']:6.1f} MiB, "
            f"peak {row['peak_mib']:6.1f} MiB (+{row['growth_mib']:.1f} MiB), "
            f"202 → output {row['seconds']:.2f} s"
        )
    _write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
