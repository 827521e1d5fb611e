"""The whole journey through the `moorage` command alone, against a real `moorage serve`.

package → upload → deploy → endpoints → describe → invoke (JSON, file, stdin) → update (a canary
with a new model, then weights) → logs → delete, with each step's output and exit code checked,
and the failure paths a user meets: an unknown endpoint, model data that does not exist, a handler
that raises. The model is the tiny TorchScript one, so each deploy takes seconds.
"""

from __future__ import annotations

import json
import tarfile
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

from support.cli import Cli, Result
from support.servers import RunningServer

pytestmark = pytest.mark.slow

ENDPOINT = "cli-journey"
ROW = [0.5 * i - 4 for i in range(16)]

# A handler as SageMaker users write one: MODEL_VERSION tells the two models apart.
HANDLER = textwrap.dedent("""
    import json
    import os

    import torch


    def model_fn(model_dir):
        model = torch.jit.load(os.path.join(model_dir, "model.pt"))
        return {"model": model, "version": os.environ.get("MODEL_VERSION", "unset")}


    def input_fn(body, content_type):
        return json.loads(body)


    def predict_fn(data, model):
        if "fail" in data:
            raise ValueError("asked to fail: " + data["fail"])
        with torch.no_grad():
            outputs = model["model"](torch.tensor(data["inputs"], dtype=torch.float32))
        return {"outputs": outputs.tolist(), "version": model["version"]}


    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
""")


def expected_outputs(model_file: Path, rows: list[list[float]]) -> list[list[float]]:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated; SageMaker loads it
        model = torch.jit.load(str(model_file))  # type: ignore[no-untyped-call]
    with torch.no_grad():
        result: list[list[float]] = model(torch.tensor(rows, dtype=torch.float32)).tolist()
    return result


def answer(result: Result) -> dict[str, Any]:
    assert result.code == 0, result
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def close(actual: list[list[float]], expected: list[list[float]]) -> bool:
    return all(
        abs(a - e) < 1e-5
        for row_a, row_e in zip(actual, expected, strict=True)
        for a, e in zip(row_a, row_e, strict=True)
    )


@pytest.fixture(scope="module")
def workdir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-journey")
    (root / "inference.py").write_text(HANDLER)
    (root / "model.pt").write_bytes(tiny_model.read_bytes())
    with tarfile.open(root / "weights.tar.gz", "w:gz") as archive:  # the seed's upload: weights only
        archive.add(root / "model.pt", arcname="model.pt")
    (root / "request.json").write_text(json.dumps({"inputs": [ROW]}))
    return root


def test_the_journey_through_the_moorage_command(
    cli: Cli, server: RunningServer, workdir: Path, tiny_model: Path
) -> None:
    expected = expected_outputs(tiny_model, [ROW])
    model_data = package_and_upload(cli, server, workdir)
    deploy_and_look(cli, model_data)
    invoke_three_ways(cli, workdir, expected)
    a_handler_error_is_reported(cli)
    a_canary_then_shifted_weights(cli, workdir, expected)
    logs_of_both_variants(cli)
    delete_everything(cli, server)


def package_and_upload(cli: Cli, server: RunningServer, workdir: Path) -> str:
    """package: weights at the top, the handler under code/; upload: to a bucket of the embedded
    store that does not exist yet (plain lines), then to the default bucket (with --progress)."""
    packaged = cli.run(
        "package",
        "--model-file",
        "model.pt",
        "--entry-point",
        "inference.py",
        "-o",
        "tiny.tar.gz",
        cwd=workdir,
    )
    assert packaged.code == 0, packaged
    assert "  model.pt\n  code\n  code/inference.py\n" in packaged.stdout

    uploaded = cli.run("upload", "tiny.tar.gz", "s3://cli-journey-models/v1/", cwd=workdir)
    assert uploaded.code == 0, uploaded
    assert uploaded.stdout == "s3://cli-journey-models/v1/tiny.tar.gz\n"
    note = (
        f"note: created the bucket 'cli-journey-models' at {server.s3_url}, the S3 store the moorage server"
    )
    assert note in uploaded.stderr
    assert "\r" not in uploaded.stderr  # no terminal, no --progress: plain lines only
    stored = server.client("s3").get_object(Bucket="cli-journey-models", Key="v1/tiny.tar.gz")["Body"].read()
    assert stored == (workdir / "tiny.tar.gz").read_bytes()

    default = cli.run("upload", "tiny.tar.gz", "--progress", "--output", "json", cwd=workdir)
    assert default.code == 0, default
    assert json.loads(default.stdout)["S3Uri"].startswith("s3://moorage-artifacts/upload-")
    assert "100%" in default.stderr  # --progress draws the bar even without a terminal
    return "s3://cli-journey-models/v1/tiny.tar.gz"


