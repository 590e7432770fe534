"""What a user meets when things go wrong: stop signals, merging twice, read-only, damaged or full stores."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from harness.config import RunSpec
from harness.store import Store
from tests.conftest import cli, status_counts, tiny_suite

INTERRUPTED = "interrupted: finished runs are stored; run the same command again to resume"
DEAD_PID = 2**22 + 12345


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A suite of two tiny runs and its store, trained once: (suite file, results directory)."""
    tmp = tmp_path_factory.mktemp("trained")
    suite = write(tmp / "suite.yaml", tiny_suite(seeds=[0, 1]))
    res = cli("run", str(suite), "--results", str(tmp / "res"))
    assert res.returncode == 0, res.stdout + res.stderr
    return suite, tmp / "res"


@pytest.fixture
def copy(trained, tmp_path):
    """A fresh copy of the trained results directory: its database alone, as a closed store leaves it."""

    def make(name: str = "res") -> Path:
        (tmp_path / name).mkdir()
        src, dst = sqlite3.connect(trained[1] / "results.sqlite"), sqlite3.connect(tmp_path / name / "results.sqlite")
        src.backup(dst)
        src.close(), dst.close()
        assert os.listdir(tmp_path / name) == ["results.sqlite"]
        return tmp_path / name

    return make


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def mounts():
    """Mount helpers (root only, skipped where mounting is not permitted); unmounted afterwards."""
    done: list[Path] = []

    def read_only(src: Path, at: Path) -> Path:
        at.mkdir()
        if not _mount("--bind", str(src), str(at)):
            pytest.skip("mount --bind is not permitted here")
        done.append(at)
        if not _mount("-o", "remount,ro,bind", str(at)):
            pytest.skip("a read-only remount is not permitted here")
        return at

    def tmpfs(at: Path, size: str) -> Path:
        at.mkdir()
        if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at)):
            pytest.skip("mounting a tmpfs is not permitted here")
        done.append(at)
        return at

    yield read_only, tmpfs
    for m in reversed(done):
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def no_traceback(res) -> None:
    assert "Traceback" not in res.stdout + res.stderr


# -- item 2: SIGTERM / SIGHUP stop every worker ------------------------------------------------------------


def _running(db: Path) -> tuple[list[int], int]:
    """pids of running runs, and how many epochs they have stored so far."""
    if not db.exists():
        return [], 0
    con = sqlite3.connect(db, timeout=30)
    try:
        pids = [p for (p,) in con.execute("SELECT pid FROM runs WHERE status='running'")]
        n = con.execute("SELECT count(*) FROM epochs e JOIN runs r ON r.id=e.run_id WHERE r.status='running'")
        return pids, n.fetchone()[0]
    except sqlite3.OperationalError:
        return [], 0
    finally:
        con.close()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize(
    ("how", "sig", "code"),
    [
        (["--workers", "2"], signal.SIGTERM, 143),
        pytest.param(["--workers", "2"], signal.SIGHUP, 129, marks=pytest.mark.slow),
        pytest.param([], signal.SIGTERM, 143, marks=pytest.mark.slow),
        pytest.param(["--executor", "ray"], signal.SIGTERM, 143, marks=pytest.mark.slow),
    ],
    ids=["workers2-SIGTERM", "workers2-SIGHUP", "workers1-SIGTERM", "ray-SIGTERM"],
)
def test_stop_signal_stops_every_worker_and_gives_runs_back(tmp_path, how, sig, code):
    if "ray" in how:
        pytest.importorskip("ray")
    data = tiny_suite(seeds=[0, 1, 2, 3, 4], training={"epochs": 3, "batch_size": 32, "lr": 0.05})
    data["budget"] = {"train_subset": 2000, "test_subset": 300}
    suite = write(tmp_path / "suite.yaml", data)
    out, log = tmp_path / "res", tmp_path / "log"
    db = out / "results.sqlite"
    cmd = [sys.executable, "-m", "harness", "run", str(suite), "--results", str(out), *how]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        # training under way: a running run has stored an epoch (Ray's tasks store theirs when they end)
        while time.time() < deadline:
            pids, epochs = _running(db)
            if pids and (epochs or "ray" in how):
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        else:
            raise AssertionError(f"grid never got going: {status_counts(db)}")
        os.kill(proc.pid, sig)  # the driver only, as a service manager or a closed terminal would
        assert proc.wait(timeout=120) == code, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert INTERRUPTED in log.read_text()
    no_traceback(subprocess.CompletedProcess([], 0, log.read_text(), ""))
    after = status_counts(db)
    assert after.get("running", 0) == 0 and after.get("pending", 0) >= 1, after
    assert all(_gone(p) for p in pids)  # the workers stopped with the driver
    con = sqlite3.connect(db)
    partial = con.execute("SELECT count(*) FROM epochs e JOIN runs r ON r.id=e.run_id WHERE r.status='pending'")
    assert partial.fetchone()[0] == 0  # the given-back runs' partial epochs are dropped
    con.close()
    time.sleep(3)
    assert status_counts(db) == after  # nobody goes on training the grid


