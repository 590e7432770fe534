"""One unit wherever a user looks: accuracies and compression rates in percent, epochs counted from 1 (export,
--where and --sort, the report, progress lines), while the store keeps fractions and epochs from 0; export
writes real Parquet and refuses what it cannot write."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from harness.config import RunSpec
from harness.progress import summary
from harness.report import build_report
from harness.store import Store
from harness.units import percent, shown
from tests.conftest import cli


def spec(method: str, params: dict, seed: int = 0) -> RunSpec:
    return RunSpec.of(
        {
            "dataset": "mnist_subset",
            "model": "lenet5",
            "method": method,
            "params": params,
            "initialization": "pytorch",
            "seed": seed,
            "training": {"epochs": 2, "lr": 0.05},
            "budget": {"train_subset": 1000},
        }
    )


FULL = spec("full", {})
SVD = spec("svd", {"rank": 8})


def finish(store: Store, run: RunSpec, accs: tuple[float, float], compression: float) -> None:
    assert store.claim(run.id)
    for epoch, acc in enumerate(accs):
        store.add_epoch(
            run.id,
            {"epoch": epoch, "train_loss": 1.0, "test_acc": acc, "test_loss": 1.0, "seconds": 1.0, "lr": 0.05},
        )
    metrics = {
        "final_acc": accs[-1],
        "best_acc": max(accs),
        "compression": compression,
        "compression_train": compression,
        "compression_conv": compression,
        "params_inference": 1000,
        "epoch_seconds": 1.0,
        "ranks": {},
    }
    store.finish(run.id, "done", metrics)


@pytest.fixture
def results(tmp_path):
    """A store of two finished runs: full (97.5 % after 95 %), svd rank 8 (90 %, compression 50 %)."""
    store = Store(tmp_path / "res")
    store.add_runs("units", [FULL, SVD])
    finish(store, FULL, (0.95, 0.975), 0.0)
    finish(store, SVD, (0.85, 0.90), 0.5)
    return tmp_path / "res"


def test_shown_converts_stored_fractions_and_epochs_and_nothing_else():
    stored = {"epoch": 0, "test_acc": 0.975, "train_loss": 0.5, "compression": None, "epochs": 2}
    assert shown(stored) == {"epoch": 1, "test_acc": 97.5, "train_loss": 0.5, "compression": None, "epochs": 2}
    assert stored["test_acc"] == 0.975 and stored["epoch"] == 0  # the stored record is left as it was
    assert percent(0.975) == 97.5 and percent(0.07) == 7.0  # no 97.50000000000001 in an exported table
    assert shown({"final_acc": True, "compression_conv_train": 0.25})["compression_conv_train"] == 25.0


def test_export_csv_and_json_in_percent_and_epochs_from_one_store_unchanged(results, tmp_path):
    csv, js = tmp_path / "runs.csv", tmp_path / "epochs.json"
    assert cli("export", str(results), "-o", str(csv)).returncode == 0
    runs = pd.read_csv(csv).set_index("method")
    assert runs.loc["full", "final_acc"] == 97.5 and runs.loc["full", "best_acc"] == 97.5
    assert runs.loc["svd", "final_acc"] == 90.0 and runs.loc["svd", "compression"] == 50.0
    res = cli("export", str(results), "--epochs", "-o", str(js))
    assert res.returncode == 0, res.stderr
    epochs = pd.DataFrame(json.loads(js.read_text()))
    full = epochs[epochs["method"] == "full"].sort_values("epoch")
    assert list(full["epoch"]) == [1, 2] and list(full["test_acc"]) == [95.0, 97.5]
    store = Store(results)  # the store keeps fractions and epochs from 0
    assert {r["id"]: r["metrics"]["final_acc"] for r in store.runs()} == {FULL.id: 0.975, SVD.id: 0.90}
    assert [e["epoch"] for e in store.epochs(FULL.id)] == [0, 1]


def test_where_and_sort_take_percent_in_export_and_report(results):
    res = cli("export", str(results), "--where", "final_acc > 97")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2 and FULL.id in lines[1]  # header and the full run: 97.5 > 97
    res = cli("export", str(results), "--epochs", "--where", "epoch == 1", "--sort", "-test_acc")
    rows = [ln.split(",") for ln in res.stdout.strip().splitlines()]
    header = rows[0]
    assert [r[header.index("test_acc")] for r in rows[1:]] == ["95.0", "85.0"]  # first epochs, best first
    res = cli("export", str(results), "--sort", "final_accc")
    assert res.returncode == 2 and "did you mean 'final_acc'" in res.stderr and "Traceback" not in res.stderr

    rep = build_report(Store(results), where="final_acc > 97 or compression >= 50")
    assert sorted(rep.runs["method"]) == ["full", "svd"]
    assert build_report(Store(results), where="final_acc > 97").summary["acc_mean"].tolist() == [97.5]
    res = cli("report", str(results), "--where", "final_acc > 97", "--no-plots", "-o", str(results / "rep"))
    assert res.returncode == 0, res.stderr
    assert "97.50" in res.stdout and "| svd" not in res.stdout


def test_report_tables_and_plot_data_use_the_same_units(results):
    rep = build_report(Store(results))
    full = rep.summary.set_index("method").loc["full"]
    assert full["acc_mean"] == 97.5 and full["best_acc_mean"] == 97.5
    assert rep.summary.set_index("method").loc["svd", "compression"] == 50.0
    assert sorted(set(rep.epochs["epoch"])) == [1, 2]  # what the curves and rank plots draw on their x axis
    assert rep.epochs.loc[rep.epochs["epoch"] == 2, "test_acc"].max() == 97.5


def test_progress_summary_line_in_percent():
    line = summary(
        {"final_acc": 0.975, "best_acc": 0.98, "compression": 0.5, "params_inference": 10, "epoch_seconds": 1}
    )
    assert line.startswith("acc 97.50%, best 98.00%, compression 50.0%")


def test_export_writes_real_parquet(results, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "runs.parquet"
    res = cli("export", str(results), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:4] == b"PAR1"  # Parquet's magic bytes, not CSV text
    df = pd.read_parquet(out).set_index("method")
    assert df.loc["full", "final_acc"] == 97.5 and df.loc["svd", "param.rank"] == 8


def test_export_parquet_without_an_engine_says_how_to_install_one(results, tmp_path, monkeypatch):
    for engine in ("pyarrow", "fastparquet"):
        monkeypatch.setitem(sys.modules, engine, None)  # an import of it fails, as where it is not installed
    out = tmp_path / "runs.parquet"
    res = cli("export", str(results), "-o", str(out))
    assert res.returncode == 2 and "pip install pyarrow" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("name", ["runs.xlsx", "runs"])
def test_export_refuses_an_unknown_extension_listing_the_supported_ones(results, tmp_path, name):
    out = tmp_path / name
    res = cli("export", str(results), "-o", str(out))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert all(s in res.stderr for s in (".csv", ".json", ".parquet")), res.stderr
    assert not out.exists()
