"""Matrix rows 8 and 18: the server killed with SIGKILL mid-stream of writes, and stopped with SIGTERM.

Row 8: a writer thread streams control-plane writes and logs every one the server acknowledged; the
server is SIGKILLed at a seeded random moment. After a restart on the same data dir every
acknowledged write is there, endpoints come back InService by themselves and answer, the SQLite file
passes `PRAGMA integrity_check` (opened read-only, with the server stopped) and no workspace is left
in the artifact cache. Row 18: SIGTERM lets a request in progress finish (or, past the grace period,
ends it with a closed connection, which botocore retries), the server exits 0, nothing outlives it,
and the restart is clean.
"""

from __future__ import annotations

import random
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from integration.reliability.rig import (
    create_config,
    create_model,
    deploy,
    invoke,
    one_attempt,
    wait_answering,
    wait_file,
    wait_status,
)
from support.servers import RunningServer, start_server, wait_until_gone

pytestmark = pytest.mark.slow


def integrity(data_dir: Path) -> str:
    """PRAGMA integrity_check of the state file, opened read-only (the server must be stopped)."""
    connection = sqlite3.connect(f"file:{data_dir / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        result: str = connection.execute("PRAGMA integrity_check").fetchone()[0]
        return result
    finally:
        connection.close()


def leftover_workspaces(data_dir: Path) -> list[str]:
    tmp = data_dir / "cache" / "tmp"
    return sorted(entry.name for entry in tmp.iterdir()) if tmp.exists() else []


@dataclass
class Ledger:
    """What the server acknowledged, in order; `attempted` is the write that was in flight, if any."""

    models: set[str] = field(default_factory=set)
    configs: set[str] = field(default_factory=set)
    tags: dict[str, str] = field(default_factory=dict)  # model → the value of its "step" tag
    endpoints: set[str] = field(default_factory=set)
    attempted: str | None = None
    acknowledged: int = 0
    refused: list[str] = field(default_factory=list)


def write_stream(sm: Any, url: str, ledger: Ledger, stop: threading.Event) -> None:
    """Create, tag and delete models and configs, and now and then an endpoint, until the server dies."""

    def step(name: str, call: Callable[[], Any], record: Callable[[], None]) -> bool:
        ledger.attempted = name
        try:
            call()
        except (EndpointConnectionError, ConnectionClosedError, ConnectionError):
            return False  # the server is gone; `attempted` may or may not have been written
        except ClientError as exc:
            ledger.refused.append(f"{name}: {exc.response['Error']['Code']}")
            return not stop.is_set()
        record()
        ledger.attempted = None
        ledger.acknowledged += 1
        return not stop.is_set()

    def one_round(i: int) -> bool:
        model, config = f"m{i}", f"c{i}"
        ok = step(model, lambda: create_model(sm, url, name=model), lambda: ledger.models.add(model))
        ok = ok and step(
            config, lambda: create_config(sm, model, name=config), lambda: ledger.configs.add(config)
        )
        ok = ok and step(
            model,
            lambda: sm.add_tags(
                ResourceArn=f"arn:aws:sagemaker:us-east-1:000000000000:model/{model}",
                Tags=[{"Key": "step", "Value": str(i)}],
            ),
            lambda: ledger.tags.__setitem__(model, str(i)),
        )
        if ok and i % 16 == 3 and len(ledger.endpoints) < 3:
            endpoint = f"e{i}"
            ok = step(
                endpoint,
                lambda: sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config),
                lambda: ledger.endpoints.add(endpoint),
            )
        if ok and i % 4 == 2:
            old = f"m{i - 2}"
            ok = step(old, lambda: sm.delete_model(ModelName=old), lambda: ledger.models.discard(old))
        return ok

    for i in range(10_000):
        if not one_round(i):
            return


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_sigkill_during_writes_loses_nothing_acknowledged(tmp_path: Path, artifacts: Any, seed: int) -> None:
    rng = random.Random(seed)
    data = tmp_path / "data"
    first = start_server(data)
    ledger, stop = Ledger(), threading.Event()
    writer = threading.Thread(
        target=write_stream, args=(first.client("sagemaker"), f"file://{artifacts.fault_tar}", ledger, stop)
    )
    writer.start()
    time.sleep(rng.uniform(0.3, 2.0))
    first.kill()  # SIGKILL
    writer.join(30)
    assert not writer.is_alive()
    assert ledger.acknowledged > 0 and ledger.refused == []
    assert not wait_until_gone(first.tag), "workers outlived their server"
    assert integrity(data) == "ok"

    second = start_server(data, tag=first.tag)
    try:
        sm, runtime = second.client("sagemaker"), second.client("sagemaker-runtime")
        in_flight = {ledger.attempted} if ledger.attempted else set()
        models = {
            m["ModelName"] for page in sm.get_paginator("list_models").paginate() for m in page["Models"]
        }
        assert ledger.models - in_flight <= models and models - ledger.models <= in_flight, (ledger, models)
        configs = {
            c["EndpointConfigName"]
            for page in sm.get_paginator("list_endpoint_configs").paginate()
            for c in page["EndpointConfigs"]
        }
        assert ledger.configs - in_flight <= configs and configs - ledger.configs <= in_flight
        for model, step in ledger.tags.items():
            if model in models:
                arn = f"arn:aws:sagemaker:us-east-1:000000000000:model/{model}"
                assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "step", "Value": step}]
        endpoints = {e["EndpointName"] for e in sm.list_endpoints(MaxResults=100)["Endpoints"]}
        assert ledger.endpoints - in_flight <= endpoints and endpoints - ledger.endpoints <= in_flight
        for endpoint in endpoints:  # Creating ones resume; InService ones restart; all must serve
            wait_status(sm, endpoint, {"InService"})
            assert wait_answering(runtime, endpoint)["echo"] == {"action": "echo"}
        assert leftover_workspaces(data) == []
    finally:
        assert second.stop() == 0
    assert not wait_until_gone(first.tag)
    assert integrity(data) == "ok"
    assert "database is locked" not in second.log()