# -- item 3: merging is idempotent and streamed ------------------------------------------------------------


def _specs(n: int) -> list[RunSpec]:
    base = {"params": {}, "dataset": "d", "model": "m", "method": "full", "initialization": "i"}
    return [RunSpec(f"r{i}", {**base, "seed": i}) for i in range(n)]


def _finish(s: Store, rid: str, acc: float, epochs: int = 2) -> None:
    s.claim(rid)
    for e in range(epochs):
        s.add_epoch(rid, {"epoch": e, "train_loss": 1.0, "test_acc": acc, "layers": []})
    s.finish(rid, "done", {"final_acc": acc})


def _dump(db: Path) -> dict[str, list]:
    con = sqlite3.connect(db)
    try:
        return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}"))) for t in ("runs", "epochs", "history")}
    finally:
        con.close()


def test_merging_the_same_store_again_changes_nothing(tmp_path):
    ours, theirs = Store(tmp_path / "a"), Store(tmp_path / "b")
    ours.add_runs("x", _specs(3))
    theirs.add_runs("x", _specs(4))
    _finish(ours, "r0", 0.9)  # finished in both: ours kept, theirs archived once
    for rid, acc in (("r0", 0.1), ("r1", 0.8), ("r2", 0.7)):
        _finish(theirs, rid, acc)
    first = cli("merge", str(tmp_path / "b"), "--into", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    once = _dump(ours.path)
    assert len(once["history"]) == 1
    for _ in range(2):
        again = cli("merge", str(tmp_path / "b"), "--into", str(tmp_path / "a"))
        assert again.returncode == 0, again.stderr
        assert "added 0" in again.stdout and "kept ours 0" in again.stdout and "history 0" in again.stdout
        assert _dump(ours.path) == once


def test_merge_streams_a_large_store(tmp_path):
    src = Store(tmp_path / "big")
    specs = _specs(800)
    src.add_runs("x", specs)
    layers = [{"name": f"layer{i}", "rank": 8, "stats": list(range(40))} for i in range(8)]
    with src.transaction() as con:
        con.execute("UPDATE runs SET status='done', metrics='{\"final_acc\": 0.5}', finished=1.0")
        con.executemany(
            "INSERT INTO epochs (run_id, epoch, train_loss, test_acc, layers) VALUES (?, ?, 1.0, 0.5, ?)",
            [(r.id, e, json.dumps(layers)) for r in specs for e in range(10)],
        )
    size = src.path.stat().st_size
    assert size > 10 * 2**20
    dest = Store(tmp_path / "dest")
    tracemalloc.start()
    try:
        counts = dest.merge_from(src)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts["added"] == 800 and len(dest.epochs("r7")) == 10
    assert peak < size / 5, f"merge held {peak / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB store"


# -- item 4: a read-only store can be read ----------------------------------------------------------------


def test_read_only_store_can_be_read(trained, copy, mounts, tmp_path):
    read_only, _ = mounts
    ro = read_only(copy(), tmp_path / "ro")
    before = (digest(ro / "results.sqlite"), sorted(os.listdir(ro)))
    shown = cli("status", str(ro))
    assert shown.returncode == 0, shown.stderr
    assert "done" in shown.stdout and "2" in shown.stdout
    suite_status = cli("status", str(trained[0]), "--results", str(ro))
    assert suite_status.returncode == 0, suite_status.stderr
    exported = cli("export", str(ro), "--out", str(tmp_path / "runs.csv"))
    assert exported.returncode == 0, exported.stderr
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == 3
    rep = cli("report", str(ro), "--out", str(tmp_path / "report"), "--no-plots")
    assert rep.returncode == 0, rep.stderr
    assert (digest(ro / "results.sqlite"), sorted(os.listdir(ro))) == before


def test_writing_a_read_only_store_says_the_directory_is_read_only(trained, copy, mounts, tmp_path):
    read_only, _ = mounts
    ro = read_only(copy(), tmp_path / "ro")
    for args in (
        ["run", str(trained[0]), "--results", str(ro), "--force"],
        ["merge", str(trained[1]), "--into", str(ro)],
    ):
        res = cli(*args)
        assert res.returncode == 3, res.stdout + res.stderr
        assert f"results directory {ro} is read-only" in res.stderr
        no_traceback(res)


# -- item 5: damaged store, full disk ---------------------------------------------------------------------


def _damage(db: Path, how: str) -> None:
    data = bytearray(db.read_bytes())
    if how == "header":
        data[:16] = b"this is no db..."
    else:  # every page but the first (the schema) overwritten
        data[4096:] = bytes((i * 7 + 3) % 251 for i in range(len(data) - 4096))
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["header", "pages"])
def test_damaged_store_gives_one_message_and_is_left_untouched(trained, copy, how):
    res_dir = copy()
    db = res_dir / "results.sqlite"
    _damage(db, how)
    before = digest(db)
    fresh = res_dir.parent / "fresh"
    for args in (
        ["status", str(res_dir)],
        ["export", str(res_dir)],
        ["run", str(trained[0]), "--results", str(res_dir)],
        ["merge", str(res_dir), "--into", str(fresh)],
    ):
        res = cli(*args)
        assert res.returncode == 5, (args, res.stdout + res.stderr)
        assert f"{db} is damaged" in res.stderr and f'sqlite3 {db} ".recover"' in res.stderr, res.stderr
        no_traceback(res)
        assert digest(db) == before  # readers may leave SQLite's empty -wal and -shm files beside it
        assert all(f.stat().st_size == 0 for f in res_dir.glob("results.sqlite-wal"))


