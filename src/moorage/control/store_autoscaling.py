"""Application Auto Scaling's tables in the control-plane store: scalable targets and scaling policies.

Split out of `control/store.py` to keep that file about SageMaker's own resources; `Store` inherits
these methods, so callers keep calling `store.register_scalable_target(...)` and the rows live in the
same SQLite file, under the same lock and transactions (`Store._write` / `Store._read`), which is why
this is a mixin and not a second store with its own connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Protocol

from moorage.control.records import ScalableTarget, ScalingPolicy
from moorage.control.store_rows import json_key, scalable_target_from, scaling_policy_from

if TYPE_CHECKING:
    import sqlite3

__all__ = ["AutoscalingTables"]


class _Connections(Protocol):
    """What the mixin needs from `Store`: its write and read transactions."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def _read(self) -> AbstractContextManager[sqlite3.Connection]: ...


class AutoscalingTables:
    """Scalable targets and scaling policies, keyed by (namespace, resource id, dimension)."""

    def register_scalable_target(
        self: _Connections,
        key: tuple[str, str, str],
        change: Callable[[ScalableTarget | None], ScalableTarget],
    ) -> ScalableTarget:
        """Create or update one target atomically: `change` gets the stored one (or None) and may raise."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT body FROM scalable_targets WHERE target_key = ?", (json_key(*key),)
            ).fetchone()
            target = change(scalable_target_from(row[0]) if row else None)
            conn.execute(
                "INSERT INTO scalable_targets (target_key, service_namespace, creation_time, body)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (target_key) DO UPDATE SET body = excluded.body",
                (
                    json_key(*target.key),
                    target.service_namespace,
                    target.creation_time,
                    json.dumps(asdict(target)),
                ),
            )
            return target

    def get_scalable_target(self: _Connections, key: tuple[str, str, str]) -> ScalableTarget | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT body FROM scalable_targets WHERE target_key = ?", (json_key(*key),)
            ).fetchone()
        return scalable_target_from(row[0]) if row else None

    def list_scalable_targets(self: _Connections, namespace: str | None = None) -> list[ScalableTarget]:
        """Oldest first; every namespace when `namespace` is None (the autoscaler's view)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT body FROM scalable_targets WHERE ? IS NULL OR service_namespace = ?"
                " ORDER BY creation_time, target_key",
                (namespace, namespace),
            ).fetchall()
        return [scalable_target_from(row[0]) for row in rows]

    def deregister_scalable_target(self: _Connections, key: tuple[str, str, str]) -> bool:
        """Remove a target and its scaling policies, as Application Auto Scaling does; False if absent."""
        with self._write() as conn:
            target_key = json_key(*key)
            if not conn.execute(
                "SELECT 1 FROM scalable_targets WHERE target_key = ?", (target_key,)
            ).fetchone():
                return False
            conn.execute("DELETE FROM scalable_targets WHERE target_key = ?", (target_key,))
            conn.execute("DELETE FROM scaling_policies WHERE target_key = ?", (target_key,))
        return True

    def put_scaling_policy(self: _Connections, policy: ScalingPolicy) -> ScalingPolicy | None:
        """Create or replace a policy; a replaced one keeps its ARN and CreationTime. None when the
        policy's scalable target is not registered."""
        target_key = json_key(*policy.target_key)
        policy_key = json_key(*policy.target_key, policy.policy_name)
        with self._write() as conn:
            if not conn.execute(
                "SELECT 1 FROM scalable_targets WHERE target_key = ?", (target_key,)
            ).fetchone():
                return None
            row = conn.execute(
                "SELECT body FROM scaling_policies WHERE policy_key = ?", (policy_key,)
            ).fetchone()
            if row:
                old = scaling_policy_from(row[0])
                policy = replace(policy, policy_arn=old.policy_arn, creation_time=old.creation_time)
            conn.execute(
                "INSERT INTO scaling_policies"
                " (policy_key, target_key, service_namespace, creation_time, body) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (policy_key) DO UPDATE SET body = excluded.body",
                (
                    policy_key,
                    target_key,
                    policy.service_namespace,
                    policy.creation_time,
                    json.dumps(asdict(policy)),
                ),
            )
        return policy

    def list_scaling_policies(self: _Connections, namespace: str | None = None) -> list[ScalingPolicy]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT body FROM scaling_policies WHERE ? IS NULL OR service_namespace = ?"
                " ORDER BY creation_time, policy_key",
                (namespace, namespace),
            ).fetchall()
        return [scaling_policy_from(row[0]) for row in rows]

    def delete_scaling_policy(self: _Connections, key: tuple[str, str, str], policy_name: str) -> bool:
        with self._write() as conn:
            policy_key = json_key(*key, policy_name)
            if not conn.execute(
                "SELECT 1 FROM scaling_policies WHERE policy_key = ?", (policy_key,)
            ).fetchone():
                return False
            conn.execute("DELETE FROM scaling_policies WHERE policy_key = ?", (policy_key,))
        return True
