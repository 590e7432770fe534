"""One SQLite file in a directory (WAL mode) opened safely: writers check it and create its schema once,
readers open it read-only (so a read-only mount can be read), and every SQLite or OS error comes out as a
:class:`~harness.store_errors.StoreError` naming the file, the cause and what to do."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from harness.store_errors import explain


class Database:
    """Connections to ``directory/filename``; a subclass sets ``schema`` (run once by the first writer)."""

    schema = ""
    filename = "database.sqlite"

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.path = self.dir / self.filename
        self._ready = False  # this store's file checked and its schema in place (writers, once)

    @contextmanager
    def _guarded(self, writing: bool) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            err = explain(exc, self.path, writing)
            if err is None:
                raise
            raise err from exc

    def _connect(self, write: bool = True) -> sqlite3.Connection:
        if write:
            self.dir.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        else:
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA busy_timeout=60000")
            if write and not self._ready:
                self._check(con)
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(self.schema)
                self.migrate(con)
                self._ready = True
            if write:
                con.execute("PRAGMA synchronous=NORMAL")
            else:
                con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            con.close()
            if write or os.access(self.dir, os.W_OK):
                raise
            # a WAL store in a read-only directory: its -shm file cannot be made; nothing can write it either
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True, isolation_level=None)
            con.row_factory = sqlite3.Row
        except BaseException:
            con.close()
            raise
        return con

    def migrate(self, con: sqlite3.Connection) -> None:
        """After the schema, before the first write: bring a file made by an older version up to it (columns added
        since; nothing is ever dropped or rewritten). Default: nothing."""

    def _check(self, con: sqlite3.Connection) -> None:
        """Before the first write: a damaged file is refused (and left untouched), not written into."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise sqlite3.DatabaseError("file is not a database")
        found = con.execute("PRAGMA quick_check(1)").fetchone()[0]
        if found != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {found}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE) that commits on success and rolls back on error."""
        with self._guarded(writing=True):
            con = self._connect()
            try:
                con.execute("BEGIN IMMEDIATE")
                yield con
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                    with suppress(sqlite3.Error):
                        con.execute("ROLLBACK")
                raise
            finally:
                con.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection (the store must exist)."""
        with self._guarded(writing=False):
            con = self._connect(write=False)
            try:
                yield con
            finally:
                con.close()

    def _rows(self, con: sqlite3.Connection, sql: str, args: tuple = ()) -> Iterator[dict[str, Any]]:
        """Rows of a query on a :meth:`reading` connection, one at a time; errors name this store."""
        with self._guarded(writing=False):
            for row in con.execute(sql, args):
                yield dict(row)

    def _all(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        if not self.exists():
            return []
        with self.reading() as con:
            return list(self._rows(con, sql, args))

    def exists(self) -> bool:
        return self.path.is_file()
