"""Executors: local worker processes and Ray share one store; every run is done exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.executors import Options, cpu_shares, run_local, run_ray
from harness.runner import Reporter, plan
from harness.store import Store
from harness.suite import expand, parse_suite
from tests.conftest import status_counts, tiny_suite

ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")


def grid(**over):
    data = tiny_suite(seeds=[0, 1, 2, 3], **over)
    data["budget"] = {"train_subset": 600, "test_subset": 300}
    return expand(parse_suite(data))


def results(store: Store) -> dict[str, tuple]:
    return {
        r["id"]: (
            r["status"],
            r["attempts"],
            (r["metrics"] or {}).get("final_acc"),
            (r["metrics"] or {}).get("final_train_loss"),
        )
        for r in store.runs()
    }


def train(tmp, runs, how, **kw):
    store = Store(tmp)
    todo = plan(store, "g", runs).todo
    counts = how(store, todo, Reporter(), Options(device="cpu", threads=1), **kw)
    return store, counts


def test_workers_are_pinned_to_disjoint_cpu_blocks():
    assert cpu_shares([0, 1], 2, 1) == [[0], [1]]
    assert cpu_shares([3, 1, 0, 2], 2, 2) == [[0, 1], [2, 3]]
    assert cpu_shares([4, 5, 6, 7, 8, 9], 3, 1) == [[4], [5], [6]]  # the CPUs this process may use, in order
    assert cpu_shares([0, 1], 2, 2) is None  # oversubscribed: the OS schedules, nothing is pinned
    assert cpu_shares([0, 1], 3, 1) is None


def test_two_local_workers_match_one(tmp_path):
    runs = grid()
    one, c1 = train(tmp_path / "one", runs, run_local, workers=1)
    two, c2 = train(tmp_path / "two", runs, run_local, workers=2)
    assert c1["done"] == c2["done"] == 4
    r1, r2 = results(one), results(two)
    assert r1 == r2  # same status, one attempt each, identical accuracy and loss
    assert all(v[0] == "done" and v[1] == 1 for v in r2.values())
    for r in runs:  # epoch rows written once each
        assert [e["epoch"] for e in two.epochs(r.id)] == [0]


def test_ray_matches_local_and_records_a_raising_task(tmp_path):
    runs = grid()
    bad = expand(
        parse_suite(
            {**tiny_suite(), "training": {"epochs": 1, "lr": 1e6}, "budget": {"train_subset": 600, "test_subset": 300}}
        )
    )
    local, _ = train(tmp_path / "local", runs, run_local, workers=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote, counts = train(tmp_path / "ray", runs + bad, run_ray)
    finally:
        ray.shutdown()
    assert counts == {"done": 4, "failed": 1, "skipped": 0}
    rr = results(remote)
    assert {k: v for k, v in rr.items() if k != bad[0].id} == results(local)
    assert rr[bad[0].id][0] == "failed"
    (failed,) = [r for r in remote.runs() if r["status"] == "failed"]
    assert "DivergedError" in failed["error"] and "NaN/inf" in failed["error"]
    for r in runs:
        assert [e["epoch"] for e in remote.epochs(r.id)] == [0]


@pytest.mark.parametrize(
    "how", [["--workers", "2"], pytest.param(["--executor", "ray"], marks=pytest.mark.slow)]
)  # Ray in the default run: test_ray_matches_local_and_records_a_raising_task
def test_killed_driver_then_rerun_finishes_without_duplicates(tmp_path, write_suite, how):
    data = tiny_suite(seeds=[0, 1, 2, 3, 4], training={"epochs": 2, "batch_size": 32, "lr": 0.05})
    data["budget"] = {"train_subset": 1500, "test_subset": 300}
    path = write_suite(data)
    out = tmp_path / "res"
    db = out / "results.sqlite"
    cmd = [sys.executable, "-m", "harness", "run", str(path), "--results", str(out), *how]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        c = status_counts(db)
        if c.get("done", 0) >= 1 and c.get("running", 0) >= 1:
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"grid never reached the middle: {status_counts(db)}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert status_counts(db).get("running", 0) >= 1
    time.sleep(1)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "interrupted run(s) will be trained again" in res.stdout
    if "--workers" in how:  # worker events reach the driver's reporter: a line per epoch in a log
        assert "epoch 2/2  loss " in res.stdout
    store = Store(out)
    rows = store.runs()
    assert len(rows) == 5 and all(r["status"] == "done" for r in rows)
    for r in rows:
        assert [e["epoch"] for e in store.epochs(r["id"])] == [0, 1]
