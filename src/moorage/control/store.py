"""The SQLite store: moorage's only hard state, and the only module that imports sqlite3.

Models, endpoint configs, endpoints (status, deployments, variant counters, failure reason), the
tags of all three, and Application Auto Scaling's scalable targets and scaling policies live here and
nowhere else; every other piece of state (running instances, caches) is derived from it, which is
how a restart recovers (docs/architecture.md).

Durability: WAL journal with `synchronous=FULL`, so a write that returned has reached the disk and
survives a crash of the process or of the machine. Every read-modify-write runs in `BEGIN IMMEDIATE`
(the write lock is taken before the read, so two writers can never interleave), and `busy_timeout`
makes a second process wait for the lock instead of failing. Records are stored as JSON, never pickled.

The server calls the store from one dedicated thread; a lock makes it safe from any thread anyway.
The record <-> JSON codecs live in `store_rows.py` and the Auto Scaling tables' methods in
`store_autoscaling.py` (a mixin of `Store`: same file, same lock); this module keeps the SQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from moorage.control.arns import ResourceKind, name_key
from moorage.control.lifecycle import Action, transition
from moorage.control.records import (
    EndpointConfigRecord,
    EndpointRecord,
    JsonObject,
    ModelRecord,
    VariantState,
)
from moorage.control.store_autoscaling import AutoscalingTables
from moorage.control.store_rows import (
    ENDPOINT_COLUMNS,
    container_json,
    desired_from,
    endpoint_body,
    endpoint_config_from_row,
    endpoint_from_row,
    model_from_row,
)
from moorage.errors import ConfigError, ValidationException

__all__ = ["SCHEMA_VERSION", "ListQuery", "Page", "SortKey", "Store"]

SCHEMA_VERSION = 2
MAX_FAILURE_REASON = 1024  # DescribeEndpoint.FailureReason's maximum length in the model

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (
    name_key TEXT PRIMARY KEY, name TEXT NOT NULL, arn TEXT NOT NULL,
    creation_time REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE endpoint_configs (
    name_key TEXT PRIMARY KEY, name TEXT NOT NULL, arn TEXT NOT NULL,
    creation_time REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE endpoints (
    name_key TEXT PRIMARY KEY, name TEXT NOT NULL, arn TEXT NOT NULL, status TEXT NOT NULL,
    creation_time REAL NOT NULL, last_modified_time REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE tags (
    arn TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (arn, key));
"""

# What takes a data dir written by schema version N-1 to version N (applied in order, in one transaction).
_MIGRATIONS: dict[int, str] = {
    # 2: Application Auto Scaling (scalable targets and their scaling policies). Keys are JSON arrays of
    # (namespace, resource id, dimension[, policy name]): resource ids may hold any character.
    2: """
CREATE TABLE scalable_targets (
    target_key TEXT PRIMARY KEY, service_namespace TEXT NOT NULL, creation_time REAL NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE scaling_policies (
    policy_key TEXT PRIMARY KEY, target_key TEXT NOT NULL, service_namespace TEXT NOT NULL,
    creation_time REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX scaling_policies_by_target ON scaling_policies (target_key);
""",
}

_TABLES = {
    ResourceKind.MODEL: "models",
    ResourceKind.ENDPOINT_CONFIG: "endpoint_configs",
    ResourceKind.ENDPOINT: "endpoints",
}

SortKey = Literal["Name", "CreationTime", "Status"]
_SORT_COLUMNS: dict[str, str] = {"Name": "name_key", "CreationTime": "creation_time", "Status": "status"}

T = TypeVar("T")


