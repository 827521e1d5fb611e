"""`moorage serve-model` answers /ping and /invocations exactly as SageMaker's PyTorch container does.

Each test names the must-match item of shared/spec/sagemaker-contract.md it pins down (12 to 22).
The servers are real subprocesses; requests go over HTTP.
"""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse
import torch

from integration.reliability.rig import wait_file
from moorage.examples.builders import pack
from moorage.settings import MAX_PAYLOAD_BYTES
from support.seed import seed_answer
from support.servers import (
    RunningServer,
    http_get,
    launch_model_server,
    post,
    start_model_server,
    wait_for_ready,
    wait_for_url,
    wait_until_gone,
)

pytestmark = pytest.mark.slow

UNSUPPORTED = (
    "Content type {ct} is not supported by this framework.\n\n"
    "            Please implement input_fn to to deserialize the request data or an output_fn to\n"
    "            serialize the response. For more information, see the SageMaker Python SDK README."
)
ROW = [float(i) / 10 for i in range(16)]


@pytest.fixture(scope="module")
def tiny(artifacts: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default handlers on a TorchScript model, with SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT=text/csv."""
    server = start_model_server(
        artifacts.tiny_tar,
        tmp_path_factory.mktemp("tiny") / "data",
        env={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"},
    )
    yield server
    server.stop()
    assert not wait_until_gone(server.tag)


@pytest.fixture(scope="module")
def faulty(artifacts: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The misbehaving handler on 2 workers with a 2 s invocation timeout."""
    server = start_model_server(
        artifacts.fault_tar,
        tmp_path_factory.mktemp("faulty") / "data",
        args=["--workers", "2"],
        env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"},
    )
    yield server
    server.stop()
    assert not wait_until_gone(server.tag)


def expected_tiny(rows: list[list[float]], model_dir: Path) -> list[list[float]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, and SageMaker's format
        model = torch.jit.load(str(model_dir / "model.pt"))  # type: ignore[no-untyped-call]
    with torch.no_grad():
        result: list[list[float]] = model(torch.tensor(rows, dtype=torch.float32)).tolist()
    return result


def assert_close(got: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(expected), rtol=1e-5, atol=1e-6)


def invoke(
    server: RunningServer,
    body: bytes,
    content_type: str | None = "application/json",
    accept: str | None = None,
) -> tuple[int, dict[str, str], bytes, str]:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    return post(server.url + "/invocations", body, headers)


def act(server: RunningServer, **request: Any) -> tuple[int, dict[str, str], bytes, str]:
    return invoke(server, json.dumps(request).encode())


# Item 12: the container HTTP contract ---------------------------------------------------------------
def test_ping_says_healthy_in_torchserves_words(tiny: RunningServer) -> None:
    status, body = http_get(tiny.url + "/ping")
    assert (status, body) == (200, b'{\n  "status": "Healthy"\n}\n')


def test_ping_is_unhealthy_until_model_fn_has_returned(artifacts: Any, tmp_path: Path) -> None:
    server = launch_model_server(
        artifacts.fault_tar,
        tmp_path / "data",
        args=["--workers", "1"],
        env={"FAULT_LOAD": "sleep", "FAULT_LOAD_SECONDS": "4"},
    )
    try:
        wait_for_url(server)
        status, body = http_get(server.url + "/ping")
        assert (status, body) == (500, b'{\n  "status": "Unhealthy"\n}\n')
        wait_for_ready(server, 60)
        assert act(server, action="echo")[0] == 200
    finally:
        server.stop()
    assert not wait_until_gone(server.tag)


def test_torch_is_imported_while_the_server_starts_not_after(tiny: RunningServer) -> None:
    """Fast start (issue 5): the fork server is launched before the server's own imports and port."""
    log = tiny.log_path.read_text()
    assert "fork server started" in log and "listening on" in log
    assert log.index("fork server started") < log.index("listening on")
    assert "fork server ready" in log  # the early process was adopted, not replaced by a second one
    assert log.count("fork server started") == 1


def test_unknown_paths_get_torchserves_not_found(tiny: RunningServer) -> None:
    status, body = http_get(tiny.url + "/execution-parameters")
    assert status == 404
    assert json.loads(body) == {
        "code": 404,
        "type": "ResourceNotFoundException",
        "message": "Requested resource is not found, please refer to API document.",
    }


# Items 18, 19, 20, 22: the default handlers, Accept and the response Content-Type ------------------
def test_json_in_json_out_with_the_default_handlers(tiny: RunningServer, artifacts: Any) -> None:
    status, headers, body, _ = invoke(tiny, json.dumps([ROW]).encode(), accept="application/json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert_close(json.loads(body), expected_tiny([ROW], artifacts.tiny_dir))
    assert body == json.dumps(json.loads(body)).encode()  # json.dumps' default separators


def test_missing_accept_uses_sagemaker_default_invocations_accept(
    tiny: RunningServer, artifacts: Any
) -> None:
    status, headers, body, _ = invoke(tiny, json.dumps([ROW]).encode(), accept=None)
    assert status == 200
    assert headers["Content-Type"] == "text/csv"
    values = [float(v) for v in body.decode().strip().split(",")]
    assert values == pytest.approx(expected_tiny([ROW], artifacts.tiny_dir)[0])
    star = invoke(tiny, json.dumps([ROW]).encode(), accept="*/*")
    assert star[1]["Content-Type"] == "text/csv"


def test_csv_in(tiny: RunningServer, artifacts: Any) -> None:
    csv = ",".join(str(v) for v in ROW).encode()
    status, _, body, _ = invoke(tiny, csv, content_type="text/csv", accept="application/json")
    assert status == 200
    assert json.loads(body) == pytest.approx(expected_tiny([ROW], artifacts.tiny_dir)[0])


def test_npy_in_and_out(tiny: RunningServer, artifacts: Any) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([ROW], dtype=np.float32))
    status, headers, body, _ = invoke(
        tiny, buffer.getvalue(), content_type="application/x-npy", accept="application/x-npy"
    )
    assert status == 200 and headers["Content-Type"] == "application/x-npy"
    result = np.load(io.BytesIO(body))
    assert_close(result.tolist(), expected_tiny([ROW], artifacts.tiny_dir))


def test_float64_npy_is_cast_to_the_models_dtype(tiny: RunningServer, artifacts: Any) -> None:
    """Deviation (docs/compatibility.md): SageMaker fails here with "expected Float but found Double"."""
    buffer = io.BytesIO()
    np.save(buffer, np.array([ROW], dtype=np.float64))  # what the SDK's NumpySerializer sends
    status, _, body, _ = invoke(
        tiny, buffer.getvalue(), content_type="application/x-npy", accept="application/json"
    )
    assert status == 200
    assert_close(json.loads(body), expected_tiny([ROW], artifacts.tiny_dir))


def test_npz_in(tiny: RunningServer, artifacts: Any) -> None:
    """Deviation (docs/compatibility.md): SageMaker's default input_fn always fails on NPZ."""
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix(np.array([ROW], dtype=np.float32)))
    status, _, body, _ = invoke(
        tiny, buffer.getvalue(), content_type="application/x-npz", accept="application/json"
    )
    assert status == 200
    assert_close(json.loads(body), expected_tiny([ROW], artifacts.tiny_dir))


def test_a_list_of_accept_types_is_echoed_raw(tiny: RunningServer) -> None:
    status, headers, body, _ = invoke(tiny, json.dumps([ROW]).encode(), accept="application/json, text/csv")
    assert status == 200
    assert headers["Content-Type"] == "application/json, text/csv"
    assert isinstance(json.loads(body), list)


# Item 21: errors ------------------------------------------------------------------------------------
def test_unsupported_content_type_is_a_500_with_the_toolkits_words(tiny: RunningServer) -> None:
    status, headers, body, _ = invoke(
        tiny, b"<x/>", content_type="application/xml", accept="application/json"
    )
    assert status == 500
    assert "Content-Type" not in headers
    assert body.decode().startswith(UNSUPPORTED.format(ct="application/xml"))


def test_unsupported_accept_is_a_500(tiny: RunningServer) -> None:
    status, _, body, _ = invoke(tiny, json.dumps([ROW]).encode(), accept="image/png")
    assert status == 500
    assert body.decode().startswith(UNSUPPORTED.format(ct="image/png"))


def test_json_with_a_charset_parameter_is_not_decoded_as_json(tiny: RunningServer) -> None:
    """Quirk reproduced: only the exact 'application/json' is JSON to the toolkit."""
    status, _, body, _ = invoke(
        tiny,
        json.dumps([ROW]).encode(),
        content_type="application/json; charset=utf-8",
        accept="application/json",
    )
    assert status == 500
    assert body.decode().startswith(UNSUPPORTED.format(ct="application/json; charset=utf-8"))


@pytest.mark.parametrize("where", ["input_fn", "predict_fn", "output_fn"])
def test_an_exception_in_user_code_is_a_500_with_its_text(faulty: RunningServer, where: str) -> None:
    status, headers, body, reason = act(faulty, action="raise", where=where)
    assert status == 500
    assert body.decode().startswith(f"boom in {where}")
    assert "Traceback" not in body.decode()  # by default it goes to the log (MOORAGE_TRACEBACKS_IN_ERRORS)
    assert reason == f"boom in {where}"
    assert "Content-Type" not in headers
    assert act(faulty, action="echo")[0] == 200


def test_a_toolkit_error_sets_the_status(faulty: RunningServer) -> None:
    status, _, body, _ = act(faulty, action="status", status=400, message="the image is too small")
    assert status == 400
    assert body.decode().startswith("the image is too small")


def test_a_crlf_content_type_from_user_code_is_refused(faulty: RunningServer) -> None:
    status, headers, _, _ = act(faulty, action="bad_content_type")
    assert status == 500
    assert "X-Evil" not in headers
    assert act(faulty, action="echo")[0] == 200


# Item 11 (container side): limits, crashes, hangs -----------------------------------------------------
def test_a_body_over_6_mib_is_refused_before_it_is_read(tiny: RunningServer) -> None:
    status, _, body, _ = invoke(tiny, b"x" * (MAX_PAYLOAD_BYTES + 1), content_type="application/octet-stream")
    assert status == 413
    assert json.loads(body)["message"] == f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."
    exactly = invoke(tiny, b"x" * MAX_PAYLOAD_BYTES, content_type="application/octet-stream")
    assert exactly[0] == 500  # accepted, then refused by the default decoder (not a 413)


def test_a_response_over_6_mib_is_an_error(faulty: RunningServer) -> None:
    status, _, body, _ = act(faulty, action="big", bytes=MAX_PAYLOAD_BYTES + 10)
    assert status == 500
    assert "limit on response size" in json.loads(body)["message"]
    assert act(faulty, action="echo")[0] == 200


def worker_pids(server: RunningServer, scratch: Path) -> set[int]:
    """The pids of both workers: two requests that each hold a worker until both have started."""
    scratch.mkdir(parents=True, exist_ok=True)
    release = scratch / "release"
    release.unlink(missing_ok=True)
    started = [scratch / f"started-{i}" for i in range(2)]
    for path in started:
        path.unlink(missing_ok=True)
    with ThreadPoolExecutor(2) as pool:
        calls = [
            pool.submit(act, server, action="block", started=str(path), release=str(release), seconds=30)
            for path in started
        ]
        for path in started:
            wait_file(path)
        release.touch()
        answers = [call.result(timeout=30) for call in calls]
    assert [status for status, *_ in answers] == [200, 200]
    return {json.loads(body)["pid"] for _, _, body, _ in answers}


@pytest.mark.parametrize("round_", range(3))
def test_a_worker_killed_mid_request_fails_that_request_and_is_replaced(
    faulty: RunningServer, round_: int, tmp_path: Path
) -> None:
    before = worker_pids(faulty, tmp_path / "before")
    assert len(before) == 2
    status, _, body, _ = act(faulty, action="kill")
    assert status == 500
    error = json.loads(body)
    assert error["type"] == "InternalServerException"
    assert error["message"] == "Worker died. The worker process was killed by signal SIGKILL."
    after = worker_pids(faulty, tmp_path / "after")
    assert len(after) == 2 and len(after & before) == 1, (before, after)  # one survivor, one replacement


def test_a_worker_that_exits_fails_its_request_with_the_exit_status(faulty: RunningServer) -> None:
    status, _, body, _ = act(faulty, action="exit", code=3)
    assert status == 500
    assert json.loads(body)["message"] == "Worker died. The worker process exited with status 3."
    assert act(faulty, action="echo")[0] == 200


@pytest.mark.parametrize("action", ["sleep", "spin"])
def test_a_hung_handler_times_out_and_the_other_worker_keeps_serving(
    faulty: RunningServer, action: str, tmp_path: Path
) -> None:
    running = tmp_path / "started"
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        hung = pool.submit(act, faulty, action=action, seconds=30, started=str(running))
        wait_file(running)  # the hung request holds one worker
        assert act(faulty, action="echo")[0] == 200  # the second worker is free
        status, _, body, _ = hung.result(timeout=20)
    assert status == 500
    assert "did not finish within the 2 s invocation timeout" in json.loads(body)["message"]
    assert time.monotonic() - started < 6.0
    assert act(faulty, action="echo")[0] == 200


# The seed: its inference.py, unchanged, against the same functions called in-process -------------------
def test_the_seed_handler_serves_url_requests_like_in_process(
    artifacts: Any, image_server: str, tmp_path: Path
) -> None:
    server = start_model_server(artifacts.seed_tar, tmp_path / "data", args=["--workers", "1"])
    try:
        for image in ("predict.png", "predict.jpg"):
            body = json.dumps({"url": f"{image_server}/{image}"}).encode()
            status, headers, answer, _ = invoke(server, body, accept="application/json")
            assert status == 200, answer
            assert headers["Content-Type"] == "application/json"
            top3 = json.loads(answer)
            assert [entry["prediction"] for entry in top3] == [
                e["prediction"] for e in seed_answer(artifacts.seed_dir, body)
            ]
            assert top3 == seed_answer(artifacts.seed_dir, body)
    finally:
        server.stop()
    assert not wait_until_gone(server.tag)


# Item 13: artifact layouts --------------------------------------------------------------------------------
def test_code_requirements_are_installed_for_the_model_only(artifacts: Any, tmp_path: Path) -> None:
    """code/requirements.txt goes into a per-model directory (not moorage's environment), pip's output into
    the model's log, and the handler can import what it installed."""
    package = tmp_path / "greeting-package"
    (package / "greeting_for_tests").mkdir(parents=True)
    (package / "greeting_for_tests" / "__init__.py").write_text('WORD = "hello from requirements.txt"\n')
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "greeting-for-tests"\nversion = "1.0"\n'
    )
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "requirements.txt").write_text(f"{package}\n")
    (model / "code" / "inference.py").write_text(
        "import greeting_for_tests\n\n"
        "def model_fn(model_dir):\n    return greeting_for_tests.WORD\n\n"
        "def transform_fn(model, data, content_type, accept):\n    return model, 'text/plain'\n"
    )
    server = start_model_server(
        pack(model, tmp_path / "model.tar.gz"),
        tmp_path / "data",
        args=["--workers", "1"],
        # The requirement is a local path, which only an operator's trust allows (docs/security.md).
        env={"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "MOORAGE_PIP_TRUST_REQUIREMENTS": "true"},
    )
    try:
        status, _, body, _ = invoke(server, b"{}")
        assert (status, body) == (200, b"hello from requirements.txt")
        assert "greeting-for-tests" in server.log()  # pip's own output reached the log
    finally:
        server.stop()
    assert importlib.util.find_spec("greeting_for_tests") is None  # not installed into moorage's environment


def test_the_legacy_layout_takes_the_entry_point_from_outside(artifacts: Any, tmp_path: Path) -> None:
    """SAGEMAKER_PROGRAM + a separate source directory (frameworks < 1.2, or --entry-point/--source-dir)."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "helpers.py").write_text(
        "def double(rows):\n    return [[2 * v for v in row] for row in rows]\n"
    )
    (source / "serve.py").write_text(
        "import json\nfrom helpers import double\n\n"
        "def output_fn(prediction, accept):\n"
        "    return json.dumps(double(prediction.tolist())), 'application/json'\n"
    )
    server = start_model_server(
        artifacts.tiny_tar,
        tmp_path / "data",
        args=["--workers", "1", "--entry-point", "serve.py", "--source-dir", str(source)],
    )
    try:
        status, _, body, _ = invoke(server, json.dumps([ROW]).encode())
        assert status == 200
        assert_close(json.loads(body), 2 * np.asarray(expected_tiny([ROW], artifacts.tiny_dir)))
    finally:
        server.stop()


def test_a_hostile_archive_is_refused_naming_the_member(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as archive:
        payload = b"import os\n"
        member = tarfile.TarInfo("code/../../escaped.py")
        member.size = len(payload)
        archive.addfile(member, io.BytesIO(payload))
    server = launch_model_server(evil, tmp_path / "data")
    try:
        assert server.process.wait(60) != 0
    finally:
        server.kill()
    assert "code/../../escaped.py" in server.log()
    assert not (tmp_path / "escaped.py").exists()
    assert not list(tmp_path.rglob("escaped.py"))
