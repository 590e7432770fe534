"""The store: atomic claims, archiving instead of overwriting, stale-run release."""

from __future__ import annotations

import os

from harness.config import RunSpec
from harness.store import Store


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


def _finish(s: Store, rid: str, acc: float, epochs: int = 2) -> None:
    s.claim(rid)
    for e in range(epochs):
        s.add_epoch(rid, {"epoch": e, "train_loss": 1.0, "test_acc": acc, "layers": []})
    s.finish(rid, "done", {"final_acc": acc})


def test_merge_takes_missing_and_pending_runs_and_never_overwrites(tmp_path):
    ours, theirs = Store(tmp_path / "a"), Store(tmp_path / "b")
    ours.add_runs("x", runs(2))  # r0 done here, r1 pending here
    _finish(ours, "r0", 0.9)
    theirs.add_runs("x", runs(4))  # r0, r1, r2 done there, r3 still pending there
    for rid, acc in (("r0", 0.1), ("r1", 0.8), ("r2", 0.7)):
        _finish(theirs, rid, acc, epochs=3)
    counts = ours.merge_from(theirs)
    assert counts == {"added": 1, "replaced_pending": 1, "kept_ours": 1, "pending": 1, "history": 0, "already_here": 0}
    by_id = {r["id"]: r for r in ours.runs()}
    assert by_id["r0"]["metrics"] == {"final_acc": 0.9}  # ours kept ...
    (h,) = ours.history()
    assert h["run_id"] == "r0" and '"final_acc": 0.1' in h["metrics"]  # ... theirs archived, not lost
    assert by_id["r1"]["status"] == "done" and by_id["r1"]["metrics"] == {"final_acc": 0.8}
    assert len(ours.epochs("r1")) == 3 and len(ours.epochs("r2")) == 3 and len(ours.epochs("r0")) == 2
    assert by_id["r3"]["status"] == "pending"
    # merging again changes nothing: no run taken, no result archived twice
    before = (ours.runs(), ours.epochs(), ours.history())
    again = ours.merge_from(theirs)
    assert again == {"added": 0, "replaced_pending": 0, "kept_ours": 0, "pending": 0, "history": 0, "already_here": 3}
    assert (ours.runs(), ours.epochs(), ours.history()) == before


def test_cli_merge_reports_what_it_took(tmp_path):
    from tests.conftest import cli

    ours, theirs = Store(tmp_path / "a"), Store(tmp_path / "b")
    theirs.add_runs("x", runs(1))
    _finish(theirs, "r0", 0.5)
    res = cli("merge", str(tmp_path / "b"), "--into", str(tmp_path / "a"))
    assert res.returncode == 0, res.stderr and "added 1" in res.stdout
    assert ours.runs()[0]["metrics"] == {"final_acc": 0.5}
    missing = cli("merge", str(tmp_path / "nowhere"), "--into", str(tmp_path / "a"))
    assert missing.returncode == 2 and "no results store" in missing.stderr
