"""`kill -9` of the server with async requests in flight and queued, then a restart on the same data
dir: every accepted request is run (at least once) and gets exactly one result object, and a
notification owed when the server died is sent. One kill and one restart for the module."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from moorage.asyncinf.notify import message
from moorage.asyncinf.service import QUEUE_FILE
from moorage.asyncinf.store import QueueStore
from support.gates import Gate
from support.hosting import deploy
from support.servers import REGION, RunningServer, start_server, wait_until_gone

from .conftest import Subscriber, exists, wait_for_object

pytestmark = pytest.mark.slow

BUCKET = "async-restart"
OWING = ("owed", "unpublished")  # planted rows owing a notification: published before the kill, or not


def keys(s3: Any, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def plant_published_rows(data_dir: Path, gate: Gate, topic: str) -> set[str]:
    """Rows as a `kill -9` can leave them, since a finished row's deletion is not waited on (it rides
    along with the next group commit): the result object is published (`done/<name>.out`, put by the
    test) but the row is still queued; one of them is also past its RequestTTLSeconds. Two more owe a
    notification to `topic`: their rows are `running` with the notification committed (`outcome`,
    written here as the store writes it before a publish). `owed` died between its publish and the
    `notify` mark; `unpublished` died before its publish, so its object is not there."""
    store = QueueStore(data_dir / QUEUE_FILE)
    try:
        accepted = store.unfinished()[0]  # for the endpoint and its config
        owed_config = dataclasses.replace(
            accepted.config,
            success_topic=topic,
            include_response_in=frozenset({"SUCCESS_NOTIFICATION_TOPIC"}),
        )
        for name in ("published", "expired", *OWING):
            planted = dataclasses.replace(
                accepted,
                config=owed_config if name in OWING else accepted.config,
                id=f"planted-{name}",
                inference_id=f"planted-{name}",
                received=1.0 if name == "expired" else time.time(),
                ttl_s=1.0 if name == "expired" else 3600.0,
                output_location=f"s3://{BUCKET}/done/{name}.out",
                failure_location=f"s3://{BUCKET}/done/{name}-error.out",
            )
            store.add(planted, json.dumps({"gate": gate.url(name)}).encode()).result()
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(data_dir / QUEUE_FILE)) as conn, conn:
        for name in OWING:
            location = f"s3://{BUCKET}/done/{name}.out"
            owed = {"topic": topic, "message": owed_message(accepted.endpoint, name), "location": location}
            conn.execute(
                "UPDATE async_requests SET state = 'running', outcome = ? WHERE id = ?",
                (json.dumps(owed), f"planted-{name}"),
            )
    return {f"planted-{name}" for name in ("published", "expired", *OWING)}


def owed_message(endpoint: str, name: str) -> dict[str, Any]:
    """The success notification a planted row owes, with its response (`done/owed.out`'s body)."""
    return message(
        region=REGION,
        endpoint=endpoint,
        inference_id=f"planted-{name}",
        received=time.time(),
        finished=time.time(),
        input_location=None,
        request_content_type="application/json",
        succeeded=True,
        location=f"s3://{BUCKET}/done/{name}.out",
        response_content_type="application/json",
        failure_reason=None,
        response=b'"before"',
    )


def wait_until_deleted(data_dir: Path, ids: set[str], timeout: float = 60.0) -> None:
    """Poll the queue's file (WAL: readable beside the server) until none of `ids` is left."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.closing(sqlite3.connect(data_dir / QUEUE_FILE)) as conn:
            left = ids & {row[0] for row in conn.execute("SELECT id FROM async_requests")}
        if not left:
            return
        assert time.monotonic() < deadline, f"rows never finished: {sorted(left)}"
        time.sleep(0.05)


@dataclass
class Restarted:
    """The second server, on the first one's data dir, and what the first one accepted before its kill."""

    server: RunningServer
    data_dir: Path
    requests: list[dict[str, Any]]
    accepted: list[dict[str, Any]]
    planted: set[str]
    subscriber: Subscriber


@pytest.fixture(scope="module")
def restarted(
    tmp_path_factory: pytest.TempPathFactory, async_tarball: Path, gate: Gate, sns_url: str
) -> Iterator[Restarted]:
    """`kill -9` with requests in flight and queued, rows planted as a crash leaves them, then a restart
    whose SNS is moto (a subscriber on the planted row's topic)."""
    sns = boto3.client(
        "sns", endpoint_url=sns_url, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )
    subscriber = Subscriber()
    topic = sns.create_topic(Name="async-restart")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=subscriber.url)
    data_dir = tmp_path_factory.mktemp("async-restart") / "data"
    first = start_server(data_dir)
    try:
        first.client("s3").create_bucket(Bucket=BUCKET)
        endpoint = deploy(
            first.client("sagemaker"),
            async_tarball,
            async_config={
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
                "OutputConfig": {
                    "S3OutputPath": f"s3://{BUCKET}/out",
                    "S3FailurePath": f"s3://{BUCKET}/failed",
                },
            },
        )
        runtime = first.client("sagemaker-runtime")
        requests: list[dict[str, Any]] = [
            {"gate": gate.url("in-flight")},  # running when the server dies
            {"queued": 1},
            {"queued": 2, "gate": gate.url("queued")},
            {"fail": "queued and failing"},
        ]
        accepted = []
        for index, request in enumerate(requests):
            accepted.append(
                runtime.invoke_endpoint_async(
                    EndpointName=endpoint, Body=json.dumps(request).encode(), ContentType="application/json"
                )
            )
            if index == 0:
                assert gate.arrived["in-flight"].wait(60)
        for name in ("published", "expired", "owed"):
            first.client("s3").put_object(Bucket=BUCKET, Key=f"done/{name}.out", Body=b'"before"')
        first.kill()  # SIGKILL: no shutdown code runs
    finally:
        first.kill()
    assert not wait_until_gone(first.tag), "workers outlived the killed server"
    planted = plant_published_rows(data_dir, gate, topic)
    gate.open("in-flight")
    gate.open("queued")
    gate.open("unpublished")
    second = start_server(data_dir, env={"AWS_ENDPOINT_URL_SNS": sns_url})
    try:
        yield Restarted(second, data_dir, requests, accepted, planted, subscriber)
    finally:
        second.stop()
        subscriber.server.shutdown()
        subscriber.server.server_close()
    assert not wait_until_gone(second.tag), second.log()[-3000:]


