"""The store's durable state: object files under the root, and an SQLite index that makes them visible.

Layout under `root`:

    index.sqlite3            buckets, objects, multipart uploads and parts (WAL, synchronous=FULL)
    buckets/<bucket>/<id>    one file per object version that the index points at
    .uploads/<upload>/<n>-<id>  the parts of a multipart upload in progress
    .tmp/                    bodies still arriving; wiped at start

Keys never become paths: an object's file is named by a fresh random id, so no key (`../../etc/passwd`,
`a/../../b`, NUL, anything) can reach outside the root. An object becomes visible only when its index
row commits, after its file has been fsynced and renamed into place; an overwrite commits the new row
first and only then removes the old file, so a reader sees the old object or the new one, whole.
Files the index does not point at (a crash between the two steps) are removed when the store opens.

All methods block; the HTTP layer calls them through `files.offload`. Each call opens its own SQLite
connection, so there is no shared connection to guard and nothing to close at shutdown.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from moorage.s3 import conditions
from moorage.s3.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    InternalError,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
)
from moorage.s3.files import fsync_dir, remove_tree
from moorage.s3.listing import Page, Position, list_page, prefix_upper_bound
from moorage.s3.names import is_valid_bucket_name
from moorage.s3.records import BucketInfo, ChecksumInfo, ObjectAttributes, ObjectInfo, PartInfo, UploadInfo
from moorage.s3.schema import OBJECT_COLUMNS, SCHEMA, encode_key, object_from_row, upload_from_row

__all__ = ["Store"]

_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_COMPLETED_KEPT_S = 7 * 24 * 3600


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db_path = root / "index.sqlite3"
        self.buckets_dir = root / "buckets"
        self.uploads_dir = root / ".uploads"
        self.tmp_dir = root / ".tmp"

    @classmethod
    def open(cls, root: Path) -> Store:
        """Create or open the store at `root`, and clean up what an interrupted run left behind.

        One server owns a root at a time: the clean-up would remove another live server's temp files.
        """
        store = cls(root)
        for directory in (root, store.buckets_dir, store.uploads_dir, store.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        with store._db() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once, applies to every connection
            db.executescript(SCHEMA)
        store._recover()
        return store

    # SQLite ------------------------------------------------------------------------------------------

    @contextmanager
    def _db(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA synchronous=FULL")
            if write:
                connection.execute("BEGIN IMMEDIATE")  # read-modify-write: take the write lock up front
            yield connection
            if write:
                connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def _recover(self) -> None:
        for leftover in self.tmp_dir.iterdir():
            if leftover.is_dir():
                remove_tree(leftover)
            else:
                leftover.unlink(missing_ok=True)
        with self._db() as db:
            buckets = {row[0] for row in db.execute("SELECT name FROM buckets")}
            files: dict[str, set[str]] = {name: set() for name in buckets}
            for bucket, file in db.execute("SELECT bucket, file FROM objects"):
                files.setdefault(bucket, set()).add(file)
            uploads = {row[0] for row in db.execute("SELECT upload_id FROM uploads")}
            parts: dict[str, set[str]] = {upload: set() for upload in uploads}
            for upload, file in db.execute("SELECT upload_id, file FROM parts"):
                parts.setdefault(upload, set()).add(file)
        self._remove_unreferenced(self.buckets_dir, files)
        self._remove_unreferenced(self.uploads_dir, parts)
        with self._db(write=True) as db:
            db.execute("DELETE FROM completed WHERE completed < ?", (time.time() - _COMPLETED_KEPT_S,))

    @staticmethod
    def _remove_unreferenced(parent: Path, referenced: dict[str, set[str]]) -> None:
        for directory in parent.iterdir():
            keep = referenced.get(directory.name)
            if not directory.is_dir():
                directory.unlink(missing_ok=True)
                continue
            if keep is None:
                remove_tree(directory)
                continue
            for file in directory.iterdir():
                if file.name not in keep:
                    file.unlink(missing_ok=True)

    def new_temp_path(self) -> Path:
        return self.tmp_dir / uuid.uuid4().hex

    def _bucket_dir(self, name: str) -> Path:
        # Callers validate names first; checked again here because the name becomes a path.
        if not is_valid_bucket_name(name):
            raise NoSuchBucket(name)
        return self.buckets_dir / name

    # Buckets -----------------------------------------------------------------------------------------
    @staticmethod
    def _bucket_row(db: sqlite3.Connection, name: str) -> BucketInfo:
        row = db.execute("SELECT name, created, region FROM buckets WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NoSuchBucket(name)
        return BucketInfo(row[0], row[1], row[2])

    def get_bucket(self, name: str) -> BucketInfo:
        with self._db() as db:
            return self._bucket_row(db, name)

    def list_buckets(self, *, prefix: str = "", after: str = "", limit: int = 10000) -> list[BucketInfo]:
        with self._db() as db:
            rows = db.execute(
                "SELECT name, created, region FROM buckets WHERE name > ? AND substr(name, 1, ?) = ? "
                "ORDER BY name LIMIT ?",
                (after, len(prefix), prefix, limit),
            ).fetchall()
        return [BucketInfo(name, created, region) for name, created, region in rows]

    def create_bucket(self, name: str, region: str) -> BucketInfo:
        directory = self._bucket_dir(name)
        with self._db(write=True) as db:
            if db.execute("SELECT 1 FROM buckets WHERE name = ?", (name,)).fetchone() is not None:
                raise BucketAlreadyOwnedByYou(name)
            directory.mkdir(exist_ok=True)
            fsync_dir(self.buckets_dir)
            info = BucketInfo(name, time.time(), region)
            db.execute("INSERT INTO buckets VALUES (?, ?, ?)", (info.name, info.created, info.region))
        return info

    def delete_bucket(self, name: str) -> None:
        with self._db(write=True) as db:
            self._bucket_row(db, name)
            if db.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,)).fetchone() is not None:
                raise BucketNotEmpty(name)
            # Uploads in progress go with the bucket (they could never be completed anyway).
            uploads = [
                row[0] for row in db.execute("SELECT upload_id FROM uploads WHERE bucket = ?", (name,))
            ]
            for upload_id in uploads:
                db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
            db.execute("DELETE FROM uploads WHERE bucket = ?", (name,))
            db.execute("DELETE FROM completed WHERE bucket = ?", (name,))
            db.execute("DELETE FROM buckets WHERE name = ?", (name,))
        remove_tree(self.buckets_dir / name)
        for upload_id in uploads:
            remove_tree(self.uploads_dir / upload_id)

    # Objects -----------------------------------------------------------------------------------------
    def _object_row(self, db: sqlite3.Connection, bucket: str, key: str) -> tuple[ObjectInfo, str] | None:
        row = db.execute(
            f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ?", (bucket, encode_key(key))
        ).fetchone()
        return None if row is None else object_from_row(bucket, row)

    def _lookup(self, bucket: str, key: str) -> tuple[ObjectInfo, str]:
        with self._db() as db:
            found = self._object_row(db, bucket, key)
            if found is None:
                self._bucket_row(db, bucket)  # NoSuchBucket before NoSuchKey
                raise NoSuchKey(key)
            return found

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        return self._lookup(bucket, key)[0]

    def open_object(self, bucket: str, key: str) -> tuple[int, ObjectInfo]:
        """An open file descriptor on the object's bytes, with the record it belongs to."""
        for _ in range(5):
            info, file = self._lookup(bucket, key)
            try:
                return os.open(self.buckets_dir / bucket / file, os.O_RDONLY), info
            except FileNotFoundError:
                continue  # overwritten between the lookup and the open: look again
        raise InternalError("The object kept changing while it was being opened; retry.")

    def put_object(
        self,
        bucket: str,
        key: str,
        temp: Path,
        *,
        size: int,
        etag: str,
        attributes: ObjectAttributes,
        checksum: ChecksumInfo | None = None,
        part_sizes: tuple[int, ...] = (),
        if_match: str | None = None,
        if_none_match: str | None = None,
        finish_upload: str | None = None,
    ) -> ObjectInfo:
        """Move a complete, fsynced temp file into place and make it the object at `key`.

        With `finish_upload`, the same transaction also retires that multipart upload.
        """
        file = uuid.uuid4().hex
        final = self._bucket_dir(bucket) / file
        current: tuple[ObjectInfo, str] | None = None
        try:
            os.replace(temp, final)
        except FileNotFoundError:
            if not final.parent.is_dir():
                raise NoSuchBucket(bucket) from None
            raise
        try:
            fsync_dir(final.parent)
            info = ObjectInfo(bucket, key, size, etag, time.time(), attributes, checksum, part_sizes)
            with self._db(write=True) as db:
                self._bucket_row(db, bucket)
                current = self._object_row(db, bucket, key)
                conditions.check_write(if_match, if_none_match, key, current[0] if current else None)
                if finish_upload is not None:
                    self._retire_upload(db, bucket, key, finish_upload, etag)
                db.execute(
                    f"INSERT OR REPLACE INTO objects (bucket, {OBJECT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        bucket,
                        encode_key(key),
                        file,
                        size,
                        etag,
                        info.last_modified,
                        attributes.content_type,
                        json.dumps(attributes.headers),
                        json.dumps(attributes.metadata),
                        checksum.algorithm if checksum else None,
                        checksum.value if checksum else None,
                        checksum.type if checksum else None,
                        json.dumps(part_sizes),
                    ),
                )
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        if current is not None:
            (self.buckets_dir / bucket / current[1]).unlink(missing_ok=True)
        if finish_upload is not None:
            remove_tree(self.uploads_dir / finish_upload)
        return info

    def delete_objects(self, bucket: str, keys: Sequence[str]) -> None:
        """Delete each key that exists, in one transaction; deleting a missing key succeeds, as on S3."""
        files: list[str] = []
        with self._db(write=True) as db:
            self._bucket_row(db, bucket)
            for key in keys:
                found = self._object_row(db, bucket, key)
                if found is not None:
                    files.append(found[1])
                    db.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, encode_key(key)))
        for file in files:
            (self.buckets_dir / bucket / file).unlink(missing_ok=True)

    def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, start: Position | None, max_keys: int
    ) -> Page[ObjectInfo]:
        raw_prefix = encode_key(prefix)
        upper = prefix_upper_bound(raw_prefix)
        with self._db() as db:
            self._bucket_row(db, bucket)

            def fetch(position: Position, limit: int) -> list[tuple[bytes, ObjectInfo]]:
                bound = max(position.bound, raw_prefix)
                inclusive = position.inclusive or bound != position.bound
                query = (
                    f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? "
                    f"AND key {'>=' if inclusive else '>'} ? "
                    + ("AND key < ? " if upper is not None else "")
                    + "ORDER BY key LIMIT ?"
                )
                params: tuple[object, ...] = (bucket, bound, *((upper,) if upper is not None else ()), limit)
                rows = db.execute(query, params).fetchall()
                return [(row[0], object_from_row(bucket, row)[0]) for row in rows]

            return list_page(
                fetch, prefix=raw_prefix, delimiter=encode_key(delimiter), start=start, max_keys=max_keys
            )

    # Multipart uploads -------------------------------------------------------------------------------
    def create_upload(
        self,
        bucket: str,
        key: str,
        attributes: ObjectAttributes,
        checksum_algorithm: str | None,
        checksum_type: str | None,
    ) -> UploadInfo:
        upload = UploadInfo(
            uuid.uuid4().hex, bucket, key, time.time(), attributes, checksum_algorithm, checksum_type
        )
        with self._db(write=True) as db:
            self._bucket_row(db, bucket)
            (self.uploads_dir / upload.upload_id).mkdir()
            fsync_dir(self.uploads_dir)
            db.execute(
                "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    upload.upload_id,
                    bucket,
                    encode_key(key),
                    upload.initiated,
                    attributes.content_type,
                    json.dumps(attributes.headers),
                    json.dumps(attributes.metadata),
                    checksum_algorithm,
                    checksum_type,
                ),
            )
        return upload

    def _upload_row(self, db: sqlite3.Connection, bucket: str, key: str, upload_id: str) -> UploadInfo:
        row = None
        if _UPLOAD_ID.fullmatch(upload_id):
            row = db.execute(
                "SELECT * FROM uploads WHERE upload_id = ? AND bucket = ? AND key = ?",
                (upload_id, bucket, encode_key(key)),
            ).fetchone()
        if row is None:
            self._bucket_row(db, bucket)
            raise NoSuchUpload(upload_id)
        return upload_from_row(row)

    def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        with self._db() as db:
            return self._upload_row(db, bucket, key, upload_id)

    def list_uploads(self, bucket: str) -> list[UploadInfo]:
        with self._db() as db:
            self._bucket_row(db, bucket)
            rows = db.execute(
                "SELECT * FROM uploads WHERE bucket = ? ORDER BY key, initiated, upload_id", (bucket,)
            ).fetchall()
        return [upload_from_row(row) for row in rows]

    def put_part(
        self, upload: UploadInfo, part_number: int, temp: Path, *, size: int, etag: str, checksum: str | None
    ) -> PartInfo:
        directory = self.uploads_dir / upload.upload_id
        part = PartInfo(part_number, size, etag, time.time(), f"{part_number}-{uuid.uuid4().hex}", checksum)
        try:
            os.replace(temp, directory / part.file)
        except FileNotFoundError:
            raise NoSuchUpload(upload.upload_id) from None  # aborted while the part was arriving
        try:
            fsync_dir(directory)
            with self._db(write=True) as db:
                self._upload_row(db, upload.bucket, upload.key, upload.upload_id)
                old = db.execute(
                    "SELECT file FROM parts WHERE upload_id = ? AND part_number = ?",
                    (upload.upload_id, part_number),
                ).fetchone()
                db.execute(
                    "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (upload.upload_id, part_number, part.file, size, etag, part.last_modified, checksum),
                )
        except BaseException:
            (directory / part.file).unlink(missing_ok=True)
            raise
        if old is not None:
            (directory / old[0]).unlink(missing_ok=True)
        return part

    def list_parts(self, upload: UploadInfo) -> list[PartInfo]:
        with self._db() as db:
            self._upload_row(db, upload.bucket, upload.key, upload.upload_id)
            rows = db.execute(
                "SELECT part_number, size, etag, last_modified, file, checksum FROM parts "
                "WHERE upload_id = ? ORDER BY part_number",
                (upload.upload_id,),
            ).fetchall()
        return [PartInfo(*row) for row in rows]

    def part_path(self, upload: UploadInfo, part: PartInfo) -> Path:
        return self.uploads_dir / upload.upload_id / part.file

    def _retire_upload(
        self, db: sqlite3.Connection, bucket: str, key: str, upload_id: str, etag: str
    ) -> None:
        self._upload_row(db, bucket, key, upload_id)
        db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        db.execute(
            "INSERT OR REPLACE INTO completed VALUES (?, ?, ?, ?, ?)",
            (upload_id, bucket, encode_key(key), etag, time.time()),
        )

    def completed_upload(self, bucket: str, key: str, upload_id: str) -> ObjectInfo | None:
        """The object an already completed upload produced, if it is still the object at `key`."""
        with self._db() as db:
            row = db.execute(
                "SELECT etag FROM completed WHERE upload_id = ? AND bucket = ? AND key = ?",
                (upload_id, bucket, encode_key(key)),
            ).fetchone()
            current = self._object_row(db, bucket, key) if row is not None else None
        if row is None or current is None or current[0].etag != row[0]:
            return None
        return current[0]

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        with self._db(write=True) as db:
            self._upload_row(db, bucket, key, upload_id)
            db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
            db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        remove_tree(self.uploads_dir / upload_id)
