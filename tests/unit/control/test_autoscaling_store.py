"""Scalable targets and scaling policies in the SQLite store, and the migration that added them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from moorage.control.records import ScalableTarget, ScalingPolicy
from moorage.control.store import SCHEMA_VERSION, Store

KEY = ("sagemaker", "endpoint/ep/variant/v", "sagemaker:variant:DesiredInstanceCount")


def target(**changes: object) -> ScalableTarget:
    base = ScalableTarget(
        *KEY, min_capacity=1, max_capacity=3, arn="arn:t", role_arn="arn:r", creation_time=1.0
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def policy(name: str = "p", **changes: object) -> ScalingPolicy:
    base = ScalingPolicy(name, f"arn:{name}", *KEY, "TargetTrackingScaling", {"TargetValue": 5.0}, 2.0)
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "state.sqlite3")
    yield opened
    opened.close()


def test_register_creates_then_updates_atomically(store: Store) -> None:
    seen: list[ScalableTarget | None] = []

    def first(current: ScalableTarget | None) -> ScalableTarget:
        seen.append(current)
        return target()

    assert store.register_scalable_target(KEY, first) == target()
    updated = store.register_scalable_target(
        KEY, lambda current: replace(current or target(), max_capacity=9)
    )
    assert seen == [None]
    assert updated.max_capacity == 9 and store.get_scalable_target(KEY) == updated
    assert store.list_scalable_targets("sagemaker") == [updated]
    assert store.list_scalable_targets("ecs") == []


def test_a_refused_change_writes_nothing(store: Store) -> None:
    def refuse(current: ScalableTarget | None) -> ScalableTarget:
        raise ValueError("no")

    with pytest.raises(ValueError):
        store.register_scalable_target(KEY, refuse)
    assert store.get_scalable_target(KEY) is None


def test_policies_need_their_target_and_go_with_it(store: Store) -> None:
    assert store.put_scaling_policy(policy()) is None
    store.register_scalable_target(KEY, lambda current: target())
    assert store.put_scaling_policy(policy()) == policy()
    replaced = store.put_scaling_policy(policy(policy_arn="arn:new", creation_time=9.0, target_tracking={}))
    assert replaced is not None
    assert (replaced.policy_arn, replaced.creation_time, replaced.target_tracking) == ("arn:p", 2.0, {})
    store.put_scaling_policy(policy("q"))
    assert [p.policy_name for p in store.list_scaling_policies("sagemaker")] == ["p", "q"]
    assert store.delete_scaling_policy(KEY, "q") and not store.delete_scaling_policy(KEY, "q")
    assert store.deregister_scalable_target(KEY)
    assert store.list_scaling_policies() == [] and not store.deregister_scalable_target(KEY)


def test_a_version_1_data_dir_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    Store(db).close()
    raw = sqlite3.connect(db)
    raw.executescript(
        "DROP TABLE scalable_targets; DROP TABLE scaling_policies;"
        "INSERT INTO meta (key, value) VALUES ('kept', 'yes'); UPDATE schema_version SET version = 1;"
    )
    raw.close()
    store = Store(db)
    try:
        store.register_scalable_target(KEY, lambda current: target())
        assert store.get_scalable_target(KEY) == target()
    finally:
        store.close()
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert raw.execute("SELECT value FROM meta WHERE key = 'kept'").fetchone() == ("yes",)
    finally:
        raw.close()