def deploy_and_look(cli: Cli, model_data: str) -> None:
    """deploy waits with a status line and says how to invoke; endpoints and describe show it."""
    env = ("--env", "SAGEMAKER_MODEL_SERVER_WORKERS=1", "--env", "MODEL_VERSION=1")
    deployed = cli.run("deploy", model_data, "--name", ENDPOINT, *env)
    assert deployed.code == 0, deployed
    assert f"Endpoint {ENDPOINT} is InService (1 x ml.m5.large)." in deployed.stdout
    assert f"moorage invoke {ENDPOINT} --json" in deployed.stdout
    assert f"Endpoint {ENDPOINT}: InService, 1/1 instances in service" in deployed.stderr
    again = cli.run("deploy", model_data, "--name", ENDPOINT)
    assert again.code == 1
    assert f"endpoint '{ENDPOINT}' already exists; change it with `moorage update {ENDPOINT}" in again.stderr

    table = cli.run("endpoints")
    assert table.code == 0, table
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "STATUS", "VARIANTS", "INSTANCES", "AGE"]
    row = next(line for line in rows if line.startswith(ENDPOINT + " "))
    assert row.split()[1:6] == ["InService", "AllTraffic", "w=1", "n=1", "1/1"]
    listed = answer(cli.run("endpoints", "--output", "json"))
    mine = next(e for e in listed["Endpoints"] if e["EndpointName"] == ENDPOINT)
    assert (mine["EndpointStatus"], mine["ProductionVariants"][0]["CurrentInstanceCount"]) == ("InService", 1)

    described = cli.run("describe", ENDPOINT)
    assert described.code == 0, described
    assert "Status      InService (1/1 instances in service)" in described.stdout
    assert model_data in described.stdout
    assert answer(cli.run("describe", ENDPOINT, "--output", "json"))["EndpointConfigName"] == ENDPOINT


def invoke_three_ways(cli: Cli, workdir: Path, expected: list[list[float]]) -> None:
    """--json to stdout; --body-file to -o with -v (metadata on stderr); stdin."""
    by_json = answer(cli.run("invoke", ENDPOINT, "--json", json.dumps({"inputs": [ROW]})))
    assert by_json["version"] == "1"
    assert close(by_json["outputs"], expected)

    to_file = cli.run(
        "invoke", ENDPOINT, "--body-file", "request.json", "-o", "answer.json", "-v", cwd=workdir
    )
    assert to_file.code == 0, to_file
    assert to_file.stdout == ""
    assert "ContentType: application/json\nInvokedProductionVariant: AllTraffic\n" in to_file.stderr
    assert json.loads((workdir / "answer.json").read_text()) == by_json

    by_stdin = answer(cli.run("invoke", ENDPOINT, "-", stdin=(workdir / "request.json").read_bytes()))
    assert by_stdin == by_json


def a_handler_error_is_reported(cli: Cli) -> None:
    """SageMaker's ModelError message, the container's status, where to look next; exit 1."""
    failed = cli.run("invoke", ENDPOINT, "--json", '{"fail": "on purpose"}')
    assert failed.code == 1
    assert failed.stdout == ""
    prefix = "the model failed (its container answered 500): Received server error (500) from primary"
    assert prefix in failed.stderr
    assert "asked to fail: on purpose" in failed.stderr
    assert f"See its logs: moorage logs {ENDPOINT}" in failed.stderr


def a_canary_then_shifted_weights(cli: Cli, workdir: Path, expected: list[list[float]]) -> None:
    """update --model-data (local weights + the handler, repacked) adds a canary at weight 0;
    update --weights then sends all traffic to it."""
    canary = cli.run(
        "update",
        ENDPOINT,
        "--model-data",
        "weights.tar.gz",
        "--entry-point",
        "inference.py",
        "--variant",
        "canary",
        "--weight",
        "0",
        "--env",
        "SAGEMAKER_MODEL_SERVER_WORKERS=1",
        "--env",
        "MODEL_VERSION=2",
        cwd=workdir,
    )
    assert canary.code == 0, canary
    assert canary.stdout.endswith(": AllTraffic w=1 n=1, canary w=0 n=1\n"), canary
    assert "Repacking inference.py into code/ of weights.tar.gz" in canary.stderr
    request = json.dumps({"inputs": [ROW]})
    on_canary = answer(cli.run("invoke", ENDPOINT, "--target-variant", "canary", "--json", request))
    assert on_canary["version"] == "2"
    assert close(on_canary["outputs"], expected)
    assert answer(cli.run("invoke", ENDPOINT, "--json", request))["version"] == "1"

    shifted = cli.run("update", ENDPOINT, "--weights", "AllTraffic=0,canary=1")
    assert shifted.code == 0, shifted
    assert shifted.stdout.endswith(": AllTraffic w=0 n=1, canary w=1 n=1\n"), shifted
    routed = cli.run("invoke", ENDPOINT, "-v", "--json", request)
    assert answer(routed)["version"] == "2"
    assert "InvokedProductionVariant: canary" in routed.stderr


