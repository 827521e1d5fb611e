"""`moorage serve --auth sigv4` driven by unchanged boto3, the aws CLI and the SageMaker SDK.

Reliability matrix row 14: keys come from `moorage credentials create --output json`, run as a user
would. Good keys work on the control plane, InvokeEndpoint and the S3 store; missing, unknown, wrong,
stale or tampered signatures get AWS's error codes; an invoke-only key can invoke but not manage.
Row 15, on the same running server: only the two configured loopback ports listen, workers hold no
server secret and no socket file, and the data dir and credentials file are private.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import psutil
import pytest
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from moorage.settings import MAX_PAYLOAD_BYTES
from support.hosting import one_variant_config
from support.servers import REGION, RunningServer, http_get, post, start_server, wait_until_gone
from support.signed import Key, Secured, create_key

pytestmark = pytest.mark.slow

AWS_CLI = Path(sys.executable).parent / "aws"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, artifacts: Any) -> Iterator[Secured]:
    data = tmp_path_factory.mktemp("auth") / "data"
    endpoint = f"auth-{uuid.uuid4().hex[:8]}"
    admin = create_key(data)
    invoker = create_key(data, "--role", "invoke", "--endpoints", endpoint)
    # The server's own AWS credentials (for real S3, say) must never reach a worker.
    server_secret = f"server-secret-{uuid.uuid4().hex}"
    server = start_server(
        data,
        args=["--auth", "sigv4"],
        env={"AWS_SECRET_ACCESS_KEY": server_secret, "AWS_SESSION_TOKEN": server_secret},
    )
    try:
        sm = server.client("sagemaker", credentials=admin)
        sm.create_model(
            ModelName=endpoint,
            PrimaryContainer={
                "ModelDataUrl": f"file://{artifacts.tiny_tar}",
                "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
            },
        )
        sm.create_endpoint_config(
            EndpointConfigName=endpoint,
            ProductionVariants=[
                {"VariantName": "AllTraffic", "ModelName": endpoint, "InitialInstanceCount": 1,
                 "InstanceType": "ml.m5.large"}
            ],
        )  # fmt: skip
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint, WaiterConfig={"Delay": 0.25, "MaxAttempts": 400}
        )
        yield Secured(server, admin, invoker, endpoint, server_secret)
    finally:
        server.stop()
        assert not wait_until_gone(server.tag), server.log()[-3000:]


def invoke(runtime: Any, endpoint: str) -> list[list[float]]:
    response = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps([[0.5] * 16]), ContentType="application/json"
    )
    result: list[list[float]] = json.loads(response["Body"].read())
    return result


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    response = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def unsigned_client(server: RunningServer, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )


# Good keys ----------------------------------------------------------------------------------------------
def test_good_keys_run_the_control_plane_and_invoke(secured: Secured) -> None:
    sm = secured.server.client("sagemaker", credentials=secured.admin)
    endpoints = {e["EndpointName"]: e["EndpointStatus"] for e in sm.list_endpoints()["Endpoints"]}
    assert endpoints[secured.endpoint] == "InService"
    assert (
        len(
            invoke(secured.server.client("sagemaker-runtime", credentials=secured.admin), secured.endpoint)[0]
        )
        == 4
    )
    assert http_get(secured.server.url + "/ping") == (200, b'{"status": "Healthy"}')


def test_s3_with_good_keys_puts_gets_lists_and_uploads_in_parts(secured: Secured, tmp_path: Path) -> None:
    s3 = secured.server.client("s3", credentials=secured.admin)
    bucket = f"auth-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="code/inference.py", Body=b"print('hi')\n")
    assert s3.get_object(Bucket=bucket, Key="code/inference.py")["Body"].read() == b"print('hi')\n"
    big = tmp_path / "model.tar.gz"
    big.write_bytes(os.urandom(6 * MIB))
    s3.upload_file(
        str(big),
        bucket,
        "model.tar.gz",
        Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB),
    )
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted((item["Key"], item["Size"]) for item in listed) == [
        ("code/inference.py", 12),
        ("model.tar.gz", 6 * MIB),
    ]
    assert s3.head_object(Bucket=bucket, Key="model.tar.gz")["ETag"].endswith('-2"')


# Bad or missing signatures ------------------------------------------------------------------------------
def test_a_model_uploaded_to_the_embedded_store_deploys_with_auth_on(
    secured: Secured, artifacts: Any
) -> None:
    """The seed's first step (aws s3 cp) then CreateModel from s3://: the server reads its own store
    from disk, so it needs no credentials of its own for it."""
    s3 = secured.server.client("s3", credentials=secured.admin)
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(artifacts.tiny_tar), bucket, "model.tar.gz")
    sm = secured.server.client("sagemaker", credentials=secured.admin)
    name = f"from-s3-{uuid.uuid4().hex[:8]}"
    sm.create_model(ModelName=name, PrimaryContainer={"ModelDataUrl": f"s3://{bucket}/model.tar.gz"})
    one_variant_config(sm, name, name=name, instance_type="local")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.25, "MaxAttempts": 400}
    )
    assert len(invoke(secured.server.client("sagemaker-runtime", credentials=secured.admin), name)[0]) == 4
    sm.delete_endpoint(EndpointName=name)


def test_missing_unknown_and_wrong_keys_get_aws_error_codes(secured: Secured) -> None:
    server, endpoint = secured.server, secured.endpoint
    cases = [
        (None, "MissingAuthenticationToken"),
        (("AKIANOSUCHKEY0000000", "x" * 40), "UnrecognizedClientException"),
        ((secured.admin[0], "not-the-secret"), "InvalidSignatureException"),
    ]
    for key, code in cases:
        sm = (
            unsigned_client(server, "sagemaker")
            if key is None
            else server.client("sagemaker", credentials=key)
        )
        runtime = (
            unsigned_client(server, "sagemaker-runtime")
            if key is None
            else server.client("sagemaker-runtime", credentials=key)
        )
        assert error_of(sm.list_endpoints)[:2] == (403, code)
        assert error_of(invoke, runtime, endpoint)[:2] == (403, code)
    # The credential scope must name this server's region.
    elsewhere = boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name="eu-west-1",
        aws_access_key_id=secured.admin[0],
        aws_secret_access_key=secured.admin[1],
        config=Config(retries={"max_attempts": 1}),
    )
    status, code, message = error_of(elsewhere.list_endpoints)
    assert (status, code) == (403, "InvalidSignatureException") and "region" in message
    # /metrics is behind auth too; /ping says nothing about keys.
    assert http_get(server.url + "/metrics")[0] == 403


def signed_headers(
    url: str, body: bytes, key: Key, headers: dict[str, str], timestamp: str | None = None
) -> dict[str, str]:
    """Sign with botocore's own SigV4Auth, optionally at a fixed time (botocore has no clock-skew fix)."""
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    auth = SigV4Auth(Credentials(*key), "sagemaker", REGION)
    if timestamp is None:
        auth.add_auth(request)
    else:
        request.context["timestamp"] = timestamp
        request.headers["X-Amz-Date"] = timestamp
        canonical = auth.canonical_request(request)
        signature = auth.signature(auth.string_to_sign(request, canonical), request)
        signed = auth.signed_headers(auth.headers_to_sign(request))
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, SignedHeaders={signed}, "
            f"Signature={signature}"
        )
    return dict(request.headers.items())


