"""The quickstart: it compares the dense model with factorized methods, and ``harness run`` ends with the
comparison table and the path of the report it wrote."""

from __future__ import annotations

import re

import pytest

from harness.suite import load_suite
from tests.conftest import ROOT, cli, tiny_suite

QUICKSTART = ROOT / "suites" / "quickstart.yaml"
# a budget of seconds: the suite's methods and settings on 1,000 images for one epoch
BUDGET = ["--budget", "train_subset=1000", "--budget", "test_subset=500", "--budget", "epochs=1"]


def table_rows(output: str) -> dict[str, list[str]]:
    """The rows of the Markdown table in ``output``, by method (first column)."""
    rows = [ln for ln in output.splitlines() if ln.startswith("| ") and not ln.startswith("| method")]
    return {cells[0]: cells for cells in ([c.strip() for c in ln.strip("|").split("|")] for ln in rows)}


def test_quickstart_holds_the_dense_model_and_factorized_methods_and_reports():
    suite = load_suite(QUICKSTART)
    methods = [m.name for m in suite.methods]
    assert "full" in methods and {"tdlrt", "tucker"} <= set(methods)
    assert suite.report and suite.datasets == ["mnist_subset"]


def test_quickstart_run_ends_with_the_comparison_table_and_the_report_path(tmp_path):
    results = tmp_path / "qs"
    res = cli("run", str(QUICKSTART), "--results", str(results), *BUDGET)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.rstrip().splitlines()
    report = results / "report" / "report.md"
    assert lines[-1].startswith(f"report: {report} ") and report.is_file()
    assert (results / "report" / "report.html").is_file()
    pngs = list((results / "report" / "plots").glob("*.png"))
    assert re.search(r"(\d+) plots in", lines[-1]).group(1) == str(len(pngs)) != "0"
    # the table comes right before the path: a header, a rule and one row per method setting
    table = lines[next(i for i, ln in enumerate(lines) if ln.startswith("| method |")) :]
    assert table[-2] == "" and all(ln.startswith("|") for ln in table[:-2])
    rows = table_rows(res.stdout)
    assert set(rows) == {"full", "tucker", "tdlrt"}
    compression = {m: float(r[5]) for m, r in rows.items()}
    assert compression["full"] == 0.0 and compression["tucker"] > 80 and compression["tdlrt"] > 50
    assert rows["full"][6] == "—" and "×" in rows["tdlrt"][6]  # ranks of the factorized layers

    again = cli("run", str(QUICKSTART), "--results", str(results), *BUDGET)  # nothing to train: the table again
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert table_rows(again.stdout) == rows and again.stdout.rstrip().splitlines()[-1] == lines[-1]


def test_run_without_report_names_the_report_command(tmp_path, write_suite):
    results = tmp_path / "res"
    res = cli("run", str(write_suite(tiny_suite())), "--results", str(results))
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().splitlines()[-1] == f"tables and plots: harness report {results}"
    assert not (results / "report").exists()
    on = cli("run", str(write_suite(tiny_suite())), "--results", str(results), "--report")
    assert on.stdout.rstrip().splitlines()[-1].startswith(f"report: {results / 'report' / 'report.md'}")
    assert set(table_rows(on.stdout)) == {"full"}


@pytest.mark.slow
def test_quickstart_as_shipped_trains_to_meaningful_accuracies(tmp_path):
    """The quickstart itself (about a minute): every method above 95% test accuracy, within two points of the
    dense model; Tucker at about 90% compression, TDLRT above 75% (its tau warms up over 500 batches, longer than
    the run's 210: it keeps ranks near its caps)."""
    res = cli("run", str(QUICKSTART), "--results", str(tmp_path / "qs"))
    assert res.returncode == 0, res.stdout + res.stderr
    rows = table_rows(res.stdout)
    accuracy = {m: float(r[3]) for m, r in rows.items()}
    assert min(accuracy.values()) > 95 and accuracy["full"] - min(accuracy.values()) < 2
    assert float(rows["tucker"][5]) > 85 and float(rows["tdlrt"][5]) > 75


def test_brief_table_adds_the_group_columns_that_differ_and_drops_empty_ones(tmp_path):
    """A store of two budgets shows the budget column; one without ranks or parameters drops those columns."""
    from harness.report import build_report
    from harness.report.brief import brief_columns, brief_table
    from tests.test_report import make_store

    store = make_store(tmp_path / "store")
    both = build_report(store)
    assert brief_columns(both)[0] == "budget" and {"params", "ranks"} <= set(brief_columns(both))
    dense = build_report(store, where="method == 'full' and budget == 'none'")
    assert brief_columns(dense) == ["method", "initialization", "n", "acc", "delta_acc", "compression"]
    table = brief_table(dense).splitlines()
    assert len(table) == 2 + 2 and table[0].startswith("| method | init | n |")  # pytorch and orthogonal


def test_a_run_with_no_finished_run_says_why_there_is_no_report(tmp_path, write_suite):
    diverging = tiny_suite(report=True, training={"epochs": 1, "batch_size": 64, "lr": 1e8, "momentum": 0.9})
    res = cli("run", str(write_suite(diverging)), "--results", str(tmp_path / "res"))
    assert res.returncode == 1 and "failed" in res.stdout
    assert "no report: no finished runs" in res.stderr and not (tmp_path / "res" / "report").exists()
