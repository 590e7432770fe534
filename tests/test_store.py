"""The store: atomic claims, archiving instead of overwriting, stale-run release."""

from __future__ import annotations

import os

from harness.store import Store
from harness.suite import RunSpec


def runs(n):
    return [
        RunSpec(
            f"r{i}", {"params": {}, "dataset": "d", "model": "m", "method": "full", "initialization": "i", "seed": i}
        )
        for i in range(n)
    ]


def test_add_is_idempotent_and_claim_is_exclusive(tmp_path):
    s = Store(tmp_path)
    assert s.add_runs("x", runs(3)) == 3
    assert s.add_runs("x", runs(4)) == 1
    assert s.claim("r0") is True
    assert s.claim("r0") is False  # a second worker cannot take it
    assert s.counts() == {"pending": 3, "running": 1, "done": 0, "failed": 0}


def test_finished_results_are_archived_when_reset(tmp_path):
    s = Store(tmp_path)
    s.add_runs("x", runs(1))
    s.claim("r0")
    s.add_epoch("r0", {"epoch": 0, "train_loss": 1.0, "test_acc": 0.5, "layers": []})
    s.finish("r0", "done", {"final_acc": 0.5})
    s.reset(["r0"])
    (h,) = s.history()
    assert '"final_acc": 0.5' in h["metrics"] and '"test_acc": 0.5' in h["epochs"]
    (r,) = s.runs()
    assert r["status"] == "pending" and r["metrics"] is None and s.epochs("r0") == []


def test_release_stale_only_frees_dead_processes(tmp_path):
    s = Store(tmp_path)
    s.add_runs("x", runs(2))
    s.claim("r0")  # claimed by this (live) process
    s.claim("r1")
    with s.transaction() as con:  # r1's owner is a pid that does not exist
        con.execute("UPDATE runs SET pid=? WHERE id='r1'", (2**22 + 12345,))
    assert os.getpid() != 2**22 + 12345
    assert s.release_stale() == ["r1"]
    assert {r["id"]: r["status"] for r in s.runs()} == {"r0": "running", "r1": "pending"}