def _error(body: bytes) -> tuple[str, str]:
    document = json.loads(body)
    return document["__type"], document["Message"]


def test_a_changed_body_or_an_added_header_is_refused(secured: Secured) -> None:
    url = f"{secured.server.url}/endpoints/{secured.endpoint}/invocations"
    body = json.dumps([[0.5] * 16]).encode()
    headers = signed_headers(url, body, secured.admin, {"Content-Type": "application/json"})
    status, _, answer, _ = post(url, body, headers)
    assert status == 200 and len(json.loads(answer)[0]) == 4  # the signed request itself is fine
    status, _, answer, _ = post(url, body.replace(b"0.5", b"0.6"), headers)
    assert status == 403 and _error(answer)[0] == "InvalidSignatureException"
    added = {**headers, "X-Amzn-SageMaker-Custom-Attributes": "added-later"}
    status, _, answer, _ = post(url, body, added)
    assert status == 403 and _error(answer) == (
        "InvalidSignatureException",
        "There were headers present in the request which were not signed: x-amzn-sagemaker-custom-attributes",
    )


def test_a_signature_six_minutes_old_has_expired(secured: Secured) -> None:
    url = f"{secured.server.url}/"
    body = b"{}"
    base = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListEndpoints"}

    def at(offset_s: float) -> tuple[int, bytes]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + offset_s))
        status, _, answer, _ = post(url, body, signed_headers(url, body, secured.admin, base, stamp))
        return status, answer

    status, answer = at(-6 * 60)
    code, message = _error(answer)
    assert (status, code) == (403, "InvalidSignatureException")
    stamp = r"\d{8}T\d{6}Z"
    assert re.fullmatch(
        rf"Signature expired: {stamp} is now earlier than {stamp} \({stamp} - 5 min\.\)", message
    )
    status, answer = at(6 * 60)
    assert status == 403 and _error(answer)[1].startswith("Signature not yet current: ")
    assert at(-4 * 60)[0] == 200  # inside the window


