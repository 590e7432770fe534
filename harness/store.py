"""The results store: one SQLite database (WAL mode) per results directory.

Tables:
  * ``runs``: one row per run id: resolved config, status (pending, running, done, failed), error,
    metrics (JSON), attempts, who claimed it (host, pid) and timestamps.
  * ``epochs``: one row per finished epoch of a run (loss, accuracy, time, per-layer stats).
  * ``history``: earlier results of runs that were run again (``--force``, ``--rerun-failed``); nothing
    a run produced is ever overwritten silently.

Runs are claimed atomically (``claim``) so several workers can share one store.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.suite import RunSpec

STATUSES = ("pending", "running", "done", "failed")
DB_NAME = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    label TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
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
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _insert(con: sqlite3.Connection, table: str, row: dict[str, Any], replace: bool = False) -> None:
    """Insert a row given as a column -> value mapping (the columns are the store's own)."""
    cols = list(row)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    con.execute(f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [row[c] for c in cols])


def _archive(con: sqlite3.Connection, run: Any, epochs: list[dict[str, Any]], now: float) -> None:
    """Keep a run's result and epochs in ``history`` (before it is reset, or when a merge keeps ours)."""
    _insert(con, "history", {"run_id": run["id"], "attempts": run["attempts"], "status": run["status"],
                             "error": run["error"], "metrics": run["metrics"], "epochs": json.dumps(epochs),
                             "started": run["started"], "finished": run["finished"], "archived": now})


class Store:
    """Access to one results directory's database."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.path = self.dir / DB_NAME

    def _connect(self) -> sqlite3.Connection:
        self.dir.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA busy_timeout=60000")
        con.executescript(_SCHEMA)
        return con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE) that commits on success and rolls back on error."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def exists(self) -> bool:
        return self.path.is_file()

    # -- grid bookkeeping -------------------------------------------------------------------------
    def add_runs(self, suite: str, runs: Iterable[RunSpec]) -> int:
        """Insert runs not yet in the store as pending; returns how many were new."""
        now = time.time()
        with self.transaction() as con:
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO runs (id, suite, label, config, status, created) "
                "VALUES (?, ?, ?, ?, 'pending', ?)",
                [(r.id, suite, r.label, json.dumps(r.config, sort_keys=True), now) for r in runs],
            )
            return con.total_changes - before

    def release_stale(self) -> list[str]:
        """Runs marked running by a process of this host that no longer exists go back to pending."""
        host = socket.gethostname()
        with self.transaction() as con:
            rows = con.execute("SELECT id, pid FROM runs WHERE status='running' AND host=?", (host,)).fetchall()
            stale = [r["id"] for r in rows if r["pid"] is None or not _pid_alive(r["pid"])]
            for rid in stale:
                con.execute("DELETE FROM epochs WHERE run_id=?", (rid,))
                con.execute("UPDATE runs SET status='pending', host=NULL, pid=NULL WHERE id=?", (rid,))
            return stale

    def reset(self, ids: Iterable[str]) -> None:
        """Send finished or failed runs back to pending, archiving their results in ``history``."""
        now = time.time()
        with self.transaction() as con:
            for rid in ids:
                row = con.execute("SELECT * FROM runs WHERE id=?", (rid,)).fetchone()
                if row is None or row["status"] not in ("done", "failed"):
                    continue
                epochs = [dict(e) for e in con.execute("SELECT * FROM epochs WHERE run_id=? ORDER BY epoch", (rid,))]
                _archive(con, row, epochs, now)
                con.execute("DELETE FROM epochs WHERE run_id=?", (rid,))
                con.execute("UPDATE runs SET status='pending', error=NULL, metrics=NULL WHERE id=?", (rid,))

    def claim(self, rid: str) -> bool:
        """Atomically mark a pending run as running by this process; False if someone else has it."""
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE runs SET status='running', host=?, pid=?, started=?, attempts=attempts+1 "
                "WHERE id=? AND status='pending'",
                (socket.gethostname(), os.getpid(), time.time(), rid),
            )
            if cur.rowcount == 1:
                con.execute("DELETE FROM epochs WHERE run_id=?", (rid,))
            return cur.rowcount == 1

    def release(self, rid: str) -> None:
        """Give an interrupted run back (status pending, partial epochs dropped)."""
        with self.transaction() as con:
            con.execute("DELETE FROM epochs WHERE run_id=?", (rid,))
            con.execute("UPDATE runs SET status='pending', host=NULL, pid=NULL WHERE id=? AND status='running'", (rid,))

    def add_epoch(self, rid: str, row: dict[str, Any]) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO epochs (run_id, epoch, train_loss, test_acc, test_loss, seconds, lr, layers)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    row["epoch"],
                    row.get("train_loss"),
                    row.get("test_acc"),
                    row.get("test_loss"),
                    row.get("seconds"),
                    row.get("lr"),
                    json.dumps(row.get("layers")),
                ),
            )

    def finish(self, rid: str, status: str, metrics: dict[str, Any] | None = None, error: str | None = None) -> None:
        assert status in ("done", "failed")
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status=?, metrics=?, error=?, finished=?, host=NULL, pid=NULL WHERE id=?",
                (status, json.dumps(metrics) if metrics is not None else None, error, time.time(), rid),
            )

    def merge_from(self, other: Store) -> dict[str, int]:
        """Bring another store's finished runs into this one (e.g. parts of a grid run on other machines).

        A run this store lacks, or holds only as pending, takes the other's row and epochs. A run finished in
        both keeps this store's result and archives the other's in ``history``: nothing is overwritten. Runs
        the other store has not finished are added as pending; its history is copied.
        """
        if not other.exists():
            raise FileNotFoundError(f"no results store at {other.path}")
        if other.path.resolve() == self.path.resolve():
            raise ValueError(f"cannot merge {self.path} into itself")
        src = other._connect()
        try:
            runs = [dict(r) for r in src.execute("SELECT * FROM runs ORDER BY created, rowid")]
            epochs: dict[str, list[dict[str, Any]]] = {}
            for e in src.execute("SELECT * FROM epochs ORDER BY run_id, epoch"):
                epochs.setdefault(e["run_id"], []).append(dict(e))
            history = [dict(h) for h in src.execute("SELECT * FROM history")]
        finally:
            src.close()
        counts = {"added": 0, "replaced_pending": 0, "kept_ours": 0, "pending": 0, "history": 0}
        now = time.time()
        with self.transaction() as con:
            for run in runs:
                mine = con.execute("SELECT status FROM runs WHERE id=?", (run["id"],)).fetchone()
                finished = run["status"] in ("done", "failed")
                if not finished:
                    if mine is None:
                        con.execute("INSERT INTO runs (id, suite, label, config, status, created) "
                                    "VALUES (?, ?, ?, ?, 'pending', ?)",
                                    (run["id"], run["suite"], run["label"], run["config"], run["created"]))
                        counts["pending"] += 1
                    continue
                if mine is not None and mine["status"] in ("done", "failed", "running"):
                    _archive(con, run, epochs.get(run["id"], []), now)
                    counts["kept_ours"] += 1
                    continue
                counts["added" if mine is None else "replaced_pending"] += 1
                _insert(con, "runs", run, replace=True)
                con.execute("DELETE FROM epochs WHERE run_id=?", (run["id"],))
                for e in epochs.get(run["id"], []):
                    _insert(con, "epochs", e)
            for h in history:
                seen = con.execute("SELECT 1 FROM history WHERE run_id=? AND archived=?",
                                   (h["run_id"], h["archived"])).fetchone()
                if seen is None:
                    _insert(con, "history", h)
                    counts["history"] += 1
        return counts

    # -- reading ----------------------------------------------------------------------------------
    def runs(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """All runs (or the given ones) with config and metrics decoded."""
        if not self.exists():
            return []
        con = self._connect()
        try:
            rows = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY created, rowid")]
        finally:
            con.close()
        wanted = set(ids) if ids is not None else None
        out = []
        for r in rows:
            if wanted is not None and r["id"] not in wanted:
                continue
            r["config"] = json.loads(r["config"])
            r["metrics"] = json.loads(r["metrics"]) if r["metrics"] else None
            out.append(r)
        return out

    def epochs(self, rid: str | None = None) -> list[dict[str, Any]]:
        if not self.exists():
            return []
        con = self._connect()
        try:
            q = "SELECT * FROM epochs" + (" WHERE run_id=?" if rid else "") + " ORDER BY run_id, epoch"
            rows = [dict(r) for r in con.execute(q, (rid,) if rid else ())]
        finally:
            con.close()
        for r in rows:
            r["layers"] = json.loads(r["layers"]) if r["layers"] else None
        return rows

    def history(self) -> list[dict[str, Any]]:
        if not self.exists():
            return []
        con = self._connect()
        try:
            return [dict(r) for r in con.execute("SELECT * FROM history ORDER BY archived")]
        finally:
            con.close()

    def counts(self, ids: Iterable[str] | None = None) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.runs(ids):
            out[r["status"]] += 1
        return out
