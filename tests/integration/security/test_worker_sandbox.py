"""A deployed model's code tries every read and write of issue 11 items 1–2 (security probe 2, rows 64–66).

A real `moorage serve`, started with the server's own AWS secret in its environment, hosts two models:
a victim, and a prober whose handler attempts each access and reports what it managed. With the
kernel sandbox, every attack is denied while the prober still works (its own code, its scratch dir).
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.examples.builders import pack
from support.backends import BACKENDS, instance_logs, start_backend_server
from support.hosting import deploy
from support.servers import RunningServer, http_get

pytestmark = pytest.mark.slow

SERVER_SECRET = "server-own-secret-DO-NOT-LEAK"

PROBER = """
import errno, json, os, signal

def _try(action):
    try:
        return "ok: " + str(action())[:200]
    except OSError as exc:
        return "denied: " + errno.errorcode.get(exc.errno, str(exc.errno))

def _read(path):
    with open(path, "rb") as file:
        return file.read(4096).decode("latin-1")

def _append(path):
    with open(path, "a") as file:
        file.write("\\nraise SystemExit('tampered')\\n")
    return "appended"

def _create(path):
    with open(path, "w") as file:
        file.write("x")
    return "created"

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    env = os.environ
    server, data = int(env["PROBE_SERVER_PID"]), env["PROBE_DATA_DIR"]
    report = {
        "server environ": _try(lambda: _read(f"/proc/{server}/environ")),
        "server memory": _try(lambda: _read(f"/proc/{server}/mem")),
        "fork server environ": _try(lambda: _read(f"/proc/{os.getppid()}/environ")),
        "signal the server": _try(lambda: os.kill(server, 0)),
        "credentials.json": _try(lambda: _read(os.path.join(data, "credentials.json"))),
        "state.sqlite3": _try(lambda: _read(os.path.join(data, "state.sqlite3"))),
        "list the data dir": _try(lambda: os.listdir(data)),
        "create in the data dir": _try(lambda: _create(os.path.join(data, "pwned"))),
        "create in own model dir": _try(lambda: _create("pwned")),
        "own code (control)": _try(lambda: _read(os.path.join(os.getcwd(), "code", "inference.py"))[:10]),
        "scratch HOME (control)": _try(lambda: _create(os.path.join(env["HOME"], "scratch-file"))),
        "tempfile (control)": _try(lambda: __import__("tempfile").TemporaryFile().close()),
    }
    for index, path in enumerate(env["PROBE_S3_FILES"].split(os.pathsep)):
        report[f"S3 store file {index}"] = _try(lambda: _read(path))
    for index, path in enumerate(env["PROBE_VICTIMS"].split(os.pathsep)):
        report[f"other model's code {index}"] = _try(lambda: _read(path))
        report[f"append to other model's code {index}"] = _try(lambda: _append(path))
    report["own environment has the secret"] = "@SECRET@" in json.dumps(dict(env))
    return json.dumps(report), "application/json"
""".replace("@SECRET@", SERVER_SECRET)

VICTIM = """
def model_fn(model_dir):
    return "victim"

def transform_fn(model, body, content_type, accept):
    return model, "text/plain"
"""


def landlock_abi() -> int:
    """The kernel's Landlock ABI, asked directly (the test must not depend on the code it checks)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(0, int(libc.syscall(444, None, ctypes.c_size_t(0), 1)))


def model(root: Path, name: str, handler: str) -> Path:
    (root / name / "code").mkdir(parents=True)
    (root / name / "code" / "inference.py").write_text(handler)
    return pack(root / name, root / f"{name}.tar.gz")


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server of each backend: a Ray actor gets the same sandbox as a local worker."""
    if landlock_abi() == 0:
        pytest.skip("this kernel offers no Landlock: the sandbox cannot be checked here")
    data_dir = tmp_path_factory.mktemp("sandbox") / "data"
    data_dir.mkdir()
    (data_dir / "credentials.json").write_text('{"AccessKeys": [{"SecretAccessKey": "data-dir-secret"}]}')
    os.chmod(data_dir / "credentials.json", 0o600)
    running = start_backend_server(
        data_dir, request.param, env={"AWS_SECRET_ACCESS_KEY": SERVER_SECRET, "MOORAGE_SANDBOX_WRITABLE": ""}
    )
    try:
        yield running
    finally:
        running.stop()


def test_a_handler_can_reach_none_of_the_server_or_the_data_dir(
    server: RunningServer, tmp_path: Path
) -> None:
    sm, runtime, s3 = server.client("sagemaker"), server.client("sagemaker-runtime"), server.client("s3")
    s3.create_bucket(Bucket="victim-bucket")
    s3.put_object(Bucket="victim-bucket", Key="weights.bin", Body=b"victim weights")
    deploy(sm, model(tmp_path, "victim", VICTIM), name="victim")
    victims = sorted(str(path) for path in (server.data_dir / "cache").rglob("inference.py"))
    s3_files = sorted(str(path) for path in (server.data_dir / "s3").rglob("*") if path.is_file())
    assert victims and s3_files
    before = {path: Path(path).read_bytes() for path in victims}

    deploy(
        sm,
        model(tmp_path, "prober", PROBER),
        name="prober",
        env={
            "PROBE_SERVER_PID": str(server.process.pid),
            "PROBE_DATA_DIR": str(server.data_dir),
            "PROBE_VICTIMS": os.pathsep.join(victims),
            "PROBE_S3_FILES": os.pathsep.join(s3_files[:3]),
        },
    )
    response = runtime.invoke_endpoint(EndpointName="prober", Body=b"{}", ContentType="application/json")
    raw = response["Body"].read().decode()
    report: dict[str, Any] = json.loads(raw)

    assert SERVER_SECRET not in raw and "data-dir-secret" not in raw and "victim weights" not in raw
    attacks = {
        key: value for key, value in report.items() if "control" not in key and "own environment" not in key
    }
    managed = {key: value for key, value in attacks.items() if not value.startswith("denied: ")}
    assert managed == {}, f"the handler managed: {managed}"
    assert report["signal the server"] == "denied: EPERM"
    assert report["credentials.json"] == "denied: EACCES"
    assert report["own code (control)"] == "ok: \nimport er"
    assert report["scratch HOME (control)"] == "ok: created"
    assert report["tempfile (control)"] == "ok: None"
    assert report["own environment has the secret"] is False
    assert {path: Path(path).read_bytes() for path in victims} == before
    assert not (server.data_dir / "pwned").exists()
    victim = runtime.invoke_endpoint(EndpointName="victim", Body=b"{}", ContentType="application/json")
    assert victim["Body"].read() == b"victim"
    assert "sandbox: confined by Landlock ABI" in instance_logs(server, "prober")


def test_info_and_log_say_what_the_sandbox_is(server: RunningServer) -> None:
    status, body = http_get(server.url + "/_moorage/info")
    info = json.loads(body)["sandbox"]

    assert status == 200
    assert info["workers"] == "confined"
    assert info["landlock_abi"] == landlock_abi()
    assert info["server_dumpable"] is False
    assert any(line.startswith("network:") for line in info["exposed"])
    assert f"sandbox: workers and pip confined by Landlock ABI {landlock_abi()}" in server.log()
