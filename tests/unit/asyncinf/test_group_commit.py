"""The queue's group commit (asyncinf/commits.py): writes waiting together share one commit, a failing
write is undone alone, every future resolves, and nothing is written after close."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from moorage.asyncinf.commits import GroupCommitter
from moorage.sqlite_wal import WalFile

SCHEMA = "CREATE TABLE IF NOT EXISTS t (n INTEGER NOT NULL UNIQUE)"


def committed(path: Path) -> list[int]:
    """What another connection sees: only committed rows."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT n FROM t ORDER BY rowid")]


def insert_row(conn: sqlite3.Connection, n: int) -> None:
    conn.execute("INSERT INTO t VALUES (?)", (n,))


def test_writes_waiting_together_share_one_commit_and_a_failure_is_undone_alone(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    file = WalFile(path, "test store", SCHEMA)
    commits = GroupCommitter(file)
    outside = sqlite3.connect(path, check_same_thread=False)
    started, release = threading.Event(), threading.Event()

    def first(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (0)")
        started.set()
        assert release.wait(30)
        return 0

    def insert(n: int) -> Future[int]:
        def write(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t VALUES (?)", (n,))
            # Rows committed before this write, as another connection sees them now.
            seen: int = outside.execute("SELECT count(*) FROM t").fetchone()[0]
            return seen

        return commits.submit(write)

    blocked = commits.submit(first)
    assert started.wait(30)  # the writer is inside the first commit: the next writes wait together
    waiting = [insert(n) for n in range(1, 21)]
    duplicate = insert(5)  # UNIQUE fails: only this write is undone
    after = insert(21)
    release.set()
    assert blocked.result(30) == 0
    assert [future.result(30) for future in waiting] == [1] * 20  # one commit: none saw another's row
    assert after.result(30) == 1
    with pytest.raises(sqlite3.IntegrityError):
        duplicate.result(30)
    commits.close()
    outside.close()
    file.close()
    assert committed(path) == list(range(22))


def test_every_write_from_many_threads_is_on_disk_when_its_future_resolves(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    file = WalFile(path, "test store", SCHEMA)
    commits = GroupCommitter(file)
    results: list[bool] = []

    def client(base: int) -> None:
        for n in range(base, base + 25):
            commits.submit(functools.partial(insert_row, n=n)).result(30)
            results.append(n in committed(path))

    threads = [threading.Thread(target=client, args=(base,)) for base in range(0, 200, 25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    commits.close()
    file.close()
    assert results == [True] * 200
    assert sorted(committed(path)) == list(range(200))


def test_close_commits_what_was_submitted_then_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    file = WalFile(path, "test store", SCHEMA)
    commits = GroupCommitter(file)
    pending = [commits.submit(functools.partial(insert_row, n=n)) for n in range(5)]
    commits.close()
    assert all(future.done() and future.exception() is None for future in pending)
    late = commits.submit(lambda conn: conn.execute("INSERT INTO t VALUES (99)"))
    with pytest.raises(sqlite3.ProgrammingError, match="the test store is closed"):
        late.result(0)
    file.close()
    assert committed(path) == [0, 1, 2, 3, 4]


def test_a_write_cancelled_before_its_commit_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    file = WalFile(path, "test store", SCHEMA)
    commits = GroupCommitter(file)
    started, release = threading.Event(), threading.Event()

    def first(conn: sqlite3.Connection) -> None:
        started.set()
        assert release.wait(30)

    blocked = commits.submit(first)
    assert started.wait(30)
    cancelled = commits.submit(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
    kept = commits.submit(lambda conn: conn.execute("INSERT INTO t VALUES (2)"))
    assert cancelled.cancel()
    release.set()
    blocked.result(30)
    kept.result(30)
    commits.close()
    file.close()
    assert committed(path) == [2]