def test_an_oversized_body_is_refused_from_its_length_signed_or_not(secured: Secured) -> None:
    url = f"{secured.server.url}/endpoints/{secured.endpoint}/invocations"
    body = b"x" * (MAX_PAYLOAD_BYTES + 1)
    headers = signed_headers(url, body, secured.admin, {"Content-Type": "application/octet-stream"})
    status, _, answer, _ = post(url, body, headers)
    assert (status, _error(answer)[0]) == (413, "PayloadTooLarge")
    status, _, answer, _ = post(url, body, {"Content-Type": "application/octet-stream"})
    assert (status, _error(answer)[0]) == (403, "MissingAuthenticationToken")


# Permissions --------------------------------------------------------------------------------------------
def test_an_invoke_only_key_can_invoke_but_not_manage(secured: Secured) -> None:
    server = secured.server
    runtime = server.client("sagemaker-runtime", credentials=secured.invoker)
    assert len(invoke(runtime, secured.endpoint)[0]) == 4
    sm = server.client("sagemaker", credentials=secured.invoker)
    status, code, message = error_of(
        sm.create_model, ModelName="nope", PrimaryContainer={"ModelDataUrl": "s3://b/model.tar.gz"}
    )
    assert (status, code) == (403, "AccessDeniedException")
    assert "sagemaker:CreateModel" in message and "invoke" in message
    assert error_of(sm.list_endpoints)[:2] == (403, "AccessDeniedException")
    status, code, message = error_of(invoke, runtime, "another-endpoint")
    assert (status, code) == (403, "AccessDeniedException") and "endpoint/another-endpoint" in message
    assert error_of(server.client("s3", credentials=secured.invoker).list_buckets)[:2] == (
        403,
        "AccessDenied",
    )


