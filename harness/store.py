"""The results store: one SQLite database (WAL mode) per results directory.

Tables:
  * ``runs``: one row per run id: resolved config, status (pending, running, done, failed), error,
    metrics (JSON), attempts, who claimed it (host, pid) and timestamps.
  * ``epochs``: one row per finished epoch of a run (loss, accuracy, time, per-layer stats).
  * ``history``: earlier results of runs that were run again (``--force``, ``--rerun-failed``); nothing
    a run produced is ever overwritten silently.

Runs are claimed atomically (``claim``) so several workers can share one store. Readers open the database
read-only; what cannot be done is raised as a :class:`StoreError` (see :mod:`harness.store_errors`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from harness.config import STATUSES, RunSpec, RunStatus
from harness.database import Database
from harness.store_errors import StoreError

DB_NAME = "results.sqlite"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    label TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    error TEXT,
    metrics TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    pid INTEGER,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    epoch INTEGER NOT NULL,
    train_loss REAL,
    test_acc REAL,
    test_loss REAL,
    seconds REAL,
    lr REAL,
    layers TEXT,
    val_acc REAL,
    val_loss REAL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS history (
    run_id TEXT NOT NULL,
    attempts INTEGER,
    status TEXT,
    error TEXT,
    metrics TEXT,
    epochs TEXT,
    started REAL,
    finished REAL,
    archived REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS history_run ON history (run_id);
"""
__all__ = ["DB_NAME", "Store", "StoreError", "interrupted"]
PENDING, RUNNING = RunStatus.PENDING.value, RunStatus.RUNNING.value
SETTLED = tuple(s.value for s in RunStatus if s.settled)  # done, failed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _give_back(con: sqlite3.Connection, rid: str) -> None:
    """A running run back to pending, its partial epochs dropped."""
    cur = con.execute("UPDATE runs SET status=?, host=NULL, pid=NULL WHERE id=? AND status=?", (PENDING, rid, RUNNING))
    if cur.rowcount:  # a run that has meanwhile settled keeps its epochs
        con.execute("DELETE FROM epochs WHERE run_id=?", (rid,))


def _insert(con: sqlite3.Connection, table: str, row: dict[str, Any], replace: bool = False) -> None:
    """Insert a row given as a column -> value mapping (the columns are the store's own)."""
    cols = list(row)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    con.execute(
        f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols]
    )


def _archive(con: sqlite3.Connection, run: Any, epochs: list[dict[str, Any]], now: float) -> None:
    """Keep a run's result and epochs in ``history`` (before it is reset, or when a merge keeps ours)."""
    _insert(
        con,
        "history",
        {
            "run_id": run["id"],
            "attempts": run["attempts"],
            "status": run["status"],
            "error": run["error"],
            "metrics": run["metrics"],
            "epochs": json.dumps(epochs),
            "started": run["started"],
            "finished": run["finished"],
            "archived": now,
        },
    )


def interrupted(run: Any) -> bool:
    """A run marked running by a process of this host that no longer exists (killed, or its disk filled)."""
    if run["status"] != RUNNING or run["host"] != socket.gethostname():
        return False
    return run["pid"] is None or not _pid_alive(run["pid"])


