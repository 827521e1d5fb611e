"""Shared pieces of the multi-model endpoint tests: archives whose own handler says which model answered,
uploading them under a prefix of the embedded S3 store, and a multi-model endpoint made with boto3.

Each archive carries `code/inference.py` with its own operation (sum, max, negate, ...) and a
`config.json` that model_fn reads: its name, and optionally a gate (support/gates.py) that model_fn
waits on, or one that it fails on until the test opens it. A request may name a gate too (`hold`), so a
test keeps a call in flight without sleeping.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from moorage.examples.builders import pack
from support.hosting import FAST, IMAGE, one_variant_config, unique

HANDLER = textwrap.dedent("""
    import json
    import os
    import urllib.request


    def model_fn(model_dir):
        with open(os.path.join(model_dir, "config.json")) as handle:
            config = json.load(handle)
        if config.get("fail_unless"):  # model_fn fails until the test opens this gate
            try:
                urllib.request.urlopen(config["fail_unless"], timeout=0.5).read()
            except OSError:
                raise RuntimeError(f"model_fn refused to load {config['name']}: its gate is closed") from None
        if config.get("load_gate"):
            urllib.request.urlopen(config["load_gate"], timeout=600).read()
        return config


    def input_fn(body, content_type):
        return json.loads(body)


    def predict_fn(request, config):
        if request.get("hold"):
            urllib.request.urlopen(request["hold"], timeout=600).read()
        values = request.get("x", [])
        return {"model": config["name"], "answer": OPERATION, "pid": os.getpid(), "extra": EXTRA}


    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"


    def peek(path):
        # what reading `path` gives this model: its text, or the name of the error
        try:
            with open(path) as handle:
                return handle.read()
        except OSError as exc:
            return type(exc).__name__
""")
OPERATIONS = {
    "sum": "sum(values)",
    "max": "max(values)",
    "negate": "[-v for v in values]",
    "count": "len(values)",
}


def archive(
    root: Path,
    name: str,
    *,
    operation: str = "sum",
    extra: str = "None",
    code: bool = True,
    requirements: str | None = None,
    weights_bytes: int = 0,
    **config: Any,
) -> Path:
    """<root>/<name>.tar.gz with its own handler (unless `code` is False), config.json, and
    `weights_bytes` of zero weights (the archive stays small; the extracted tree has their size)."""
    model_dir = root / f"{name}-{unique('v')}"
    model_dir.mkdir(parents=True)
    if weights_bytes:
        (model_dir / "weights.bin").write_bytes(bytes(weights_bytes))
    (model_dir / "config.json").write_text(json.dumps({"name": name, **config}))
    if code:
        (model_dir / "code").mkdir()
        source = HANDLER.replace("OPERATION", OPERATIONS[operation]).replace("EXTRA", extra)
        (model_dir / "code" / "inference.py").write_text(source)
        if requirements is not None:
            (model_dir / "code" / "requirements.txt").write_text(requirements)
    return pack(model_dir, root / f"{model_dir.name}.tar.gz")


def create_mme(
    sm: Any,
    prefix: str,
    *,
    cache: str = "Enabled",
    env: dict[str, str] | None = None,
    instances: int = 1,
) -> str:
    """CreateModel (Mode MultiModel on `prefix`), its endpoint config and endpoint; the endpoint's name."""
    model, config, endpoint = unique("mme"), unique("mme-config"), unique("mme-ep")
    sm.create_model(
        ModelName=model,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/moorage-tests",
        PrimaryContainer={
            "Image": IMAGE,
            "Mode": "MultiModel",
            "ModelDataUrl": prefix,
            "MultiModelConfig": {"ModelCacheSetting": cache},
            "Environment": env or {},
        },
    )
    one_variant_config(sm, model, name=config, instances=instances)
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST)
    return endpoint


def call(runtime: Any, endpoint: str, target: str, **request: Any) -> dict[str, Any]:
    """InvokeEndpoint with TargetModel; the handler's JSON answer."""
    response = runtime.invoke_endpoint(
        EndpointName=endpoint,
        TargetModel=target,
        Body=json.dumps(request),
        ContentType="application/json",
        Accept="application/json",
    )
    answer: dict[str, Any] = json.loads(response["Body"].read())
    return answer


def loaded_counts(metrics_text: str, endpoint: str) -> list[int]:
    """LoadedModelCount of each instance of `endpoint`, from /metrics."""
    return [
        int(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("sagemaker_LoadedModelCount{") and f'EndpointName="{endpoint}"' in line
    ]


def spare_counts(metrics_text: str, endpoint: str) -> list[int]:
    """moorage_mme_spare_workers of each instance of `endpoint`: workers forked and waiting for a model."""
    return [
        int(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("moorage_mme_spare_workers{") and f'EndpointName="{endpoint}"' in line
    ]


def call_until_loaded(
    runtime: Any, endpoint: str, target: str, attempts: int = 30, **request: Any
) -> dict[str, Any]:
    """`call`, retried on ModelNotReadyException as SageMaker advises (each try waits on the server)."""
    for _ in range(attempts - 1):
        try:
            return call(runtime, endpoint, target, **request)
        except runtime.exceptions.ModelNotReadyException:
            continue
    return call(runtime, endpoint, target, **request)


def tiny_wheel(root: Path, name: str = "moorage_mme_dep", value: str = "from the dependency") -> Path:
    """A pure-Python wheel, written by hand (no build step), that code/requirements.txt can name: pip
    installs it offline in about a second. Its module's VALUE is `value`."""
    import base64
    import hashlib
    import zipfile

    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        f"{name}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{name}-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: moorage-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-0.1.dist-info/RECORD,,")
    files[f"{name}-0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
    root.mkdir(parents=True, exist_ok=True)
    wheel = root / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive_file:
        for path, text in files.items():
            archive_file.writestr(path, text)
    return wheel
