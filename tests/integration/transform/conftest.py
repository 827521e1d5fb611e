"""A scoring handler, a server per test module, and the helpers the batch transform tests share.

SCORE_HANDLER answers every request with one line per record, so a test reads from the outputs
alone how records were packed: a CSV record `a,b,c` gets `<sum>,<records in its request>`; a JSON
record (or a JSON array of numbers, after an InputFilter) gets `{"sum": ..., "n": ...}`. A record
containing `bad` makes it raise; a record starting with `block` makes it wait until the test's
loopback gate opens (never a sleep). Counts travel in the answers, not in files: workers may only
write to their own scratch directory.
"""

from __future__ import annotations

import contextlib
import http.server
import textwrap
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import WaiterError

from support.hosting import FAST, IMAGE
from support.hosting import pack_handler as pack_handler  # the transform tests import it from here
from support.servers import REGION, RunningServer, start_server, wait_until_gone

SCORE_HANDLER = textwrap.dedent("""
    import json
    import os
    import urllib.request


    def model_fn(model_dir):
        return {"batch": os.environ.get("SAGEMAKER_BATCH")}


    def transform_fn(model, data, content_type, accept):
        text = data.decode() if isinstance(data, (bytes, bytearray)) else data
        lines = [line for line in text.split("\\n") if line.strip()]
        out = []
        for line in lines:
            if line.startswith("block"):
                urllib.request.urlopen(f"{os.environ['GATE_URL']}?pid={os.getpid()}", timeout=300).read()
            if "bad" in line:
                raise ValueError(f"cannot score {line!r}")
            if content_type == "text/csv":
                cells = [cell for cell in line.split(",") if cell != "block"]
                out.append(f"{sum(float(cell) for cell in cells):g},{len(lines)}")
            else:
                value = json.loads(line)
                numbers = value["x"] if isinstance(value, dict) else value
                out.append(json.dumps({"sum": sum(numbers), "n": len(lines), "batch": model["batch"]}))
        return "\\n".join(out) + "\\n", accept or content_type
""")


def sdk_environment(monkeypatch: pytest.MonkeyPatch, server: RunningServer, home: Path) -> None:
    """Point the unchanged SageMaker SDK (and its boto3 clients) at `server` (docs/sagemaker-sdk.md)."""
    assert server.s3_url is not None
    for variable in ("SAGEMAKER", "SAGEMAKER_RUNTIME", "IAM", "CLOUDWATCH_LOGS"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{variable}", server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture(scope="session")
def score_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("score"), SCORE_HANDLER)


class Gate:
    """A loopback HTTP server whose requests wait until the test opens it; counts who is waiting and
    keeps the process ids of the workers that came (`pids`, in arrival order)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.arrived = threading.Semaphore(0)
        self.pids: list[int] = []
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                gate.pids.append(int(query.get("pid", ["0"])[0]))
                gate.arrived.release()
                gate.opened.wait(300)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_arrival(self, timeout: float = 120.0) -> None:
        assert self.arrived.acquire(timeout=timeout), "the handler never reached the gate"

    def close(self) -> None:
        self.opened.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    opened = Gate()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("transform") / "data")
    try:
        yield running
    finally:
        running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


def new_bucket(s3: Any) -> str:
    bucket = f"tr-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    return bucket


def stage(s3: Any, objects: dict[str, str | bytes]) -> str:
    """A new bucket holding `objects` (key → body); returns its name."""
    bucket = new_bucket(s3)
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


def create_model(sm: Any, tarball: Path, env: dict[str, str] | None = None) -> str:
    name = f"score-{uuid.uuid4().hex[:8]}"
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/moorage-tests",
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": f"file://{tarball}",
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **(env or {})},
        },
    )
    return name


def start_job(
    sm: Any,
    model: str,
    source: str,
    output: str,
    *,
    content_type: str = "text/csv",
    split: str = "Line",
    strategy: str = "MultiRecord",
    **extra: Any,
) -> str:
    name = f"job-{uuid.uuid4().hex[:8]}"
    data_type = extra.pop("data_type", "S3Prefix")
    compression = extra.pop("compression", "None")
    assemble = extra.pop("assemble", "Line")
    resources = extra.pop("resources", {"InstanceType": "ml.m5.large", "InstanceCount": 1})
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        BatchStrategy=strategy,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": source}},
            "ContentType": content_type,
            "SplitType": split,
            "CompressionType": compression,
        },
        TransformOutput={"S3OutputPath": output, "AssembleWith": assemble, "Accept": content_type},
        TransformResources=resources,
        **extra,
    )
    return name


def start_staged_job(sm: Any, model: str, bucket: str, **extra: Any) -> str:
    """`start_job` over what `stage` put under in/ of `bucket`, its output under out (`extra` as there)."""
    return start_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out", **extra)


def wait_for_end(sm: Any, name: str) -> dict[str, Any]:
    """The boto3 waiter (Completed or Stopped), then the final description; Failed raises WaiterError."""
    sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=name, WaiterConfig=FAST)
    described: dict[str, Any] = sm.describe_transform_job(TransformJobName=name)
    return described


def wait_for_job(sm: Any, name: str) -> dict[str, Any]:
    """The final description, whatever the status (a Failed job's FailureReason is then in the
    assertion's message; a job that never ends is still InProgress when the waiter gives up)."""
    with contextlib.suppress(WaiterError):
        sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=name, WaiterConfig=FAST)
    described: dict[str, Any] = sm.describe_transform_job(TransformJobName=name)
    return described


def read(s3: Any, bucket: str, key: str) -> str:
    body: str = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return body


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(str(item["Key"]) for item in listed)
