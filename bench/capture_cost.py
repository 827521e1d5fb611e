"""What data capture costs on the invoke path: tiny model p50 with capture at 100 % vs capture off.

    .venv/bin/python bench/capture_cost.py            # 3 rounds of 2000 sequential requests per endpoint
    .venv/bin/python bench/capture_cost.py --quick    # 1 round of 300: proves the script works

One `moorage serve` (embedded S3 store) with two endpoints of the tiny model (TorchScript Linear(16 → 4),
default handlers, one worker each): one without DataCaptureConfig, one capturing every request and
answer (InputAndOutput, 100 %) to the embedded store (default flush settings). One keep-alive client
sends InvokeEndpoint requests one after another, alternating which endpoint goes first per round.
Afterwards it prints how many records were written and dropped (/metrics). Prints figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from moorage.examples.builders import pack, tiny_model_dir

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))
from bench.procs import Registry  # noqa: E402
from bench.transform import _client, _serve  # noqa: E402  (one `moorage serve` with its S3 store)

BODY = json.dumps([[0.25] * 16]).encode()
BUCKET = "capture-bench"
WARMUP = 200


def _deploy(
    sm: Any,
    tarball: Path,
    name: str,
    capture: dict[str, Any] | None = None,
    *,
    instances: int = 1,
    async_config: dict[str, Any] | None = None,
) -> None:
    """An endpoint (model, config and endpoint all called `name`) of one worker per instance, waited
    for; `capture`: its DataCaptureConfig, `async_config`: its AsyncInferenceConfig. The async and
    streaming figures deploy with it too."""
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/moorage-bench",
        PrimaryContainer={
            "ModelDataUrl": tarball.resolve().as_uri(),
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        },
    )
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InitialInstanceCount": instances,
        "InstanceType": "ml.m5.large",
    }
    extra: dict[str, Any] = {"DataCaptureConfig": capture} if capture else {}
    if async_config:
        extra["AsyncInferenceConfig"] = async_config
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], **extra)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.25, "MaxAttempts": 400}
    )


def _p50_ms(url: str, endpoint: str, count: int) -> float:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    took = []
    for index in range(count + WARMUP):
        started = time.perf_counter()
        connection.request("POST", f"/endpoints/{endpoint}/invocations", body=BODY, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{endpoint} answered {response.status}")
        if index >= WARMUP:
            took.append((time.perf_counter() - started) * 1000)
    connection.close()
    return statistics.median(took)


def _capture_counters(url: str, endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("moorage_capture_") and f'EndpointName="{endpoint}"' in line:
            family = line.split("{", 1)[0].removeprefix("moorage_capture_")
            counters[family] = counters.get(family, 0.0) + float(line.rsplit(" ", 1)[1])
    return counters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one round of 300 requests")
    args = parser.parse_args(argv)
    rounds, count = (1, 300) if args.quick else (3, 2000)
    p50: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="moorage-capture-cost-") as tmp:
        work = Path(tmp)
        tarball = pack(tiny_model_dir(work / "tiny"), work / "tiny.tar.gz")
        registry = Registry()
        try:
            _, info = _serve(registry, work / "data")
            url = str(info["url"])
            _client("s3", str(info["s3_url"])).create_bucket(Bucket=BUCKET)
            sm = _client("sagemaker", url)
            endpoints = {"off": "capture-off", "on": "capture-on"}
            _deploy(sm, tarball, endpoints["off"], None)
            _deploy(
                sm,
                tarball,
                endpoints["on"],
                {
                    "InitialSamplingPercentage": 100,
                    "DestinationS3Uri": f"s3://{BUCKET}/bench",
                    "CaptureOptions": [{"CaptureMode": "InputAndOutput"}],
                },
            )
            for round_no in range(rounds):
                for mode in ("off", "on") if round_no % 2 == 0 else ("on", "off"):
                    p50[mode].append(_p50_ms(url, endpoints[mode], count))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                counters = _capture_counters(url, endpoints["on"])
                done = counters.get("records_total", 0) + counters.get("dropped_total", 0)
                if done >= counters.get("sampled_total", 0):
                    break
                time.sleep(0.2)
        finally:
            registry.stop_all()
    off, on = statistics.median(p50["off"]), statistics.median(p50["on"])
    print(f"invoke path, tiny model, 1 client, p50 over {rounds} round(s) of {count} requests (one server):")
    print(f"  capture off:        {off:.3f} ms   (rounds: {', '.join(f'{v:.3f}' for v in p50['off'])})")
    print(f"  capture 100 %:      {on:.3f} ms   (rounds: {', '.join(f'{v:.3f}' for v in p50['on'])})")
    print(f"  difference:         {on - off:+.3f} ms")
    written, files = counters.get("records_total", 0), counters.get("files_total", 0)
    dropped, sampled = counters.get("dropped_total", 0), counters.get("sampled_total", 0)
    print(f"  captured: {written:.0f} written ({files:.0f} files), {dropped:.0f} dropped, of {sampled:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
