"""The SQLite store: durability across reopen, the reconciler's transitions, tags, tokens, threads."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from moorage.control.arns import ResourceKind
from moorage.control.records import (
    ContainerSpec,
    Deployment,
    EndpointConfigRecord,
    EndpointRecord,
    EndpointStatus,
    ModelRecord,
    VariantSpec,
    VariantState,
)
from moorage.control.store import SCHEMA_VERSION, ListQuery, Store
from moorage.errors import ConfigError, ValidationException

ARN = "arn:aws:sagemaker:us-east-1:000000000000"
CONTAINER = ContainerSpec(
    image="pytorch:2.1",
    model_data_url="s3://bucket/model.tar.gz",
    model_data_source={"S3Uri": "s3://bucket/m/", "S3DataType": "S3Prefix", "CompressionType": "None"},
    environment={"SAGEMAKER_PROGRAM": "inference.py"},
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.sqlite3"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    store = Store(db, clock=Clock())
    yield store
    store.close()


def model(name: str = "m", created: float = 1.0) -> ModelRecord:
    return ModelRecord(
        name=name,
        arn=f"{ARN}:model/{name.lower()}",
        creation_time=created,
        container=CONTAINER,
        request={"ModelName": name, "PrimaryContainer": {"Image": "pytorch:2.1"}},
    )


def deployment(config: str = "cfg", count: int = 1, weight: float = 1.0) -> Deployment:
    spec = VariantSpec("AllTraffic", "m", CONTAINER, "ml.m5.large", count, weight, 120.0, None)
    return Deployment(config, (spec,), resolved_at=5.0)


def endpoint(
    name: str = "ep", status: EndpointStatus = EndpointStatus.CREATING, **changes: object
) -> EndpointRecord:
    record = EndpointRecord(
        name=name,
        arn=f"{ARN}:endpoint/{name.lower()}",
        status=status,
        creation_time=10.0,
        last_modified_time=10.0,
        deployment=None,
        pending=deployment(),
        variants=(VariantState("AllTraffic", 0.0, 1.0, 0, 1),),
        tags=({"Key": "team", "Value": "ml"},),
    )
    return replace(record, **changes)  # type: ignore[arg-type]


SERVING = (VariantState("AllTraffic", 1.0, 1.0, 1, 1),)


def test_everything_survives_close_and_reopen(db: Path) -> None:
    store = Store(db)
    config = EndpointConfigRecord("cfg", f"{ARN}:endpoint-config/cfg", 2.0, {"EndpointConfigName": "cfg"})
    assert store.add_model(model("Mixed-Case"), [{"Key": "a", "Value": "1"}])
    assert store.add_endpoint_config(config)
    assert store.add_endpoint(endpoint())
    store.close()

    reopened = Store(db)
    try:
        assert reopened.get_model("mixed-case") == model("Mixed-Case")
        assert reopened.get_tags(ResourceKind.MODEL, "MIXED-CASE") == [{"Key": "a", "Value": "1"}]
        assert reopened.get_endpoint_config("CFG") == config
        assert reopened.get_endpoint("ep") == endpoint()
    finally:
        reopened.close()


def test_wal_mode_and_json_rows(store: Store, db: Path) -> None:
    assert store.add_endpoint(endpoint())
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        body = json.loads(raw.execute("SELECT body FROM endpoints").fetchone()[0])
        assert body["pending"]["variants"][0]["container"]["environment"] == {
            "SAGEMAKER_PROGRAM": "inference.py"
        }
    finally:
        raw.close()


def test_newer_schema_is_refused(db: Path) -> None:
    Store(db).close()
    raw = sqlite3.connect(db)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        Store(db)


def test_names_are_unique_case_insensitively(store: Store) -> None:
    assert store.add_model(model("Abc"))
    assert not store.add_model(model("aBC"))
    assert store.get_model("ABC") == model("Abc")
    assert store.delete_model("abc")
    assert store.get_model("Abc") is None
    assert not store.delete_model("abc")


def test_delete_removes_the_tags(store: Store) -> None:
    assert store.add_model(model(), [{"Key": "k", "Value": "v"}])
    assert store.delete_model("m")
    assert store.add_model(model())
    assert store.get_tags(ResourceKind.MODEL, "m") == []


def test_in_service_from_creating(store: Store) -> None:
    store.add_endpoint(endpoint())
    record = store.endpoint_in_service("EP", variants=SERVING)
    assert record is not None
    assert record.status is EndpointStatus.IN_SERVICE
    assert record.deployment == deployment()
    assert record.pending is None
    assert record.variants == SERVING
    assert record.last_modified_time > 10.0
    assert store.get_endpoint("ep") == record
    # Already InService: the transition no longer applies.
    assert store.endpoint_in_service("ep", variants=SERVING) is None


def test_in_service_from_updating_clears_the_failure(store: Store) -> None:
    new = deployment("cfg2", count=2)
    store.add_endpoint(
        endpoint(status=EndpointStatus.UPDATING, deployment=deployment(), pending=new, failure_reason="old")
    )
    record = store.endpoint_in_service("ep", variants=SERVING)
    assert record is not None
    assert (record.status, record.deployment, record.pending, record.failure_reason) == (
        EndpointStatus.IN_SERVICE,
        new,
        None,
        None,
    )


def test_failed_keeps_pending(store: Store) -> None:
    store.add_endpoint(endpoint())
    record = store.endpoint_failed("ep", "model_fn raised" + "!" * 2000)
    assert record is not None
    assert record.status is EndpointStatus.FAILED
    assert record.pending == deployment()
    assert record.config_name == "cfg"
    assert record.failure_reason is not None and len(record.failure_reason) == 1024
    assert store.endpoint_failed("ep", "again") is None


def test_update_failed_rolls_back(store: Store) -> None:
    states = (VariantState("AllTraffic", 1.0, 1.0, 1, 3),)  # desired 3 from the update that failed
    store.add_endpoint(
        endpoint(
            status=EndpointStatus.UPDATING,
            deployment=deployment(),
            pending=deployment(count=3),
            variants=states,
        )
    )
    record = store.update_failed("ep", "no memory")
    assert record is not None
    assert record.status is EndpointStatus.IN_SERVICE
    assert record.deployment == deployment()
    assert record.pending is None
    assert record.failure_reason == "no memory"
    assert record.variants == (VariantState("AllTraffic", 1.0, 1.0, 1, 1),)
    assert store.update_failed("ep", "again") is None


def test_update_failed_needs_updating(store: Store) -> None:
    store.add_endpoint(endpoint())
    assert store.update_failed("ep", "x") is None
    assert store.get_endpoint("ep") == endpoint()


def test_set_variant_states(store: Store) -> None:
    store.add_endpoint(endpoint())
    states = (VariantState("AllTraffic", 0.0, 1.0, 1, 1),)
    record = store.set_variant_states("ep", states)
    assert record is not None
    assert record.variants == states
    assert record.status is EndpointStatus.CREATING
    assert record.last_modified_time == 10.0


def test_remove_only_when_deleting(store: Store) -> None:
    store.add_endpoint(endpoint())
    assert not store.remove_endpoint("ep")
    assert store.get_endpoint("ep") is not None
    store.modify_endpoint("ep", lambda record: replace(record, status=EndpointStatus.DELETING))
    assert store.remove_endpoint("EP")
    assert store.get_endpoint("ep") is None
    assert store.get_tags(ResourceKind.ENDPOINT, "ep") is None
    assert not store.remove_endpoint("ep")


def test_transitions_on_a_missing_endpoint(store: Store) -> None:
    assert store.endpoint_in_service("nope", variants=()) is None
    assert store.endpoint_failed("nope", "x") is None
    assert store.update_failed("nope", "x") is None
    assert store.set_variant_states("nope", ()) is None
    assert not store.remove_endpoint("nope")


def test_a_change_that_raises_writes_nothing(store: Store) -> None:
    store.add_endpoint(endpoint())

    def change(record: EndpointRecord) -> EndpointRecord:
        raise ValidationException("no")

    with pytest.raises(ValidationException):
        store.modify_endpoint("ep", change)
    assert store.get_endpoint("ep") == endpoint()


def test_list_endpoints_returns_every_status(store: Store) -> None:
    for name, status in (
        ("a", EndpointStatus.CREATING),
        ("b", EndpointStatus.FAILED),
        ("c", EndpointStatus.DELETING),
    ):
        store.add_endpoint(endpoint(name, status))
    assert [(record.name, record.status) for record in store.list_endpoints()] == [
        ("a", EndpointStatus.CREATING),
        ("b", EndpointStatus.FAILED),
        ("c", EndpointStatus.DELETING),
    ]


def test_tags_keep_their_order_and_overwrite_in_place(store: Store) -> None:
    store.add_model(model(), [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    after = store.add_tags(ResourceKind.MODEL, "m", [{"Key": "a", "Value": "9"}, {"Key": "c", "Value": "3"}])
    assert after == [{"Key": "a", "Value": "9"}, {"Key": "b", "Value": "2"}, {"Key": "c", "Value": "3"}]
    assert store.delete_tags(ResourceKind.MODEL, "m", ["b", "missing"])
    assert store.get_tags(ResourceKind.MODEL, "m") == [{"Key": "a", "Value": "9"}, {"Key": "c", "Value": "3"}]
    assert store.add_tags(ResourceKind.MODEL, "other", []) is None
    assert not store.delete_tags(ResourceKind.ENDPOINT, "m", ["a"])


def test_a_refused_tag_change_is_undone(store: Store) -> None:
    store.add_model(model())

    def refuse(tags: list[dict[str, str]]) -> None:
        raise ValidationException("too many")

    with pytest.raises(ValidationException):
        store.add_tags(ResourceKind.MODEL, "m", [{"Key": "x", "Value": "y"}], refuse)
    assert store.get_tags(ResourceKind.MODEL, "m") == []


def test_tokens_are_tamper_checked(store: Store) -> None:
    token = store.encode_token({"offset": 3})
    assert store.decode_token(token) == {"offset": 3}
    data, _, mac = token.partition(".")
    forged = store.encode_token({"offset": 4}).partition(".")[0] + "." + mac
    for bad in (forged, data, "garbage", token + "x", "." + mac):
        with pytest.raises(ValidationException, match="Invalid pagination token"):
            store.decode_token(bad)


def test_tokens_survive_a_restart(db: Path) -> None:
    first = Store(db)
    token = first.encode_token({"offset": 1})
    first.close()
    second = Store(db)
    try:
        assert second.decode_token(token) == {"offset": 1}
    finally:
        second.close()


def test_pages_resume_where_they_stopped(store: Store) -> None:
    for index, name in enumerate(["d", "b", "a", "c", "e"]):
        store.add_model(model(name, created=100.0 + index % 2))  # creation times collide on purpose
    names: list[str] = []
    query = ListQuery(sort_by="CreationTime", ascending=True, limit=2)
    while True:
        page = store.list_models(query)
        names += [record.name for record in page.items]
        if page.next_token is None:
            break
        query = replace(query, next_token=page.next_token)
    assert names == ["a", "d", "e", "b", "c"]


def test_a_token_does_not_resume_another_listing(store: Store) -> None:
    for name in "abc":
        store.add_model(model(name))
    page = store.list_models(ListQuery(sort_by="Name", ascending=True, limit=1))
    assert page.next_token is not None
    other = ListQuery(sort_by="Name", ascending=False, limit=1, next_token=page.next_token)
    with pytest.raises(ValidationException, match="Invalid pagination token"):
        store.list_models(other)
    # Another page size is the same listing.
    again = store.list_models(ListQuery(sort_by="Name", ascending=True, limit=5, next_token=page.next_token))
    assert [record.name for record in again.items] == ["b", "c"]


def test_concurrent_creates_have_one_winner(store: Store) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        results.append(store.add_endpoint(endpoint("race")))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [False] * 7 + [True]


def test_two_stores_on_one_file_see_each_other(db: Path) -> None:
    first, second = Store(db), Store(db)
    try:
        assert first.add_model(model())
        assert second.get_model("m") == model()
        assert not second.add_model(model())
    finally:
        first.close()
        second.close()


def test_closed_store_refuses_work(db: Path) -> None:
    store = Store(db)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(sqlite3.ProgrammingError):
        store.get_model("m")