def logs_of_both_variants(cli: Cli) -> None:
    logs = cli.run("logs", ENDPOINT)
    assert logs.code == 0, logs
    streams = {line.split(" ", 1)[0].split("/", 1)[0] for line in logs.stdout.splitlines()}
    assert {"AllTraffic", "canary"} <= streams


def delete_everything(cli: Cli, server: RunningServer) -> None:
    """The endpoint, its config, deploy's superseded config, both models; then the name is unknown."""
    sm = server.client("sagemaker")
    config = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    variants = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    models = [variant["ModelName"] for variant in variants]

    report = answer(cli.run("delete", ENDPOINT, "--output", "json"))

    assert report == {"Endpoints": [ENDPOINT], "EndpointConfigs": [config, ENDPOINT], "Models": models}
    assert not [m for m in sm.list_models()["Models"] if m["ModelName"] in models]
    assert ENDPOINT not in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    gone = cli.run("describe", ENDPOINT)
    assert gone.code == 1
    assert gone.stderr == f"moorage: endpoint '{ENDPOINT}' does not exist; `moorage endpoints` lists them\n"


def test_an_unknown_endpoint_is_named_with_where_to_look(cli: Cli) -> None:
    message = "moorage: endpoint 'cli-nowhere' does not exist; `moorage endpoints` lists them\n"
    for args in (
        ("describe", "cli-nowhere"),
        ("invoke", "cli-nowhere", "--json", "{}"),
        ("update", "cli-nowhere", "--instance-count", "2"),
        ("delete", "cli-nowhere"),
    ):
        result = cli.run(*args)
        assert (result.code, result.stdout, result.stderr) == (1, "", message), f"{args}: {result}"
    logs = cli.run("logs", "cli-nowhere")
    assert logs.code == 1
    assert "Endpoint 'cli-nowhere' has no logs on this server" in logs.stderr


def test_model_data_that_does_not_exist_fails_the_deploy_with_the_reason(
    cli: Cli, server: RunningServer
) -> None:
    missing = "s3://cli-absent-bucket/model.tar.gz"
    result = cli.run("deploy", missing, "--name", "cli-broken")

    assert result.code == 1
    reason = server.client("sagemaker").describe_endpoint(EndpointName="cli-broken")["FailureReason"]
    assert missing in reason
    assert f"moorage: endpoint 'cli-broken' is Failed (0/1 instances): {reason}\n" in result.stderr
    assert "Remove it: moorage delete cli-broken" in result.stderr
    assert "Endpoint cli-broken is" not in result.stdout
    removed = cli.run("delete", "cli-broken")
    assert removed.code == 0, removed
    assert "Deleted endpoint cli-broken\nDeleted endpoint config cli-broken\n" in removed.stdout


def test_a_local_model_file_that_does_not_exist_creates_nothing(cli: Cli, server: RunningServer) -> None:
    result = cli.run("deploy", "no-such.tar.gz", "--name", "cli-never")

    assert result.code == 1
    assert result.stderr == "moorage: model data no-such.tar.gz is not a file\n"
    names = [e["EndpointName"] for e in server.client("sagemaker").list_endpoints()["Endpoints"]]
    assert "cli-never" not in names


def test_upload_to_another_s3_endpoint_never_creates_buckets(cli: Cli, moto_url: str, workdir: Path) -> None:
    import boto3

    env = {"AWS_ENDPOINT_URL_S3": moto_url}
    refused = cli.run("upload", "weights.tar.gz", "s3://cli-elsewhere/m.tar.gz", env=env, cwd=workdir)
    assert refused.code == 1
    assert f"bucket 'cli-elsewhere' does not exist at {moto_url}; create it first" in refused.stderr

    moto = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    moto.create_bucket(Bucket="cli-elsewhere")
    uploaded = cli.run("upload", "weights.tar.gz", "s3://cli-elsewhere/m.tar.gz", env=env, cwd=workdir)
    assert uploaded.code == 0, uploaded
    assert uploaded.stdout == "s3://cli-elsewhere/m.tar.gz\n"
    assert "note:" not in uploaded.stderr
    stored = moto.get_object(Bucket="cli-elsewhere", Key="m.tar.gz")["Body"].read()
    assert stored == (workdir / "weights.tar.gz").read_bytes()
