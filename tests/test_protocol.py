"""The protocol: a validation split that never touches the test set, epochs selected on validation, and tuning
that gives every method the same trials, chosen on validation, trained exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from harness.config import Validation, run_id
from harness.data import load_tensors, validation_split
from harness.store import Store
from harness.suite import SuiteError, expand, parse_suite
from harness.train import selected_epoch
from harness.tuning import Range, Space, Tuning, choose, sample
from tests.conftest import ROOT, cli, status_counts, tiny_suite


def tuned_suite(**over) -> dict:
    data = tiny_suite(
        methods=["full", {"name": "matrix", "params": {"compression": 0.9}}],
        seeds=[0, 1],
        tuning={"trials": 3, "epochs": 1, "space": {"training": {"lr": {"low": 0.01, "high": 0.1, "log": True}}}},
    )
    data.update(over)
    return data


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(SuiteError) as info:
        parse_suite(data, "x.yaml")
    return info.value.problems


# -- the split ----------------------------------------------------------------------------------------------------
def test_split_is_disjoint_complete_and_seeded():
    train, val = validation_split(1000, 100, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert not set(train) & set(val) and sorted({*train, *val}) == list(range(1000))
    again_train, again_val = validation_split(1000, 100, seed=3)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, validation_split(1000, 100, seed=4)[1])


def test_split_is_the_same_in_another_process():
    code = "from harness.data import validation_split; print(validation_split(60000, 6000, 0)[1].sum())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert int(out.stdout) == int(validation_split(60000, 6000, 0)[1].sum())


def test_split_leaves_images_to_train():
    with pytest.raises(ValueError, match="leaves none"):
        validation_split(10, 10, 0)


def test_loaded_split_is_disjoint_from_train_and_budget_draws_from_the_rest():
    val = Validation(size=0.1, seed=0)
    full = load_tensors("mnist_subset", validation=val)
    budgeted = load_tensors("mnist_subset", train_subset=2000, validation=val)
    assert len(full.val_x) == 1000 and len(full.train_x) == 9000  # 10% of the 10,000 training images
    assert torch_equal(full.val_x, budgeted.val_x)  # a budget never changes which images validate
    assert len(budgeted.train_x) == 2000
    rows = {t.numpy().tobytes() for t in full.val_x.flatten(1)}
    assert not any(t.numpy().tobytes() in rows for t in budgeted.train_x.flatten(1))
    assert not any(t.numpy().tobytes() in rows for t in full.train_x.flatten(1))
    plain = load_tensors("mnist_subset")
    assert plain.val_x is None and len(plain.train_x) == 10000
    assert torch_equal(plain.test_x, full.test_x)  # the test set is never touched


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


@pytest.mark.parametrize(
    ("given", "size"), [(0.2, 0.2), (500, 500), ({"size": 0.05, "seed": 7}, 0.05), (None, 0), (0, 0)]
)
def test_validation_shorthands(given, size):
    assert Validation.model_validate(given).size == size


def test_a_fractional_count_is_refused():
    found = problems(tiny_suite(validation=1.5))
    assert found and found[0][0] == "validation" and "whole number" in found[0][1]


def test_the_split_is_part_of_the_identity_and_no_split_keeps_old_ids():
    none = expand(parse_suite(tiny_suite(validation=0)))[0]
    assert "validation" not in none.config
    default = expand(parse_suite(tiny_suite()))[0]
    assert default.config["validation"] == {"size": 0.1, "seed": 0}
    other = expand(parse_suite(tiny_suite(validation={"size": 0.1, "seed": 1})))[0]
    assert len({none.id, default.id, other.id}) == 3
    assert none.id == run_id({k: v for k, v in default.config.items() if k != "validation"})


# -- selection ------------------------------------------------------------------------------------------------------
def test_selection_uses_validation_where_it_and_test_disagree():
    epochs = [
        {"epoch": 0, "test_acc": 0.90, "val_acc": 0.80},
        {"epoch": 1, "test_acc": 0.95, "val_acc": 0.85},  # the best test epoch
        {"epoch": 2, "test_acc": 0.91, "val_acc": 0.88},  # the best validation epoch
        {"epoch": 3, "test_acc": 0.93, "val_acc": 0.88},  # as good on validation, later
    ]
    assert selected_epoch(epochs) == {
        "best_epoch": 2,
        "best_val_acc": 0.88,
        "test_acc_at_best_val": 0.91,
        "final_val_acc": 0.88,
    }
    assert selected_epoch([{"epoch": 0, "test_acc": 0.9, "val_acc": None}]) == {}


def test_a_run_stores_validation_per_epoch_and_its_selected_epoch(tmp_path, write_suite):
    path = write_suite(tiny_suite(training={"epochs": 2, "batch_size": 64, "lr": 0.05}))
    assert cli("run", str(path), "--results", str(tmp_path / "r")).returncode == 0
    store = Store(tmp_path / "r")
    (run,) = store.runs()
    epochs = store.epochs(run["id"])
    assert all(e["val_acc"] is not None and e["val_loss"] is not None for e in epochs)
    m = run["metrics"]
    best = max(epochs, key=lambda e: (e["val_acc"], -e["epoch"]))
    assert m["best_epoch"] == best["epoch"] and m["test_acc_at_best_val"] == best["test_acc"]
    assert m["model_epoch"] == m["best_epoch"]  # the kept model is the one the run is judged by
    assert m["val_size"] == 1000 and m["train_size"] == 1000
    out = cli("export", str(tmp_path / "r"), "-o", str(tmp_path / "runs.csv"))
    assert out.returncode == 0
    header = (tmp_path / "runs.csv").read_text().splitlines()[0].split(",")
    assert {"best_val_acc", "test_acc_at_best_val", "final_acc", "best_epoch", "validation"} <= set(header)


def test_a_store_from_before_the_split_takes_the_validation_columns(tmp_path):
    import sqlite3

    db = tmp_path / "results.sqlite"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE epochs (run_id TEXT NOT NULL, epoch INTEGER NOT NULL, train_loss REAL, test_acc REAL,"
        " test_loss REAL, seconds REAL, lr REAL, layers TEXT, PRIMARY KEY (run_id, epoch));"
    )
    con.close()
    store = Store(tmp_path)
    store.add_epoch("r", {"epoch": 0, "train_loss": 1.0, "test_acc": 0.5, "val_acc": 0.4, "layers": []})
    assert store.epochs("r")[0]["val_acc"] == 0.4


# -- tuning: sampling and choice -------------------------------------------------------------------------------------
def test_sampler_is_seeded_within_bounds_and_log_scaled():
    tuning = Tuning(trials=16, space=Space(training={"lr": {"low": 1e-3, "high": 1e-1, "log": True}}))
    lrs = [s["training"]["lr"] for s in sample(tuning.space, tuning)]
    assert lrs == [s["training"]["lr"] for s in sample(tuning.space, tuning)]
    assert all(1e-3 <= v <= 1e-1 for v in lrs)
    below = sum(v < 1e-2 for v in lrs)  # log scale: half the points below the geometric middle
    assert 6 <= below <= 10
    other = Tuning(trials=16, seed=1, space=tuning.space)
    assert lrs != [s["training"]["lr"] for s in sample(other.space, other)]


def test_grid_sampler_tries_every_point_once():
    space = Space(training={"lr": [0.01, 0.1], "momentum": [0.0, 0.9]})
    tuning = Tuning(trials=4, sampler="grid", space=space)
    got = {(s["training"]["lr"], s["training"]["momentum"]) for s in sample(space, tuning)}
    assert got == {(0.01, 0.0), (0.01, 0.9), (0.1, 0.0), (0.1, 0.9)}


def test_choice_is_the_argmax_with_failures_scoring_nothing():
    assert choose([0.5, None, 0.7, 0.7, 0.6]) == 2
    assert choose([None, None]) is None


def test_range_values():
    assert Range(low=1, high=4, integer=True).at(0.5) == 2 or Range(low=1, high=4, integer=True).at(0.5) == 3
    assert Range(low=0.01, high=1, log=True).at(0.5) == pytest.approx(0.1, rel=1e-3)


def _done(spec, score):
    return {"id": spec.id, "status": "done", "metrics": {"best_val_acc": score}}


def test_every_method_gets_the_same_trials_and_the_argmax_is_trained_with_every_seed():
    suite = parse_suite(tuned_suite())
    trials = expand(suite)
    by_method: dict[str, list] = {}
    for t in trials:
        assert "trial" in t.config and t.config["training"]["epochs"] == 1
        by_method.setdefault(t.config["method"], []).append(t)
    assert {m: len(v) for m, v in by_method.items()} == {"full": 3, "matrix": 3}
    lrs = {m: [t.config["training"]["lr"] for t in v] for m, v in by_method.items()}
    assert lrs["full"] == lrs["matrix"]  # the same points for the same space
    scores = {"full": [0.5, 0.9, 0.7], "matrix": [0.8, None, 0.6]}
    results = {}
    for m, v in by_method.items():
        for t, s in zip(v, scores[m], strict=True):
            results[t.id] = _done(t, s) if s is not None else {"id": t.id, "status": "failed", "metrics": None}
    finals = [r for r in expand(suite, results) if "trial" not in r.config]
    assert len(finals) == 4  # 2 methods x 2 seeds
    chosen = {(r.config["method"], r.config["seed"]): r.config for r in finals}
    assert chosen["full", 0]["training"]["lr"] == lrs["full"][1] and chosen["full", 0]["tuned"]["trial"] == 1
    assert chosen["matrix", 1]["training"]["lr"] == lrs["matrix"][0]
    assert chosen["full", 0]["training"]["epochs"] == 1  # the suite's epochs (tiny_suite: 1)


def test_nothing_is_chosen_while_a_trial_is_unsettled():
    suite = parse_suite(tuned_suite())
    trials = expand(suite)
    results = {t.id: _done(t, 0.5) for t in trials[:-1]}
    results[trials[-1].id] = {"id": trials[-1].id, "status": "running", "metrics": None}
    finals = [r for r in expand(suite, results) if "trial" not in r.config]
    assert {r.config["method"] for r in finals} == {"full"}  # matrix still waits for its last trial


# -- tuning: bad input stops before training ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tuning", "where", "words"),
    [
        ({"trials": 3, "space": {"training": {"lr": [0.1]}}, "sampel": "sobol"}, "tuning", "did you mean 'sampler'"),
        ({"trials": 3, "space": {}}, "tuning.space", "empty"),
        ({"trials": 0, "space": {"training": {"lr": [0.1]}}}, "tuning.trials", "greater than or equal to 1"),
        ({"trials": 3, "space": {"training": {"lr": {"low": 0.1, "high": 0.1}}}}, "tuning.space.training.lr", "low"),
        ({"trials": 3, "space": {"params": {"rank": [4, 8]}}}, "tuning.space.params.rank", "takes no parameter"),
        ({"trials": 3, "space": {"training": {"lrr": [0.1]}}}, "tuning.space.training.lrr", "did you mean 'lr'"),
        ({"trials": 3, "space": {"training": {"lr": [-1.0]}}}, "tuning.space.training.lr", "greater than 0"),
        ({"trials": 3, "sampler": "grid", "space": {"training": {"lr": [0.1, 0.2]}}}, "tuning.space", "trials"),
    ],
)
def test_bad_tuning_names_its_key_path(tuning, where, words):
    found = problems(tiny_suite(tuning=tuning))
    assert any(loc == where and words in msg for loc, msg in found), found


def test_a_method_may_add_keys_and_its_keys_are_named_by_their_entry():
    data = tuned_suite(
        methods=[
            "full",
            {"name": "matrix", "params": {"compression": 0.9}, "tuning": {"space": {"params": {"x": [1]}}}},
        ]
    )
    found = problems(data)
    assert any(loc == "methods[1].tuning.space.params.x" for loc, _ in found), found
    ok = tuned_suite(
        methods=[{"name": "tdlrt", "tuning": {"space": {"params": {"tau": [0.1, 0.2]}}}}],
    )
    trials = expand(parse_suite(ok))
    assert len(trials) == 3 and len({t.config["params"]["tau"] for t in trials}) >= 1


def test_tuning_needs_a_validation_split():
    found = problems(tuned_suite(validation=0))
    assert ("validation", "tuning chooses on the validation split: give it a size above 0 (default 0.1)") in found


def test_cli_refuses_bad_tuning_with_exit_2(write_suite, tmp_path):
    path = write_suite(tiny_suite(tuning={"trials": 0, "space": {"training": {"lr": [0.1]}}}))
    res = cli("run", str(path), "--results", str(tmp_path / "r"))
    assert res.returncode == 2 and "tuning.trials" in res.stderr
    assert not (tmp_path / "r").exists()


# -- tuning: runs in the store --------------------------------------------------------------------------------------
def test_a_tuned_grid_trains_trials_then_the_chosen_setting_and_reports_them(write_suite, tmp_path):
    path = write_suite(tuned_suite())
    res = cli("run", str(path), "--results", str(tmp_path / "r"))
    assert res.returncode == 0, res.stdout + res.stderr
    store = Store(tmp_path / "r")
    runs = store.runs()
    trials = [r for r in runs if "trial" in r["config"]]
    tuned = [r for r in runs if "tuned" in r["config"]]
    assert len(trials) == 6 and len(tuned) == 4 and all(r["status"] == "done" for r in runs)
    for method in ("full", "matrix"):
        mine = [t for t in trials if t["config"]["method"] == method]
        best = max(mine, key=lambda t: (t["metrics"]["best_val_acc"], -t["config"]["trial"]["index"]))
        for r in (r for r in tuned if r["config"]["method"] == method):
            assert r["config"]["training"]["lr"] == best["config"]["training"]["lr"]
    again = cli("run", str(path), "--results", str(tmp_path / "r"))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert all(r["attempts"] == 1 for r in store.runs())
    rep = cli("report", str(tmp_path / "r"))
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "r" / "report" / "report.md").read_text()
    assert "## Tuning" in md and "training.lr: 0.01..0.1 (log)" in md and "tuned: lr=" in md
    status = cli("status", str(path), "--results", str(tmp_path / "r"))
    assert status.returncode == 0 and "10" in status.stdout


def test_killing_a_tuning_grid_and_rerunning_trains_no_trial_twice(write_suite, tmp_path):
    path = write_suite(tuned_suite(training={"epochs": 1, "batch_size": 16, "lr": 0.05}))
    db = tmp_path / "r" / "results.sqlite"
    cmd = [sys.executable, "-m", "harness", "run", str(path), "--results", str(tmp_path / "r")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while status_counts(db).get("done", 0) < 2 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {r["id"]: r for r in Store(tmp_path / "r").runs() if r["status"] == "done"}
    assert 2 <= len(first) < 10
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    # exit 1 only where a trial diverged (matrix at the top of the lr range may, depending on the thread count)
    runs = Store(tmp_path / "r").runs()
    failed = [r for r in runs if r["status"] == "failed"]
    assert res.returncode == (1 if failed else 0), res.stdout + res.stderr
    assert all("DivergedError" in (r["error"] or "") and "trial" in r["config"] for r in failed)
    assert len(runs) == 10 and all(r["status"] in ("done", "failed") for r in runs)
    for r in runs:
        if r["id"] in first:
            assert r["attempts"] == 1 and r["finished"] == first[r["id"]]["finished"]
    assert json.dumps(sorted(r["id"] for r in runs)) == json.dumps(sorted({r["id"] for r in runs}))