def test_a_key_deleted_while_the_server_runs_stops_working_at_once(secured: Secured) -> None:
    data = secured.server.data_dir
    key = create_key(data)
    sm = secured.server.client("sagemaker", credentials=key)
    sm.list_endpoints()
    subprocess.run(
        [sys.executable, "-m", "moorage", "credentials", "delete", key[0], "--data-dir", str(data)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert error_of(sm.list_endpoints)[:2] == (403, "UnrecognizedClientException")


# The aws CLI --------------------------------------------------------------------------------------------
def aws(secured: Secured, key: Key, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_ACCESS_KEY_ID": key[0],
        "AWS_SECRET_ACCESS_KEY": key[1],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_SAGEMAKER": secured.server.url,
        "AWS_ENDPOINT_URL_S3": str(secured.server.s3_url),
    }
    return subprocess.run(
        [str(AWS_CLI), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_aws_cli_with_the_keys(secured: Secured, tmp_path: Path) -> None:
    listed = aws(secured, secured.admin, "sagemaker", "list-endpoints", home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert secured.endpoint in [e["EndpointName"] for e in json.loads(listed.stdout)["Endpoints"]]

    bucket = f"cli-{uuid.uuid4().hex[:8]}"
    secured.server.client("s3", credentials=secured.admin).create_bucket(Bucket=bucket)
    model = tmp_path / "model.tar.gz"
    model.write_bytes(os.urandom(4096))
    copied = aws(secured, secured.admin, "s3", "cp", str(model), f"s3://{bucket}/model.tar.gz", home=tmp_path)
    assert copied.returncode == 0, copied.stderr
    presigned = aws(secured, secured.admin, "s3", "presign", f"s3://{bucket}/model.tar.gz", home=tmp_path)
    assert presigned.returncode == 0, presigned.stderr
    assert http_get(presigned.stdout.strip()) == (200, model.read_bytes())

    wrong = aws(secured, (secured.admin[0], "not-the-secret"), "sagemaker", "list-endpoints", home=tmp_path)
    assert wrong.returncode != 0 and "InvalidSignatureException" in wrong.stderr


# The SageMaker SDK --------------------------------------------------------------------------------------
def test_the_sagemaker_sdk_with_the_keys(
    secured: Secured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's own clients, configured only by the environment, sign with the session's keys."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", secured.server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", secured.server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", str(secured.server.s3_url))
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    from sagemaker.session import Session

    # Looked up at run time: the SDK ships no type information for these.
    predictor_class = importlib.import_module("sagemaker.predictor").Predictor
    json_in = importlib.import_module("sagemaker.serializers").JSONSerializer
    json_out = importlib.import_module("sagemaker.deserializers").JSONDeserializer

    def session(key: Key) -> Any:
        boto_session = boto3.Session(
            region_name=REGION, aws_access_key_id=key[0], aws_secret_access_key=key[1]
        )
        return Session(boto_session=boto_session, default_bucket=f"sdk-{uuid.uuid4().hex[:8]}")

    admin = session(secured.admin)
    predictor = predictor_class(
        secured.endpoint,
        sagemaker_session=admin,
        serializer=json_in(),
        deserializer=json_out(),
    )
    assert len(predictor.predict([[0.5] * 16])[0]) == 4
    code = tmp_path / "inference.py"
    code.write_text("def model_fn(model_dir):\n    return None\n")
    uploaded = admin.upload_data(str(code), key_prefix="code")
    assert uploaded.startswith("s3://sdk-") and uploaded.endswith("/code/inference.py")
    stranger = session(("AKIANOSUCHKEY0000000", "x" * 40))
    with pytest.raises(ClientError) as caught:
        predictor_class(secured.endpoint, sagemaker_session=stranger, serializer=json_in()).predict(
            [[0.5] * 16]
        )
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"


# Safe defaults (reliability matrix row 15) ------------------------------------------------------------
def family(server: RunningServer) -> tuple[psutil.Process, list[psutil.Process]]:
    """The server process and every process under it (fork server, workers)."""
    root = psutil.Process(server.process.pid)
    return root, root.children(recursive=True)


def test_only_the_two_configured_loopback_ports_listen(secured: Secured) -> None:
    root, descendants = family(secured.server)
    assert len(descendants) >= 2, "expected the fork server and the endpoint's worker"
    listening: set[tuple[str, int]] = set()
    for process in [root, *descendants]:
        for connection in process.net_connections(kind="inet"):
            assert connection.laddr.ip not in ("0.0.0.0", "::"), (process.pid, connection)
            if connection.status == psutil.CONN_LISTEN:
                listening.add((connection.laddr.ip, connection.laddr.port))
    ports = {urlsplit(url).port for url in (secured.server.url, str(secured.server.s3_url))}
    assert listening == {("127.0.0.1", port) for port in ports}
    # Workers talk over anonymous socketpairs: no socket file anyone could connect to, no TCP port.
    for process in descendants:
        assert process.net_connections(kind="inet") == [], process.cmdline()
        assert [c.laddr for c in process.net_connections(kind="unix") if c.laddr] == [], process.cmdline()


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (entry.partition(b"=") for entry in raw.split(b"\0") if entry)
    return {name.decode(errors="replace"): value.decode(errors="replace") for name, _, value in pairs}


def test_workers_get_none_of_the_servers_secrets(secured: Secured) -> None:
    root, descendants = family(secured.server)
    server_env = environment_of(root.pid)
    # The test can fail: the server itself does hold them.
    assert server_env["AWS_SECRET_ACCESS_KEY"] == secured.server_secret
    assert any(name.startswith("MOORAGE_") for name in server_env)
    assert descendants
    for process in descendants:
        env = environment_of(process.pid)
        leaked = sorted(
            name
            for name, value in env.items()
            if name.startswith("MOORAGE_")
            or name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            or secured.server_secret in value
        )
        assert leaked == [], (process.cmdline(), leaked)
        assert env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull


def test_the_data_dir_and_the_credentials_file_are_private(secured: Secured) -> None:
    data = secured.server.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "credentials.json").stat().st_mode) == 0o600


def test_auth_needs_an_access_key_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "moorage", "serve", "--auth", "sigv4", "--port", "0", "--s3-port", "0",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"moorage credentials create --data-dir {tmp_path / 'data'}" in result.stderr
    assert not (tmp_path / "data" / "server.json").exists()
