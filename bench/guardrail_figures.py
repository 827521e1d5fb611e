"""What shadow variants and guarded updates cost: the production p50 with a shadow on vs off, and the
time from an alarm's breach to a full rollback.

    .venv/bin/python bench/guardrail_figures.py            # 3 rounds of 2000 sequential requests
    .venv/bin/python bench/guardrail_figures.py --quick    # 1 round of 300: proves the script works

One `moorage serve` (metrics sampled for CloudWatch every 0.1 s, 1 s alarm periods allowed).

Shadow: two endpoints of the tiny model (TorchScript Linear(16 → 4), default handlers, one worker per
variant): one with a single production variant, one with the same production variant and a shadow of
the same model at equal weight (every request copied). One keep-alive client sends InvokeEndpoint
requests one after another, alternating which endpoint goes first per round; it also prints how many
copies the shadow answered and dropped.

Rollback: an endpoint of a handler that answers, updated with LINEAR 50 % steps (60 s bake) to one whose
predict_fn raises, watched by an alarm on Invocation5XXErrors (Sum ≥ 1 over 1 s) while a client keeps
invoking. "Breach → rollback" is the endpoint's LastModifiedTime (written as traffic went back) minus
the alarm's StateUpdatedTimestamp, both from the server's clock; "first error → rollback" is measured
by the client. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from moorage.examples.builders import pack, tiny_model_dir

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))
from bench.capture_cost import _p50_ms  # noqa: E402  (sequential keep-alive requests, their median)
from bench.procs import Registry  # noqa: E402
from bench.transform import _client  # noqa: E402
from bench.transform import _serve as _serve_with  # noqa: E402  (one `moorage serve` with its S3 store)

HANDLER = textwrap.dedent("""
    import json
    import os


    def model_fn(model_dir):
        return os.environ.get("BENCH_BROKEN") == "1"


    def predict_fn(data, broken):
        if broken:
            raise RuntimeError("the new model is broken")
        return data


    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
""")


def _serve(registry: Registry, data_dir: Path) -> dict[str, Any]:
    """bench/transform.py's `moorage serve`, sampling CloudWatch metrics every 0.1 s for the alarms."""
    _, info = _serve_with(
        registry, data_dir, {"MOORAGE_CLOUDWATCH_SAMPLE": "0.1", "MOORAGE_CLOUDWATCH_MIN_PERIOD": "1"}
    )
    return info


def _model(sm: Any, name: str, tarball: Path, **env: str) -> str:
    sm.create_model(
        ModelName=name,
        PrimaryContainer={
            "ModelDataUrl": tarball.resolve().as_uri(),
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **env},
        },
    )
    return name


def _variant(name: str, model: str) -> dict[str, Any]:
    return {"VariantName": name, "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}


def _endpoint(sm: Any, name: str, production: str, shadow: str | None = None) -> str:
    members: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [_variant("AllTraffic", production)],
    }
    if shadow is not None:
        members["ShadowProductionVariants"] = [_variant("Shadow", shadow)]
    sm.create_endpoint_config(**members)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.25, "MaxAttempts": 400}
    )
    return name


def _counter(url: str, family: str, endpoint: str, variant: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    prefix = f'{family}_total{{EndpointName="{endpoint}",VariantName="{variant}"}} '
    return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def _shadow_cost(url: str, sm: Any, tiny: Path, rounds: int, count: int) -> None:
    off = _endpoint(sm, "shadow-off", _model(sm, "tiny-off", tiny))
    on = _endpoint(sm, "shadow-on", _model(sm, "tiny-on", tiny), _model(sm, "tiny-shadow", tiny))
    p50: dict[str, list[float]] = {off: [], on: []}
    for round_no in range(rounds):
        for endpoint in (off, on) if round_no % 2 == 0 else (on, off):
            p50[endpoint].append(_p50_ms(url, endpoint, count))
    time.sleep(1.0)  # the last copies finish
    answered = _counter(url, "sagemaker_Invocations", on, "Shadow")
    dropped = _counter(url, "moorage_shadow_dropped", on, "Shadow")
    low, high = statistics.median(p50[off]), statistics.median(p50[on])
    print(f"production p50, tiny model, 1 client, {rounds} round(s) of {count} requests (one server):")
    print(f"  no shadow:             {low:.3f} ms   (rounds: {', '.join(f'{v:.3f}' for v in p50[off])})")
    print(f"  shadow, every request: {high:.3f} ms   (rounds: {', '.join(f'{v:.3f}' for v in p50[on])})")
    print(f"  difference:            {high - low:+.3f} ms")
    print(f"  shadow copies: {answered:.0f} answered, {dropped:.0f} dropped")


def _rollback_time(url: str, sm: Any, handler: Path) -> None:
    cloudwatch = _client("cloudwatch", url)
    runtime = _client("sagemaker-runtime", url)
    name = _endpoint(sm, "rollback", _model(sm, "good", handler))
    broken = _model(sm, "broken", handler, BENCH_BROKEN="1")
    sm.create_endpoint_config(
        EndpointConfigName="broken", ProductionVariants=[_variant("AllTraffic", broken)]
    )
    cloudwatch.put_metric_alarm(
        AlarmName="rollback-5xx",
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}],
        Statistic="Sum",
        Period=1,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    first_error: list[float] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                runtime.invoke_endpoint(EndpointName=name, Body=b"[1]", ContentType="application/json")
            except Exception:
                if not first_error:
                    first_error.append(time.time())

    sender = threading.Thread(target=traffic)
    sender.start()
    sm.update_endpoint(
        EndpointName=name,
        EndpointConfigName="broken",
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "LINEAR",
                    "WaitIntervalInSeconds": 60,
                    "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
                }
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "rollback-5xx"}]},
        },
    )
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 4000}
    )
    stop.set()
    sender.join()
    described = sm.describe_endpoint(EndpointName=name)
    alarm = cloudwatch.describe_alarms(AlarmNames=["rollback-5xx"])["MetricAlarms"][0]
    rolled_back = described["LastModifiedTime"].timestamp()
    breach = alarm["StateUpdatedTimestamp"].timestamp()
    print("rollback of a LINEAR 50 % update whose new model fails")
    print("(alarm: Invocation5XXErrors Sum >= 1 over 1 s, metrics sampled every 0.1 s):")
    print(f"  FailureReason: {described.get('FailureReason')}")
    took = (rolled_back - breach) * 1000
    print(f"  alarm breach -> traffic back on the old fleet: {took:.0f} ms (server clock)")
    if first_error:
        print(
            f"  first 5xx seen by the client -> rollback:     {(rolled_back - first_error[0]) * 1000:.0f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one round of 300 requests")
    args = parser.parse_args(argv)
    rounds, count = (1, 300) if args.quick else (3, 2000)
    with tempfile.TemporaryDirectory(prefix="moorage-guardrails-") as tmp:
        work = Path(tmp)
        tiny = pack(tiny_model_dir(work / "tiny"), work / "tiny.tar.gz")
        (work / "handler" / "code").mkdir(parents=True)
        (work / "handler" / "code" / "inference.py").write_text(HANDLER)
        handler = pack(work / "handler", work / "handler.tar.gz")
        registry = Registry()
        try:
            info = _serve(registry, work / "data")
            url = str(info["url"])
            sm = _client("sagemaker", url)
            _shadow_cost(url, sm, tiny, rounds, count)
            _rollback_time(url, sm, handler)
        finally:
            registry.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
