"""A grid killed with SIGKILL mid-run resumes: every run done exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from harness.store import Store
from harness.suite import expand, load_suite
from tests.conftest import status_counts, tiny_suite


def test_sigkill_mid_grid_then_resume(tmp_path, write_suite):
    data = tiny_suite(seeds=[0, 1, 2], training={"epochs": 3, "batch_size": 32, "lr": 0.05})
    data["budget"] = {"train_subset": 2000, "test_subset": 300}
    path = write_suite(data)
    out = tmp_path / "res"
    db = out / "results.sqlite"
    cmd = [sys.executable, "-m", "harness", "run", str(path), "--results", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until one run is done and the next is in its epochs
        st = status_counts(db)
        con = sqlite3.connect(db, timeout=30) if db.exists() else None
        epochs = (
            con.execute(
                "SELECT count(*) FROM epochs e JOIN runs r ON r.id=e.run_id WHERE r.status='running'"
            ).fetchone()[0]
            if con and st
            else 0
        )
        if con:
            con.close()
        if st.get("done", 0) >= 1 and st.get("running", 0) == 1 and epochs >= 1:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"grid never reached the middle: {status_counts(db)}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    st = status_counts(db)
    assert st.get("running") == 1 and st.get("done", 0) >= 1 and st.get("done", 0) < 3

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "1 interrupted run(s) will be trained again" in res.stdout
    store = Store(out)
    runs = store.runs()
    ids = {r.id for r in expand(load_suite(path))}
    assert {r["id"] for r in runs} == ids and all(r["status"] == "done" for r in runs)
    for r in runs:
        epochs = store.epochs(r["id"])
        assert [e["epoch"] for e in epochs] == [0, 1, 2]  # no duplicate or missing epoch rows
    assert sorted(r["attempts"] for r in runs).count(2) == 1  # only the killed run trained twice