@dataclass(frozen=True)
class ListQuery:
    """One List* request, already validated: filters, order, page size and where to resume."""

    sort_by: SortKey
    ascending: bool
    limit: int
    name_contains: str | None = None  # case-insensitive, like names themselves
    creation_time_before: float | None = None
    creation_time_after: float | None = None
    last_modified_time_before: float | None = None  # endpoints only
    last_modified_time_after: float | None = None  # endpoints only
    status: str | None = None  # endpoints only
    next_token: str | None = None

    @classmethod
    def from_request(cls, request: JsonObject) -> ListQuery:
        """From a validated List* input; SageMaker's defaults: newest first, 10 per page (spec §3.3)."""
        return cls(
            sort_by=request.get("SortBy", "CreationTime"),
            ascending=request.get("SortOrder", "Descending") == "Ascending",
            limit=request.get("MaxResults", 10),
            name_contains=request.get("NameContains"),
            creation_time_before=request.get("CreationTimeBefore"),
            creation_time_after=request.get("CreationTimeAfter"),
            last_modified_time_before=request.get("LastModifiedTimeBefore"),
            last_modified_time_after=request.get("LastModifiedTimeAfter"),
            status=request.get("StatusEquals"),
            next_token=request.get("NextToken"),
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str | None


class Store(AutoscalingTables):
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise ConfigError(f"{path}: SQLite could not switch to WAL mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._migrate()
            self._token_key = self._secret()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # Transactions ---------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also when COMMIT itself failed (disk full, I/O error)
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # A deferred transaction: several SELECTs see one snapshot.
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the state store is closed")
        return self._conn

    def _migrate(self) -> None:
        with self._write() as conn:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not exists:
                _run_script(conn, _SCHEMA)
                for step in range(2, SCHEMA_VERSION + 1):
                    _run_script(conn, _MIGRATIONS[step])
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                return
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if isinstance(version, int) and 1 <= version < SCHEMA_VERSION:
                # An older data dir: bring it up to date (the whole migration commits, or none of it).
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    _run_script(conn, _MIGRATIONS[step])
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
                version = SCHEMA_VERSION
            if version != SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path} has state schema version {version}; this moorage reads version "
                    f"{SCHEMA_VERSION}. Use the moorage release that wrote it, or a new data dir."
                )

    def _secret(self) -> bytes:
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('token_key', ?)", (secrets.token_hex(32),)
            )
            row = conn.execute("SELECT value FROM meta WHERE key = 'token_key'").fetchone()
        return bytes.fromhex(row[0])

    # Models ---------------------------------------------------------------------------------------
    def add_model(self, record: ModelRecord, tags: Sequence[JsonObject] = ()) -> bool:
        """False when a model of that name (in any case) exists already."""
        body = {"container": container_json(record.container), "request": record.request}
        return self._insert(ResourceKind.MODEL, record.name, record.arn, record.creation_time, body, tags)

    def get_model(self, name: str) -> ModelRecord | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT name, arn, creation_time, body FROM models WHERE name_key = ?", (name_key(name),)
            ).fetchone()
        return model_from_row(row) if row else None

    def delete_model(self, name: str) -> bool:
        return self._delete(ResourceKind.MODEL, name)

    def list_models(self, query: ListQuery) -> Page[ModelRecord]:
        return self._page(ResourceKind.MODEL, "name, arn, creation_time, body", query, model_from_row)

    # Endpoint configs -----------------------------------------------------------------------------
    def add_endpoint_config(self, record: EndpointConfigRecord, tags: Sequence[JsonObject] = ()) -> bool:
        body = {"request": record.request}
        kind = ResourceKind.ENDPOINT_CONFIG
        return self._insert(kind, record.name, record.arn, record.creation_time, body, tags)

    def get_endpoint_config(self, name: str) -> EndpointConfigRecord | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT name, arn, creation_time, body FROM endpoint_configs WHERE name_key = ?",
                (name_key(name),),
            ).fetchone()
        return endpoint_config_from_row(row) if row else None

    def delete_endpoint_config(self, name: str) -> bool:
        return self._delete(ResourceKind.ENDPOINT_CONFIG, name)

    def list_endpoint_configs(self, query: ListQuery) -> Page[EndpointConfigRecord]:
        columns = "name, arn, creation_time, body"
        return self._page(ResourceKind.ENDPOINT_CONFIG, columns, query, endpoint_config_from_row)

    # Endpoints ------------------------------------------------------------------------------------
    def add_endpoint(self, record: EndpointRecord) -> bool:
        """Insert a new endpoint with its tags; False when one of that name exists already."""
        with self._write() as conn:
            key = name_key(record.name)
            if conn.execute("SELECT 1 FROM endpoints WHERE name_key = ?", (key,)).fetchone():
                return False
            conn.execute(
                "INSERT INTO endpoints (name_key, name, arn, status, creation_time, last_modified_time, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    record.name,
                    record.arn,
                    record.status.value,
                    record.creation_time,
                    record.last_modified_time,
                    json.dumps(endpoint_body(record)),
                ),
            )
            _put_tags(conn, record.arn, record.tags)
        return True

    def get_endpoint(self, name: str) -> EndpointRecord | None:
        with self._read() as conn:
            return _get_endpoint(conn, name)

    def list_endpoints(self) -> list[EndpointRecord]:
        """Every endpoint, in any status (the reconciler's view at start)."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY name_key").fetchall()
            return [endpoint_from_row(row, _tags(conn, row[1])) for row in rows]

    def page_endpoints(self, query: ListQuery) -> Page[EndpointRecord]:
        return self._page(
            ResourceKind.ENDPOINT, ENDPOINT_COLUMNS, query, lambda row: endpoint_from_row(row, ())
        )

    def modify_endpoint(
        self, name: str, change: Callable[[EndpointRecord], EndpointRecord | None]
    ) -> EndpointRecord | None:
        """Read, change and write one endpoint atomically.

        `change` gets the current record and returns the new one, or None to leave it as it is; it may
        raise a domain error, which undoes nothing because nothing was written. Returns the record
        written, or None when the endpoint does not exist or `change` returned None.
        """
        with self._write() as conn:
            current = _get_endpoint(conn, name)
            if current is None:
                return None
            updated = change(current)
            if updated is None:
                return None
            conn.execute(
                "UPDATE endpoints SET status = ?, last_modified_time = ?, body = ? WHERE name_key = ?",
                (
                    updated.status.value,
                    updated.last_modified_time,
                    json.dumps(endpoint_body(updated)),
                    name_key(name),
                ),
            )
            return updated

    # The reconciler's transitions: each atomic; None when the endpoint is gone or has moved on.
    def endpoint_in_service(self, name: str, *, variants: tuple[VariantState, ...]) -> EndpointRecord | None:
        """Creating/Updating → InService: the pending deployment now serves."""

        def change(record: EndpointRecord) -> EndpointRecord:
            return replace(
                record, deployment=record.pending, pending=None, variants=variants, failure_reason=None
            )

        return self._transition(name, Action.IN_SERVICE, change)

    def endpoint_failed(self, name: str, reason: str) -> EndpointRecord | None:
        """Creating → Failed; `pending` stays so DescribeEndpoint still names the config."""
        return self._transition(
            name, Action.FAIL, lambda record: replace(record, failure_reason=reason[:MAX_FAILURE_REASON])
        )

    def update_failed(self, name: str, reason: str) -> EndpointRecord | None:
        """Updating → InService with the old deployment still serving, and FailureReason set."""

        def change(record: EndpointRecord) -> EndpointRecord:
            return replace(
                record,
                pending=None,
                failure_reason=reason[:MAX_FAILURE_REASON],
                variants=desired_from(record.deployment, record.variants),
            )

        return self._transition(name, Action.UPDATE_FAIL, change)

    def set_variant_states(self, name: str, variants: tuple[VariantState, ...]) -> EndpointRecord | None:
        """New counters for DescribeEndpoint; the status and LastModifiedTime do not change."""

        def change(record: EndpointRecord) -> EndpointRecord | None:
            if transition(Action.SET_VARIANTS, record.status) is None:
                return None
            return replace(record, variants=variants)

        return self.modify_endpoint(name, change)

    def remove_endpoint(self, name: str) -> bool:
        """Deleting → gone, with its tags. False when it is gone already or not Deleting."""
        with self._write() as conn:
            current = _get_endpoint(conn, name)
            if current is None or transition(Action.REMOVE, current.status) is None:
                return False
            conn.execute("DELETE FROM endpoints WHERE name_key = ?", (name_key(name),))
            conn.execute("DELETE FROM tags WHERE arn = ?", (current.arn,))
        return True

    def _transition(
        self, name: str, action: Action, change: Callable[[EndpointRecord], EndpointRecord]
    ) -> EndpointRecord | None:
        def guarded(record: EndpointRecord) -> EndpointRecord | None:
            status = transition(action, record.status)
            if status is None:
                return None
            return replace(change(record), status=status, last_modified_time=self._clock())

        return self.modify_endpoint(name, guarded)

    # Tags -----------------------------------------------------------------------------------------
    def add_tags(
        self,
        kind: ResourceKind,
        name: str,
        tags: Sequence[JsonObject],
        check: Callable[[list[JsonObject]], None] | None = None,
    ) -> list[JsonObject] | None:
        """Add or overwrite tags; the resource's tags after, or None when the resource does not exist.

        `check` sees the tags as they would be and may raise a domain error to refuse the change.
        """
        with self._write() as conn:
            arn = _arn_of(conn, kind, name)
            if arn is None:
                return None
            _put_tags(conn, arn, tags)
            after = _tags(conn, arn)
            if check is not None:
                check(after)
            return after

    def delete_tags(self, kind: ResourceKind, name: str, keys: Sequence[str]) -> bool:
        with self._write() as conn:
            arn = _arn_of(conn, kind, name)
            if arn is None:
                return False
            conn.executemany("DELETE FROM tags WHERE arn = ? AND key = ?", [(arn, key) for key in keys])
        return True

    def get_tags(self, kind: ResourceKind, name: str) -> list[JsonObject] | None:
        with self._read() as conn:
            arn = _arn_of(conn, kind, name)
            return None if arn is None else _tags(conn, arn)

    # Pagination tokens ----------------------------------------------------------------------------
    def encode_token(self, payload: JsonObject) -> str:
        """An opaque NextToken: the payload, signed so that a changed or forged token is refused."""
        data = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
        return f"{data}.{self._mac(data)}"

    def decode_token(self, token: str) -> JsonObject:
        data, _, mac = token.partition(".")
        payload: Any = None
        if hmac.compare_digest(mac.encode(), self._mac(data).encode()):
            try:
                payload = json.loads(base64.urlsafe_b64decode(data.encode()))
            except (ValueError, UnicodeDecodeError):
                payload = None
        if not isinstance(payload, dict):
            raise ValidationException(
                "Invalid pagination token: the NextToken was not issued for this request."
            )
        return payload

    def _mac(self, data: str) -> str:
        digest = hmac.new(self._token_key, data.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    # Shared helpers -------------------------------------------------------------------------------
    def _insert(
        self,
        kind: ResourceKind,
        name: str,
        arn: str,
        creation_time: float,
        body: JsonObject,
        tags: Sequence[JsonObject],
    ) -> bool:
        table = _TABLES[kind]
        with self._write() as conn:
            key = name_key(name)
            if conn.execute(f"SELECT 1 FROM {table} WHERE name_key = ?", (key,)).fetchone():
                return False
            conn.execute(
                f"INSERT INTO {table} (name_key, name, arn, creation_time, body) VALUES (?, ?, ?, ?, ?)",
                (key, name, arn, creation_time, json.dumps(body)),
            )
            _put_tags(conn, arn, tags)
        return True

    def _delete(self, kind: ResourceKind, name: str) -> bool:
        table = _TABLES[kind]
        with self._write() as conn:
            arn = _arn_of(conn, kind, name)
            if arn is None:
                return False
            conn.execute(f"DELETE FROM {table} WHERE name_key = ?", (name_key(name),))
            conn.execute("DELETE FROM tags WHERE arn = ?", (arn,))
        return True

    def _page(
        self, kind: ResourceKind, columns: str, query: ListQuery, decode: Callable[[Any], T]
    ) -> Page[T]:
        table = _TABLES[kind]
        sort_column = _SORT_COLUMNS[query.sort_by]
        # The token is bound to everything but the page size, so it cannot resume a different listing.
        scope = asdict(replace(query, limit=0, next_token=None)) | {"table": table}
        fingerprint = hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()[:16]
        where: list[str] = []
        args: list[Any] = []
        if query.name_contains:
            where.append("instr(name_key, ?) > 0")
            args.append(query.name_contains.lower())
        for column, bound, operator in (
            ("creation_time", query.creation_time_before, "<"),
            ("creation_time", query.creation_time_after, ">"),
            ("last_modified_time", query.last_modified_time_before, "<"),
            ("last_modified_time", query.last_modified_time_after, ">"),
        ):
            if bound is not None:
                # At the precision a client holds a time (botocore: microseconds): a time read from
                # Describe* and sent back as a filter must not match its own resource because of the
                # digits it lost on the way.
                where.append(f"round({column}, 6) {operator} ?")
                args.append(bound)
        if query.status is not None:
            where.append("status = ?")
            args.append(query.status)
        operator = ">" if query.ascending else "<"
        if query.next_token is not None:
            cursor = self.decode_token(query.next_token)
            if cursor.get("f") != fingerprint or "v" not in cursor or not isinstance(cursor.get("n"), str):
                raise ValidationException(
                    "Invalid pagination token: the NextToken was not issued for this request."
                )
            # Keyset pagination: resume strictly after the last item sent (sort value, then name).
            where.append(f"({sort_column} {operator} ? OR ({sort_column} = ? AND name_key {operator} ?))")
            args.extend((cursor["v"], cursor["v"], cursor["n"]))
        direction = "ASC" if query.ascending else "DESC"
        sql = (
            f"SELECT {columns}, name_key, {sort_column} FROM {table}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {sort_column} {direction}, name_key {direction} LIMIT ?"
        )
        with self._read() as conn:
            rows = conn.execute(sql, (*args, query.limit + 1)).fetchall()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        token = None
        if more:
            last = rows[-1]
            token = self.encode_token({"f": fingerprint, "v": last[-1], "n": last[-2]})
        return Page([decode(row) for row in rows], token)


# SQL helpers --------------------------------------------------------------------------------------
def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Each statement on its own (executescript would commit the transaction it runs in)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _arn_of(conn: sqlite3.Connection, kind: ResourceKind, name: str) -> str | None:
    row = conn.execute(f"SELECT arn FROM {_TABLES[kind]} WHERE name_key = ?", (name_key(name),)).fetchone()
    return str(row[0]) if row else None


def _put_tags(conn: sqlite3.Connection, arn: str, tags: Sequence[JsonObject]) -> None:
    # A key that exists keeps its place in the list; a new key goes to the end.
    for tag in tags:
        row = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM tags WHERE arn = ?", (arn,)).fetchone()
        conn.execute(
            "INSERT INTO tags (arn, key, value, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (arn, key) DO UPDATE SET value = excluded.value",
            (arn, tag["Key"], tag["Value"], row[0]),
        )


def _tags(conn: sqlite3.Connection, arn: str) -> list[JsonObject]:
    rows = conn.execute("SELECT key, value FROM tags WHERE arn = ? ORDER BY seq", (arn,)).fetchall()
    return [{"Key": key, "Value": value} for key, value in rows]


def _get_endpoint(conn: sqlite3.Connection, name: str) -> EndpointRecord | None:
    row = conn.execute(
        f"SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE name_key = ?", (name_key(name),)
    ).fetchone()
    return endpoint_from_row(row, _tags(conn, row[1])) if row else None
