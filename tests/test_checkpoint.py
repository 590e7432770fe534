"""Checkpoints: a run killed with SIGKILL during an epoch resumes from its last finished epoch, and ends exactly as
the uninterrupted run does (metrics, every epoch row, the model file), for the dense model, a fixed-rank method and
TDLRT (whose ranks change between epochs); checkpoints are written atomically, refused when damaged or of another
run, deleted when a run finishes unless kept, and a method's own state survives."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from harness.checkpoint import (
    FORMAT,
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from harness.model_file import read_model_file, run_model_path
from harness.store import Store
from harness.suite import expand, parse_suite
from harness.train import Callbacks, train_run
from tests.conftest import ROOT, run_cli, tiny_suite

#: What differs between two runs of the same configuration however they ran: wall-clock times, and the resume.
TIMES = {"epoch_seconds", "train_seconds", "total_train_seconds", "resumed_from"}


def suite_of(method: dict[str, Any], epochs: int = 4) -> dict[str, Any]:
    return tiny_suite(
        methods=[method],
        training={"epochs": epochs, "batch_size": 64, "lr": 0.05},
        budget={"train_subset": 1000, "test_subset": 500},
    )


def stored_epochs(db: Path) -> int:
    """Epoch rows in a store (0 while it does not exist yet)."""
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT count(*) FROM epochs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def kill_after(cmd: list[str], db: Path, epochs: int) -> None:
    """Start ``cmd`` and SIGKILL it (and its children) once the store holds ``epochs`` epoch rows."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    try:
        while stored_epochs(db) < epochs:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "the run never stored its epochs"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def without(record: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in keys}
    if "before_training" in out:
        out["before_training"] = [{k: v for k, v in p.items() if k != "seconds"} for p in out["before_training"]]
    return out