def test_kill_9_loses_no_accepted_request(restarted: Restarted, gate: Gate) -> None:
    s3 = restarted.server.client("s3")
    for request, answer in zip(restarted.requests, restarted.accepted, strict=True):
        if "fail" in request:
            failure = json.loads(wait_for_object(s3, answer["FailureLocation"])["Body"].read())
            assert "queued and failing" in failure["Message"]
            assert not exists(s3, answer["OutputLocation"])
        else:
            assert json.loads(wait_for_object(s3, answer["OutputLocation"])["Body"].read()) == request
            assert not exists(s3, answer["FailureLocation"])
    # Exactly one object per request, nothing half-written or doubled.
    assert len(keys(s3, "out/")) == 3
    assert len(keys(s3, "failed/")) == 1
    assert gate.calls["in-flight"] == 2  # run before the kill and again after it (at least once)
    assert gate.calls["queued"] == 1
    # A published result whose row survived is found: not run again, not expired into a failure.
    wait_until_deleted(restarted.data_dir, restarted.planted)
    assert (gate.calls["published"], gate.calls["expired"]) == (0, 0)
    assert keys(s3, "done/") == [
        "done/expired.out",
        "done/owed.out",
        "done/published.out",
        "done/unpublished.out",
    ]


def test_a_notification_owed_when_the_server_died_is_sent_after_the_restart(
    restarted: Restarted, gate: Gate
) -> None:
    """The server died after publishing `done/owed.out` but before its row moved to `notify`: the
    restart finds the object where the owed notification says and sends that notification (at least
    once), without running the request again. One that died before its publish runs again and sends
    the notification of that run."""
    s3 = restarted.server.client("s3")
    wait_until_deleted(restarted.data_dir, {f"planted-{name}" for name in OWING})
    sent = {}
    for _ in OWING:
        received = restarted.subscriber.messages.get(timeout=30)
        sent[received["inferenceId"]] = received
    assert set(sent) == {"planted-owed", "planted-unpublished"}
    owed = sent["planted-owed"]
    assert owed["invocationStatus"] == "Completed"
    assert owed["responseParameters"]["outputLocation"] == f"s3://{BUCKET}/done/owed.out"
    assert json.loads(owed["responseParameters"]["responseBody"]["content"]) == "before"
    assert gate.calls["owed"] == 0
    rerun = sent["planted-unpublished"]
    answer = json.loads(wait_for_object(s3, f"s3://{BUCKET}/done/unpublished.out")["Body"].read())
    assert answer == {"gate": gate.url("unpublished")}
    assert json.loads(rerun["responseParameters"]["responseBody"]["content"]) == answer
    assert gate.calls["unpublished"] == 1
    for name in OWING:
        assert not exists(s3, f"s3://{BUCKET}/done/{name}-error.out")
