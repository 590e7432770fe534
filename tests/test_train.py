"""Training end to end: accuracy on real data, reproducibility, divergence recorded as failure."""

from __future__ import annotations

import pytest

from harness.runner import execute, plan
from harness.store import Store
from harness.suite import expand, parse_suite
from harness.train import train_run
from tests.conftest import cli, tiny_suite


def test_full_baseline_reaches_95_percent_on_embedded_mnist():
    suite = parse_suite(tiny_suite(budget={}, training={"epochs": 3, "batch_size": 128, "lr": 0.05}))
    (run,) = expand(suite)
    metrics = train_run(run.config, device="cpu")
    assert metrics["final_acc"] >= 0.95
    assert metrics["train_size"] == 9000 and metrics["val_size"] == 1000 and metrics["test_size"] == 2000
    assert metrics["compression"] == 0.0 and metrics["params_inference"] == metrics["params_full"] == 431080
    assert metrics["flops"] > 2 * 431080  # at least one multiply-add per weight


def test_same_seed_same_accuracy_and_different_seed_differs():
    runs = expand(parse_suite(tiny_suite(seeds=[3, 4])))
    a = train_run(runs[0].config, device="cpu")
    b = train_run(runs[0].config, device="cpu")
    c = train_run(runs[1].config, device="cpu")
    assert a["final_acc"] == b["final_acc"] and a["final_train_loss"] == b["final_train_loss"]
    assert c["final_train_loss"] != a["final_train_loss"]


def test_diverging_run_is_stored_failed_and_grid_goes_on(tmp_path):
    data = tiny_suite(methods=["full"], seeds=[0])
    bad = parse_suite({**data, "training": {"epochs": 1, "batch_size": 64, "lr": 1e6}})
    good = parse_suite(data)
    runs = expand(bad) + expand(good)
    store = Store(tmp_path)
    p = plan(store, "mixed", runs)
    counts = execute(store, p.todo, device="cpu")
    assert counts == {"done": 1, "failed": 1, "skipped": 0}
    by_id = {r["id"]: r for r in store.runs()}
    failed = by_id[runs[0].id]
    assert failed["status"] == "failed" and "NaN/inf" in failed["error"] and "learning rate" in failed["error"]
    assert failed["metrics"] is None
    assert by_id[runs[1].id]["status"] == "done" and by_id[runs[1].id]["metrics"]["final_acc"] > 0.5


def test_rerun_failed_keeps_history(tmp_path):
    suite = parse_suite({**tiny_suite(), "training": {"epochs": 1, "lr": 1e9}})
    runs = expand(suite)
    store = Store(tmp_path)
    execute(store, plan(store, "x", runs).todo, device="cpu")
    again = plan(store, "x", runs, rerun_failed=True)
    assert [r.id for r in again.todo] == [runs[0].id]
    (hist,) = store.history()
    assert hist["status"] == "failed" and "NaN" in hist["error"]


@pytest.mark.parametrize("extra", [[], ["--force"]])
def test_cli_run_status_export(tmp_path, write_suite, extra):
    path = write_suite(tiny_suite(seeds=[0, 1]))
    out = tmp_path / "res"
    res = cli("run", str(path), "--results", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("done   ") == 2 and "acc " in res.stdout
    assert res.stdout.count("epoch 1/1  loss ") == 2  # not a terminal: a line per epoch shows progress
    res = cli("run", str(path), "--results", str(out), *extra)
    assert res.returncode == 0
    if extra:
        assert res.stdout.count("done   ") == 2
        assert len(Store(out).history()) == 2  # the earlier results are archived, not lost
    else:
        assert "nothing to do" in res.stdout
    st = cli("status", str(path), "--results", str(out))
    assert "done" in st.stdout and "2" in st.stdout
    csv = tmp_path / "runs.csv"
    assert cli("export", str(out), "--out", str(csv)).returncode == 0
    import pandas as pd

    df = pd.read_csv(csv)
    assert len(df) == 2 and set(df["status"]) == {"done"}
    assert df["final_acc"].between(1, 100).all()  # in percent, as the report shows it (the store keeps fractions)


def test_cli_list_and_help():
    res = cli("list", "methods")
    assert res.returncode == 0 and "full" in res.stdout and "Full baseline" in res.stdout
    res = cli("list", "datasets")
    assert "mnist_subset" in res.stdout and "cifar10" in res.stdout
    res = cli("list", "modles")
    assert res.returncode == 2 and "did you mean 'models'" in res.stderr
    res = cli("run", "--help")
    assert "--rerun-failed" in res.stdout and "--budget" in res.stdout