@pytest.mark.parametrize(
    "method",
    [  # tdlrt (shapes change between epochs) in the default run; the other two with the slow tests
        pytest.param({"name": "full"}, marks=pytest.mark.slow),
        pytest.param({"name": "tucker", "params": {"compression": 0.9}}, marks=pytest.mark.slow),
        {"name": "tdlrt", "params": {"tau": 0.1, "tau_warmup": 0}},  # no warm-up: ranks move at once
    ],
    ids=["full", "tucker", "tdlrt"],
)
def test_a_run_killed_mid_epoch_resumes_and_ends_as_the_uninterrupted_run(tmp_path, method):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite_of(method)))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    ref = run_cli("run", str(path), "--results", str(whole), "--threads", "1", env={"OMP_NUM_THREADS": "1"})
    assert ref.returncode == 0, ref.stderr

    cmd = [sys.executable, "-m", "harness", "run", str(path), "--results", str(killed), "--threads", "1"]
    kill_after(cmd, killed / "results.sqlite", 2)  # killed during its third epoch (or, at the latest, its fourth)
    (rid,) = [r.id for r in expand(parse_suite(suite_of(method)))]
    ckpt = checkpoint_path(killed, rid)
    assert ckpt.is_file() and Store(killed).runs()[0]["status"] == "running"
    done_before = load_checkpoint(ckpt, rid).epochs_done
    assert 2 <= done_before < 4

    again = run_cli("run", str(path), "--results", str(killed), "--threads", "1", env={"OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stderr
    assert f"resumed from epoch {done_before} (of 4)" in again.stdout
    assert not ckpt.exists()  # finished: its checkpoint is deleted (no --keep-checkpoints)

    (a,), (b,) = Store(whole).runs(), Store(killed).runs()
    assert a["id"] == b["id"] == rid and b["status"] == "done" and b["attempts"] == 2
    assert b["metrics"]["resumed_from"] == done_before and "resumed_from" not in a["metrics"]
    assert without(a["metrics"], TIMES) == without(b["metrics"], TIMES)  # every other number bit for bit
    assert a["metrics"]["checkpoint_bytes"] > 0
    rows_a, rows_b = Store(whole).epochs(rid), Store(killed).epochs(rid)
    assert [r["epoch"] for r in rows_b] == [0, 1, 2, 3]
    assert [without(r, {"seconds"}) for r in rows_a] == [without(r, {"seconds"}) for r in rows_b]
    file_a, file_b = run_model_path(whole, rid), run_model_path(killed, rid)
    assert file_a.read_bytes() == file_b.read_bytes()
    ta, tb = read_model_file(file_a).tensors, read_model_file(file_b).tensors
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    if method["name"] == "tdlrt":  # its ranks changed between the epochs before and after the kill
        ranks = [[layer["ranks"] for layer in r["layers"]] for r in rows_a]
        assert ranks[done_before - 1] != ranks[-1]


# -- in-process: what the checkpoint holds, what is refused ---------------------------------------------------------


class Keep(Callbacks):
    """Callbacks of a run without a store: its directory, its rows, its model file; raises at an epoch's end."""

    def __init__(self, results: Path, stop_after: int | None = None):
        self.results, self.stop_after = results, stop_after
        self.rows: list[dict[str, Any]] = []
        self.replayed: list[dict[str, Any]] | None = None
        self.notices: list[str] = []
        self.model: bytes | None = None

    def results_dir(self) -> Path:
        return self.results

    def resumed(self, rows):
        self.replayed = list(rows)
        self.rows.extend(rows)

    def epoch_end(self, row):
        self.rows.append(row)
        if self.stop_after is not None and row["epoch"] + 1 == self.stop_after:
            raise KeyboardInterrupt

    def notice(self, text):
        self.notices.append(text)

    def model_file(self, data):
        self.model = data


def config_of(method: dict[str, Any], epochs: int = 3) -> dict[str, Any]:
    (run,) = expand(parse_suite(suite_of(method, epochs)))
    return run.config


def test_the_checkpoint_holds_the_whole_state_and_the_method_state_survives(tmp_path, one_thread):
    """DLRT with the amortized schedule and a tau warm-up: its step count and phase are in the checkpoint; the
    resumed run ends as the whole one (rows, model file)."""
    method = {"name": "dlrt", "params": {"tau": 0.1, "schedule": "amortized", "amortize_steps": 4, "tau_warmup": 40}}
    config = config_of(method)
    whole = Keep(tmp_path / "a")
    ma = train_run(config, callbacks=whole, device="cpu")
    cut = Keep(tmp_path / "b", stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, callbacks=cut, device="cpu")
    from harness.config import run_id

    state = load_checkpoint(checkpoint_path(tmp_path / "b", run_id(config)), run_id(config))
    assert state.format == FORMAT and state.epochs_done == 1 and len(state.rows) == 1
    assert state.method == {"steps": 15, "phase": 0, "warmup": 40}  # 1000 images / 64 = 15 steps; cycle closed
    assert set(state.rng) == {"torch", "cuda", "loop", "python", "numpy"}
    assert state.optimizer["state"] and all("momentum_buffer" in s for s in state.optimizer["state"].values())
    assert any(k.endswith(".core") for k in state.model)
    assert state.selected is not None  # a validation split: the best epoch's model so far
    rest = Keep(tmp_path / "b")
    mb = train_run(config, callbacks=rest, device="cpu")
    assert rest.replayed is not None and len(rest.replayed) == 1
    assert without(ma, TIMES) == without(mb, TIMES) and mb["resumed_from"] == 1
    assert [without(r, {"seconds"}) for r in whole.rows] == [without(r, {"seconds"}) for r in rest.rows]
    assert whole.model == rest.model


def test_imp_rounds_are_checkpointed_before_the_loop_and_not_trained_again(tmp_path, one_thread):
    config = config_of({"name": "imp", "params": {"sparsity": 0.8, "rounds": 2}}, epochs=2)
    from harness.config import run_id

    class StopAtLoop(Keep):
        def run_start(self, epochs, steps_per_epoch):
            self.starts = getattr(self, "starts", 0) + 1
            if self.starts == 3:  # two rounds, then the loop: its checkpoint is written before it starts
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, callbacks=StopAtLoop(tmp_path), device="cpu")
    state = load_checkpoint(checkpoint_path(tmp_path, run_id(config)), run_id(config))
    assert state.epochs_done == 0 and [p["name"] for p in state.session["records"]] == ["imp round 1", "imp round 2"]
    assert any(k.endswith("weight_mask") for k in state.model)

    class Count(Keep):
        passes = 0

        def run_start(self, epochs, steps_per_epoch):
            Count.passes += 1

    cb = Count(tmp_path)
    m = train_run(config, callbacks=cb, device="cpu")
    assert Count.passes == 1  # the loop only: the rounds came from the checkpoint
    assert [p["name"] for p in m["before_training"]] == ["imp round 1", "imp round 2"] and m["total_epochs"] == 6


def test_a_damaged_or_foreign_checkpoint_is_refused_and_the_run_starts_clean(tmp_path, one_thread):
    from harness.config import run_id

    config = config_of({"name": "full"}, epochs=2)
    rid = run_id(config)
    path = checkpoint_path(tmp_path, rid)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not a checkpoint at all")
    cb = Keep(tmp_path)
    m = train_run(config, callbacks=cb, device="cpu")
    assert "resumed_from" not in m and cb.replayed is None and [r["epoch"] for r in cb.rows] == [0, 1]
    assert len(cb.notices) == 1 and "not a readable checkpoint" in cb.notices[0] and "epoch 0" in cb.notices[0]
    with pytest.raises(CheckpointError, match="not of run"):
        load_checkpoint(path, "0123456789abcdef")  # the file the run just wrote is its own, not another's
    other = config_of({"name": "full"}, epochs=3)  # another run whose file holds this run's checkpoint
    checkpoint_path(tmp_path, run_id(other)).parent.mkdir(parents=True)
    checkpoint_path(tmp_path, run_id(other)).write_bytes(path.read_bytes())
    cb2 = Keep(tmp_path)
    m2 = train_run(other, callbacks=cb2, device="cpu")
    assert "resumed_from" not in m2 and len(cb2.rows) == 3 and "not of run" in cb2.notices[0]


def test_a_truncated_checkpoint_is_refused_and_a_pickle_is_never_run(tmp_path):
    from harness.checkpoint import RunState

    state = RunState("r1", 0, {"w": torch.ones(3)}, {}, {}, {}, [], {"records": [], "epochs": 0, "steps": 0})
    path = tmp_path / "checkpoint.pt"
    size = save_checkpoint(path, state)
    assert size == path.stat().st_size and load_checkpoint(path, "r1").model["w"].sum() == 3
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed
    path.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path, "r1")

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"format": FORMAT, "run_id": "r1", "x": Boom()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, "r1")
    assert not (tmp_path / "pwned").exists()
    assert remove_checkpoint(tmp_path.parent, tmp_path.name) == 0  # no runs/<id>/ folder: nothing to free


