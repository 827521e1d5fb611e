"""Opening a SQLite file the way every durable store of moorage does, and its write transactions.

WAL with `synchronous=FULL` (a commit survives `kill -9` and power loss), no implicit transactions
(`isolation_level=None`: every write says `BEGIN IMMEDIATE` itself, so read-modify-writes never race),
one connection shared by the store's thread under a lock. asyncinf/store.py and transform/store.py use
this; control/store.py still opens its file by hand, the same way.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from moorage.errors import ConfigError

__all__ = ["WalFile", "open_wal", "write_transaction"]


def open_wal(path: Path) -> sqlite3.Connection:
    """The connection, in WAL mode with full sync; ConfigError when the file system refuses WAL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise ConfigError(f"{path}: SQLite could not switch to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def write_transaction(
    lock: threading.Lock, conn: sqlite3.Connection | None, what: str
) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` … `COMMIT` under `lock`, rolled back on any error; `what` names a closed store."""
    with lock:
        if conn is None:
            raise sqlite3.ProgrammingError(f"the {what} is closed")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


class WalFile:
    """One store's SQLite file: its connection (opened with `open_wal`), its lock and its transactions."""

    def __init__(self, path: Path, what: str, schema: str = "") -> None:
        """`schema`: `;`-separated statements (CREATE ... IF NOT EXISTS) run in one write transaction;
        the file is closed again if they fail."""
        self.what = what  # for "the <what> is closed"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_wal(path)
        try:
            with self.write() as conn:
                for statement in schema.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        except BaseException:
            self.close()
            raise

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._lock, self._conn, self.what)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
