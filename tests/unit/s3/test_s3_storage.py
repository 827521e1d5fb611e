"""The durable store on a real directory: visibility, overwrites, clean-up after a crash, open_object."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from moorage.s3 import open_object
from moorage.s3.errors import BucketNotEmpty, NoSuchBucket, NoSuchKey, NoSuchUpload, PreconditionFailed
from moorage.s3.files import FileSink
from moorage.s3.records import ObjectAttributes
from moorage.s3.storage import Store


def _temp(store: Store, data: bytes) -> tuple[Path, str]:
    path = store.new_temp_path()
    sink = FileSink(path)
    sink.write(data)
    sink.finish()
    return path, sink.md5.hexdigest()


def _put(
    store: Store,
    bucket: str,
    key: str,
    data: bytes,
    if_none_match: str | None = None,
    attributes: ObjectAttributes | None = None,
) -> None:
    path, md5 = _temp(store, data)
    store.put_object(
        bucket,
        key,
        path,
        size=len(data),
        etag=md5,
        attributes=attributes or ObjectAttributes(),
        if_none_match=if_none_match,
    )


def _files(store: Store, bucket: str) -> list[Path]:
    return sorted((store.buckets_dir / bucket).iterdir())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store.open(tmp_path / "root")
    opened.create_bucket("models", "us-east-1")
    return opened


def test_put_read_and_overwrite(store: Store) -> None:
    _put(store, "models", "k", b"one")
    first = _files(store, "models")
    _put(store, "models", "k", b"two", attributes=ObjectAttributes("text/plain", (("team", "ml"),)))
    assert len(_files(store, "models")) == 1 and _files(store, "models") != first  # old file removed
    fd_file, info = open_object(store.root, "models", "k")
    with fd_file:
        assert fd_file.read() == b"two"
    assert (info.size, info.etag, info.content_type) == (3, hashlib.md5(b"two").hexdigest(), "text/plain")
    assert info.metadata == {"team": "ml"}
    assert not any(store.tmp_dir.iterdir())


def test_keys_never_become_paths(store: Store) -> None:
    for key in ("../../escape", "a/../../b", "/abs", "x\x00y"):
        _put(store, "models", key, key.encode())
    names = [path.name for path in _files(store, "models")]
    assert len(names) == 4 and all(len(name) == 32 and int(name, 16) >= 0 for name in names)
    assert not (store.root.parent / "escape").exists()
    with open_object(store.root, "models", "a/../../b")[0] as file:
        assert file.read() == b"a/../../b"


def test_failed_condition_leaves_nothing_behind(store: Store) -> None:
    _put(store, "models", "k", b"one")
    with pytest.raises(PreconditionFailed):
        _put(store, "models", "k", b"two", if_none_match="*")
    assert len(_files(store, "models")) == 1
    with open_object(store.root, "models", "k")[0] as file:
        assert file.read() == b"one"


def test_missing_things(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NoSuchKey):
        store.head_object("models", "absent")
    with pytest.raises(NoSuchBucket):
        store.head_object("absent-bucket", "k")
    with pytest.raises(NoSuchBucket):
        _put(store, "absent-bucket", "k", b"x")
    for root, bucket, key in [
        (store.root, "models", "absent"),
        (store.root, "absent-bucket", "k"),
        (store.root, "..", "k"),
        (tmp_path / "no-store-here", "models", "k"),
    ]:
        with pytest.raises(KeyError):
            open_object(root, bucket, key)


def test_delete_bucket(store: Store) -> None:
    _put(store, "models", "k", b"x")
    with pytest.raises(BucketNotEmpty):
        store.delete_bucket("models")
    upload = store.create_upload("models", "big", ObjectAttributes(), None, None)
    store.delete_objects("models", ["k", "never-existed"])
    store.delete_bucket("models")
    assert not (store.buckets_dir / "models").exists()
    assert not (store.uploads_dir / upload.upload_id).exists()
    with pytest.raises(NoSuchBucket):
        store.get_bucket("models")


def test_open_cleans_up_what_a_crash_left(store: Store) -> None:
    _put(store, "models", "kept", b"kept")
    kept_files = _files(store, "models")
    upload = store.create_upload("models", "big", ObjectAttributes(), None, None)
    path, md5 = _temp(store, b"part")
    part = store.put_part(upload, 1, path, size=4, etag=md5, checksum=None)
    # What a crash between "file in place" and "index committed" leaves, plus half-written temps:
    (store.buckets_dir / "models" / ("f" * 32)).write_bytes(b"orphan object file")
    (store.uploads_dir / upload.upload_id / "2-orphan").write_bytes(b"orphan part")
    (store.uploads_dir / ("e" * 32)).mkdir()
    (store.buckets_dir / "never-created").mkdir()
    (store.tmp_dir / "half-written").write_bytes(b"partial")

    reopened = Store.open(store.root)
    assert _files(reopened, "models") == kept_files
    assert sorted(p.name for p in (reopened.uploads_dir / upload.upload_id).iterdir()) == [part.file]
    assert sorted(p.name for p in reopened.uploads_dir.iterdir()) == [upload.upload_id]
    assert sorted(p.name for p in reopened.buckets_dir.iterdir()) == ["models"]
    assert not any(reopened.tmp_dir.iterdir())
    assert [p.part_number for p in reopened.list_parts(upload)] == [1]


def test_completing_retires_the_upload_in_the_same_transaction(store: Store) -> None:
    upload = store.create_upload("models", "big", ObjectAttributes(content_type="x/y"), None, None)
    path, md5 = _temp(store, b"part")
    store.put_part(upload, 1, path, size=4, etag=md5, checksum=None)
    assembled, _ = _temp(store, b"part")
    info = store.put_object(
        "models",
        "big",
        assembled,
        size=4,
        etag="e-1",
        attributes=upload.attributes,
        finish_upload=upload.upload_id,
    )
    assert (info.etag, info.content_type) == ("e-1", "x/y")
    with pytest.raises(NoSuchUpload):
        store.get_upload("models", "big", upload.upload_id)
    assert not (store.uploads_dir / upload.upload_id).exists()
    assert store.completed_upload("models", "big", upload.upload_id) == store.head_object("models", "big")


def test_index_is_wal_and_keys_are_bytes(store: Store) -> None:
    _put(store, "models", "ñ", b"x")
    connection = sqlite3.connect(store.db_path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        key, metadata = connection.execute("SELECT key, metadata FROM objects").fetchone()
    finally:
        connection.close()
    assert (key, json.loads(metadata)) == ("ñ".encode(), [])