def test_keep_checkpoints_keeps_them_reports_disk_use_and_force_trains_from_the_start(tmp_path, write_suite):
    from tests.conftest import cli

    path = write_suite(suite_of({"name": "full"}, epochs=2))
    out = tmp_path / "res"
    res = cli("run", str(path), "--results", str(out), "--keep-checkpoints")
    assert res.returncode == 0, res.stdout + res.stderr
    (run,) = Store(out).runs()
    ckpt = checkpoint_path(out, run["id"])
    assert ckpt.is_file() and run["metrics"]["checkpoint_bytes"] == ckpt.stat().st_size
    assert "checkpoints: 1 kept" in res.stdout and "MiB" in res.stdout
    res = cli("run", str(path), "--results", str(out), "--force")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resumed" not in res.stdout  # --force trains again: never from the kept checkpoint
    assert not ckpt.exists() and "checkpoints: 0 left" in res.stdout
    (run,) = Store(out).runs()
    assert run["attempts"] == 2 and "resumed_from" not in run["metrics"]


def test_every_generator_is_restored_and_the_file_size_does_not_depend_on_their_states(tmp_path):
    import random

    import numpy as np

    from harness.checkpoint import RunState, capture_rng, restore_rng

    loop = torch.Generator().manual_seed(3)
    rng = capture_rng(loop)
    drawn = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=loop))
    restore_rng(rng, loop)
    again = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=loop))
    assert drawn[:2] == again[:2] and torch.equal(drawn[2], again[2]) and torch.equal(drawn[3], again[3])
    sizes = set()
    for seed in range(4):  # Python's and NumPy's states differ from process to process (unseeded): same size
        random.seed(seed)
        np.random.seed(seed)
        state = RunState("r", 0, {}, {}, {}, capture_rng(loop), [], {"records": [], "epochs": 0, "steps": 0})
        sizes.add(save_checkpoint(tmp_path / f"c{seed}.pt", state))
    assert len(sizes) == 1