def refused_connection(server: RunningServer) -> bool:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_lets_the_request_in_progress_finish_and_the_restart_is_clean(
    tmp_path: Path, artifacts: Any
) -> None:
    data = tmp_path / "data"
    server = start_server(data, env={"MOORAGE_DRAIN_GRACE": "20"})
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, f"file://{artifacts.fault_tar}")
    started, release = tmp_path / "started", tmp_path / "release"
    outcome: dict[str, Any] = {}

    def slow() -> None:
        outcome["answer"] = invoke(
            runtime, name, action="block", started=str(started), release=str(release), seconds=30
        )

    thread = threading.Thread(target=slow)
    thread.start()
    wait_file(started)
    acknowledged = create_model(sm, f"file://{artifacts.fault_tar}")  # a write just before the signal
    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not refused_connection(server):  # new connections are refused at once ...
        assert time.monotonic() < deadline, "the server still accepts connections after SIGTERM"
        time.sleep(0.05)
    assert server.process.poll() is None  # ... while the request in progress is still being served
    release.touch()
    thread.join(30)
    assert outcome["answer"]["echo"]["action"] == "block"
    assert server.process.wait(30) == 0
    assert not wait_until_gone(server.tag)
    assert integrity(data) == "ok"

    again = start_server(data, tag=server.tag)
    try:
        sm, runtime = again.client("sagemaker"), again.client("sagemaker-runtime")
        assert sm.describe_model(ModelName=acknowledged)["ModelName"] == acknowledged
        assert wait_status(sm, name, {"InService"})["EndpointStatus"] == "InService"
        assert wait_answering(runtime, name)["echo"] == {"action": "echo"}
    finally:
        assert again.stop() == 0
    assert not wait_until_gone(server.tag)
    assert "database is locked" not in again.log() + server.log()


def test_a_request_that_outlives_the_grace_period_ends_with_a_closed_connection(
    tmp_path: Path, artifacts: Any
) -> None:
    server = start_server(tmp_path / "data", env={"MOORAGE_DRAIN_GRACE": "1"})
    sm, runtime = server.client("sagemaker"), one_attempt(server)
    name = deploy(sm, f"file://{artifacts.fault_tar}")
    started = tmp_path / "started"
    outcome: dict[str, Any] = {}

    def stuck() -> None:
        try:
            invoke(runtime, name, action="block", started=str(started), release="/nonexistent", seconds=60)
        except Exception as exc:  # recorded and checked below
            outcome["error"] = exc

    thread = threading.Thread(target=stuck)
    thread.start()
    wait_file(started)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    thread.join(30)
    assert not thread.is_alive()
    # No answer can come any more: the connection is closed, which botocore treats as retryable.
    assert isinstance(outcome["error"], ConnectionClosedError), repr(outcome.get("error"))
    assert server.process.wait(30) == 0
    assert time.monotonic() - signalled < 25  # the grace is 1 s; the stuck worker was killed
    assert not wait_until_gone(server.tag)