class Store(Database):
    """Access to one results directory's database. Readers open it read-only (a read-only mount can be read);
    errors come out as :class:`~harness.store_errors.StoreError` saying what went wrong and what to do."""

    schema = _SCHEMA
    filename = DB_NAME

    def migrate(self, con: sqlite3.Connection) -> None:
        """Stores made before the validation split lack the epochs' validation columns: add them (empty)."""
        have = {row["name"] for row in con.execute("PRAGMA table_info(epochs)")}
        for column in ("val_acc", "val_loss"):
            if column not in have:
                con.execute(f"ALTER TABLE epochs ADD COLUMN {column} REAL")

    # -- grid bookkeeping -------------------------------------------------------------------------
    def add_runs(self, suite: str, runs: Iterable[RunSpec]) -> int:
        """Insert runs not yet in the store as pending; returns how many were new."""
        now = time.time()
        with self.transaction() as con:
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO runs (id, suite, label, config, status, created) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.id, suite, r.label, json.dumps(r.config, sort_keys=True), PENDING, now) for r in runs],
            )
            return con.total_changes - before

    def release_stale(self) -> list[str]:
        """Runs marked running by a process of this host that no longer exists go back to pending."""
        with self.transaction() as con:
            rows = con.execute("SELECT id, status, host, pid FROM runs WHERE status=?", (RUNNING,)).fetchall()
            stale = [r["id"] for r in rows if interrupted(r)]
            for rid in stale:
                _give_back(con, rid)
            return stale

    def reset(self, ids: Iterable[str]) -> None:
        """Send finished or failed runs back to pending, archiving their results in ``history``."""
        now = time.time()
        with self.transaction() as con:
            for rid in ids:
                row = con.execute("SELECT * FROM runs WHERE id=?", (rid,)).fetchone()
                if row is None or row["status"] not in SETTLED:
                    continue
                epochs = [dict(e) for e in con.execute("SELECT * FROM epochs WHERE run_id=? ORDER BY epoch", (rid,))]
                _archive(con, row, epochs, now)
                con.execute("DELETE FROM epochs WHERE run_id=?", (rid,))
                con.execute("UPDATE runs SET status=?, error=NULL, metrics=NULL WHERE id=?", (PENDING, rid))

    def claim(self, rid: str) -> bool:
        """Atomically mark a pending run as running by this process; False if someone else has it."""
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE runs SET status=?, host=?, pid=?, started=?, attempts=attempts+1 WHERE id=? AND status=?",
                (RUNNING, socket.gethostname(), os.getpid(), time.time(), rid, PENDING),
            )
            if cur.rowcount == 1:
                con.execute("DELETE FROM epochs WHERE run_id=?", (rid,))
            return cur.rowcount == 1

    def release(self, rid: str) -> None:
        """Give an interrupted run back (status pending, partial epochs dropped)."""
        with self.transaction() as con:
            _give_back(con, rid)

    def release_own(self, ids: Iterable[str]) -> None:
        """Give back those of ``ids`` that this process holds (a driver stopped while it was claiming)."""
        me = (socket.gethostname(), os.getpid())
        with self.transaction() as con:
            for rid in ids:
                row = con.execute("SELECT host, pid FROM runs WHERE id=?", (rid,)).fetchone()
                if row is not None and (row["host"], row["pid"]) == me:
                    _give_back(con, rid)

    def add_epoch(self, rid: str, row: dict[str, Any]) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO epochs (run_id, epoch, train_loss, test_acc, test_loss, seconds, lr, layers,"
                " val_acc, val_loss) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    row["epoch"],
                    row.get("train_loss"),
                    row.get("test_acc"),
                    row.get("test_loss"),
                    row.get("seconds"),
                    row.get("lr"),
                    json.dumps(row.get("layers")),
                    row.get("val_acc"),
                    row.get("val_loss"),
                ),
            )

    def finish(self, rid: str, status: str, metrics: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Settle a run: done with its metrics, or failed with its error text."""
        status = RunStatus(status)
        assert status.settled
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status=?, metrics=?, error=?, finished=?, host=NULL, pid=NULL WHERE id=?",
                (status.value, json.dumps(metrics) if metrics is not None else None, error, time.time(), rid),
            )

    def merge_from(self, other: Store) -> dict[str, int]:
        """Bring another store's finished runs into this one (e.g. parts of a grid run on other machines).

        A run this store lacks, or holds only as pending, takes the other's row and epochs. A run finished in
        both keeps this store's result and archives the other's in ``history``: nothing is overwritten. Runs
        the other store has not finished are added as pending; its history is copied. Merging the same store
        again changes nothing. The other store is read row by row (a large one is never held in memory).
        """
        if not other.exists():
            raise FileNotFoundError(f"no results store at {other.path}")
        if other.path.resolve() == self.path.resolve():
            raise ValueError(f"cannot merge {self.path} into itself")
        with other.reading() as src, self.transaction() as con:
            return _take(con, other, src)

    # -- reading ----------------------------------------------------------------------------------
    def runs(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """All runs (or the given ones) with config and metrics decoded."""
        wanted = set(ids) if ids is not None else None
        out = []
        for r in self._all("SELECT * FROM runs ORDER BY created, rowid"):
            if wanted is not None and r["id"] not in wanted:
                continue
            r["config"] = json.loads(r["config"])
            r["metrics"] = json.loads(r["metrics"]) if r["metrics"] else None
            out.append(r)
        return out

    def epochs(self, rid: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM epochs" + (" WHERE run_id=?" if rid else "") + " ORDER BY run_id, epoch"
        rows = self._all(q, (rid,) if rid else ())
        for r in rows:
            r["layers"] = json.loads(r["layers"]) if r["layers"] else None
        return rows

    def history(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM history ORDER BY archived")

    def counts(self, ids: Iterable[str] | None = None) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.runs(ids):
            out[r["status"]] += 1
        return out


def _known(con: sqlite3.Connection, row: dict[str, Any], archived: float | None = None) -> bool:
    """Whether this store's history already holds the result ``row`` (a run or a history row) carries."""
    where = "run_id=? AND status IS ? AND metrics IS ? AND started IS ? AND finished IS ?"
    args = [row.get("run_id", row.get("id")), row["status"], row["metrics"], row["started"], row["finished"]]
    if archived is not None:
        where, args = where + " AND archived=?", [*args, archived]
    return con.execute(f"SELECT 1 FROM history WHERE {where}", args).fetchone() is not None


def _same(a: Any, b: dict[str, Any]) -> bool:
    return all(a[k] == b[k] for k in ("status", "metrics", "started", "finished"))


def _take(con: sqlite3.Connection, other: Store, src: sqlite3.Connection) -> dict[str, int]:
    """Merge ``other``'s rows (read from ``src``) into this transaction (see :meth:`Store.merge_from`).

    A result already here, as the run's row or in its history, is not archived again: a merge is idempotent.
    """
    counts = {"added": 0, "replaced_pending": 0, "kept_ours": 0, PENDING: 0, "history": 0, "already_here": 0}
    now = time.time()
    for run in other._rows(src, "SELECT * FROM runs ORDER BY created, rowid"):
        mine = con.execute("SELECT * FROM runs WHERE id=?", (run["id"],)).fetchone()
        if run["status"] not in SETTLED:
            if mine is None:
                con.execute(
                    "INSERT INTO runs (id, suite, label, config, status, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (run["id"], run["suite"], run["label"], run["config"], PENDING, run["created"]),
                )
                counts[PENDING] += 1
            continue
        epochs = other._rows(src, "SELECT * FROM epochs WHERE run_id=? ORDER BY epoch", (run["id"],))
        if mine is not None and mine["status"] in (*SETTLED, RUNNING):
            if _same(mine, run) or _known(con, run):
                counts["already_here"] += 1
            else:
                _archive(con, run, list(epochs), now)
                counts["kept_ours"] += 1
            continue
        counts["added" if mine is None else "replaced_pending"] += 1
        _insert(con, "runs", run, replace=True)
        con.execute("DELETE FROM epochs WHERE run_id=?", (run["id"],))
        for e in epochs:
            _insert(con, "epochs", e)
    for h in other._rows(src, "SELECT * FROM history"):
        if not _known(con, h, h["archived"]):
            _insert(con, "history", h)
            counts["history"] += 1
    return counts