class _FullDisk(sqlite3.Connection):
    """A connection whose disk fills up when an epoch is stored: SQLite rolls back and says so."""

    def execute(self, sql, *args):
        if sql.startswith("INSERT OR REPLACE INTO epochs"):
            super().execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


def test_full_disk_mid_run_releases_the_run_and_says_so(trained, copy, monkeypatch):
    res_dir = copy()
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real(*a, factory=_FullDisk, **k))
    res = cli("run", str(trained[0]), "--results", str(res_dir), "--force")
    monkeypatch.undo()
    assert res.returncode == 4, res.stdout + res.stderr
    db = res_dir / "results.sqlite"
    assert f"no space left to write {db} (database or disk is full): free space" in res.stderr
    assert "cannot rollback" not in res.stderr
    no_traceback(res)
    assert status_counts(db) == {"pending": 2}  # given back, not left running or recorded failed


def test_full_disk_on_a_real_tiny_filesystem(trained, copy, mounts, tmp_path):
    _, tmpfs = mounts
    disk = tmpfs(tmp_path / "disk", "2m")
    res_dir = Path(shutil.copytree(copy(), disk / "res"))
    with open(disk / "filler", "wb", buffering=0) as f:  # fill the disk to the last block
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
    res = cli("run", str(trained[0]), "--results", str(res_dir), "--force")
    assert res.returncode == 4, res.stdout + res.stderr
    assert f"no space left to write {res_dir / 'results.sqlite'}" in res.stderr
    no_traceback(res)
    (disk / "filler").unlink()
    assert status_counts(res_dir / "results.sqlite") == {"done": 2}  # nothing lost


# -- status: runs of a dead process are interrupted --------------------------------------------------------


def test_status_shows_runs_of_a_dead_process_as_interrupted(tmp_path):
    s = Store(tmp_path)
    s.add_runs("x", _specs(3))
    s.claim("r0")  # claimed by this live process: running
    s.claim("r1")
    with s.transaction() as con:
        con.execute("UPDATE runs SET pid=? WHERE id='r1'", (DEAD_PID,))
    res = cli("status", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert re.search(r"running\s+│ 1 ", res.stdout) and re.search(r"interrupted\s+│ 1 ", res.stdout), res.stdout
    host = socket.gethostname()
    assert f"interrupted d/m/full/i/s1 (host {host}, pid {DEAD_PID};" in res.stdout
    assert f"running d/m/full/i/s0 (host {host}, pid {os.getpid()})" in res.stdout
