"""What moorage's SDK says when things go wrong: clear errors, no tracebacks of internals.

One server with its embedded store; small archives built here. Also: source_dir replaces an
archive's old code/ (the old handler would refuse to load).
"""

from __future__ import annotations

import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import moorage
from moorage.sdk.errors import InvalidArgument, PredictionError, ServerUnreachable, ServiceError
from support.handlers import FAULT_HANDLER
from support.servers import start_server, wait_until_gone

pytestmark = pytest.mark.slow

WORKERS = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}


@pytest.fixture
def client(embedded: Any, client_env: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MOORAGE_URL", embedded.server.url)
    return embedded


def stale_archive(path: Path) -> Path:
    """An archive whose own code/ must not survive a source_dir repack: its handler cannot load."""
    stale = path.parent / "stale"
    (stale / "code").mkdir(parents=True)
    (stale / "code" / "inference.py").write_text(
        "def model_fn(model_dir):\n    raise RuntimeError('the old code/ was not replaced')\n"
    )
    (stale / "code" / "leftover.py").write_text("LEFT = 1\n")
    (stale / "weights.bin").write_bytes(b"\x00" * 64)
    with tarfile.open(path, "w:gz") as archive:
        for item in sorted(stale.rglob("*")):
            archive.add(item, arcname=str(item.relative_to(stale)), recursive=False)
    return path


def test_source_dir_replaces_code_and_handler_errors_are_prediction_errors(
    client: Any, tmp_path: Path
) -> None:
    source = tmp_path / "project"
    source.mkdir()
    (source / "inference.py").write_text(FAULT_HANDLER)
    model = moorage.PyTorchModel(
        stale_archive(tmp_path / "model.tar.gz"), entry_point="inference.py", source_dir=source, env=WORKERS
    )
    predictor = model.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.large",
        serializer=moorage.JSONSerializer(),
        deserializer=moorage.JSONDeserializer(),
    )
    try:
        assert predictor.predict({"action": "echo", "x": 1})["echo"] == {"action": "echo", "x": 1}
        with pytest.raises(PredictionError) as failed:
            predictor.predict({"action": "raise", "where": "predict_fn"})
        error = failed.value
        assert isinstance(error, ClientError) and error.response["Error"]["Code"] == "ModelError"
        assert error.original_status == 500
        assert error.original_message is not None and "boom in predict_fn" in error.original_message
        assert error.message.startswith("Received server error (500) from primary with message")
        assert "(ModelError from InvokeEndpoint)" in error.message
    finally:
        predictor.delete_endpoint()
        predictor.delete_model()


def test_a_model_that_cannot_load_fails_the_deploy_with_its_reason(client: Any, artifacts: Any) -> None:
    model = moorage.PyTorchModel(artifacts.fault_tar, env={**WORKERS, "FAULT_LOAD": "raise"})
    with pytest.raises(moorage.DeploymentFailed) as failed:
        model.deploy(initial_instance_count=1, instance_type="ml.m5.large")
    error = failed.value
    assert error.endpoint_status == "Failed"
    assert (
        error.failure_reason is not None
        and "model_fn refused to load: FAULT_LOAD=raise" in error.failure_reason
    )
    assert error.message.startswith(f"Endpoint {model.endpoint_name} did not start (Failed): ")
    moorage.Predictor(str(model.endpoint_name)).delete_endpoint()
    model.delete_model()


def test_an_unknown_endpoint_is_a_service_error(client: Any) -> None:
    with pytest.raises(ServiceError) as missing:
        moorage.Predictor("no-such-endpoint").predict(b"x")
    assert missing.value.error_code == "ValidationError"
    assert missing.value.message == (
        "Endpoint no-such-endpoint of account 000000000000 not found. (ValidationError from InvokeEndpoint)"
    )
    assert str(missing.value) == missing.value.message
    with pytest.raises(ServiceError) as gone:
        moorage.Predictor("no-such-endpoint").delete_endpoint()
    assert gone.value.error_code == "ValidationException"
    assert (
        'Could not find endpoint "arn:aws:sagemaker:us-east-1:000000000000:endpoint/no-such-endpoint".'
        in (gone.value.message)
    )


def test_bad_arguments_fail_before_anything_is_sent(client: Any, tmp_path: Path, artifacts: Any) -> None:
    with pytest.raises(InvalidArgument, match="needs instance_type and initial_instance_count"):
        moorage.PyTorchModel(artifacts.tiny_tar).deploy(instance_type="ml.m5.large")
    with pytest.raises(InvalidArgument, match=r"entry_point .* is not a file"):
        moorage.PyTorchModel(artifacts.tiny_tar, entry_point=tmp_path / "missing.py").deploy(1, "ml.m5.large")
    with pytest.raises(InvalidArgument, match="is not a file"):
        moorage.PyTorchModel(tmp_path / "missing.tar.gz").deploy(1, "ml.m5.large")
    with pytest.raises(InvalidArgument, match="cannot be repacked"):
        moorage.PyTorchModel("https://example.invalid/m.tar.gz", entry_point=__file__).deploy(
            1, "ml.m5.large"
        )
    assert client.server.client("sagemaker").list_models()["Models"] == []  # nothing was created


def test_a_server_that_is_not_there(client_env: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ServerUnreachable) as unreachable:
        moorage.Predictor("anything", endpoint_url=url).predict(b"x")
    assert unreachable.value.message.startswith(
        f"Could not reach the moorage server at {url} (from the endpoint_url"
    )
    assert "moorage serve" in unreachable.value.message


def test_a_local_model_needs_a_server_with_a_store(
    client_env: Path, artifacts: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = start_server(tmp_path_factory.mktemp("no-s3") / "data", args=["--no-s3"])
    try:
        model = moorage.PyTorchModel(artifacts.tiny_tar, endpoint_url=server.url)
        with pytest.raises(InvalidArgument, match="has no S3 store to put it in"):
            model.deploy(initial_instance_count=1, instance_type="ml.m5.large")
    finally:
        server.stop()
    assert not wait_until_gone(server.tag)
