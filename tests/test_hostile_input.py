"""Hostile or careless input, the way a user hits it: the CLI on a real store made by a tiny suite.

``--where`` is a filter, never code; suite names are plain path segments; a huge grid is counted and refused
before it is expanded; a report killed while it writes leaves its previous files whole.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import cli, run_cli, tiny_suite


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> Path:
    """Two finished runs of the embedded MNIST subset: full and matrix rank 4."""
    root = tmp_path_factory.mktemp("hostile")
    suite = root / "tiny.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(methods=["full", {"name": "matrix", "params": {"rank": 4}}])))
    res = cli("run", str(suite), "--results", str(root / "results"))
    assert res.returncode == 0, res.stdout + res.stderr
    return root / "results"


def report(store: Path, *args: str, cwd: Path | None = None, env: dict | None = None):
    return cli("report", str(store), "--no-plots", "--out", str(store.parent / "out"), *args, cwd=cwd, env=env)


# --where: a filter, never code ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        "@pd.io.common.os.system('touch pwned') == 0",
        "(@pd.io.common.os.system('touch pwned') == 0) | (method == 'full')",
        "pd.io.common.os.system('touch pwned') == 0",
        "__import__('os').system('touch pwned') == 0",
    ],
)
def test_where_cannot_run_a_command(real_store, tmp_path, where):
    res = report(real_store, "--where", where, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert not (tmp_path / "pwned").exists()
    assert "is not allowed" in res.stderr and "Traceback" not in res.stderr


def test_where_cannot_read_a_file(real_store, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    where = f"(@pd.read_csv('{secret}',sep=':',header=None).shape[0]>0) | (method=='full')"
    res = report(real_store, "--where", where)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "'@'" in res.stderr and "is not allowed" in res.stderr


@pytest.mark.parametrize(
    "where,token",
    [
        ("method.upper() == 'FULL'", "method.upper()"),
        ("seed * 1000 > 3", "seed * 1000"),
        ("method[0] == 'f'", "method[0]"),
        ("2 ** 2 ** 99 > seed", "2 ** 2 ** 99"),
        ("nope == 1", "nope"),
        ("[x for x in method] == 1", "[x for x in method]"),
    ],
)
def test_where_names_the_refused_token(real_store, where, token):
    res = report(real_store, "--where", where)
    assert res.returncode == 2
    assert f"{token!r}" in res.stderr, res.stderr


@pytest.mark.parametrize(
    "where,methods",
    [
        ("method == 'full'", ["full"]),
        ("method != 'full' and `param.rank` == 4", ["matrix"]),
        ("param.rank >= 4", ["matrix"]),
        ("method in ['full', 'matrix'] & ~(seed > 0)", ["full", "matrix"]),
        ("method == ['matrix'] | status != 'done'", ["matrix"]),
        ("not method == 'full' or final_acc < 0", ["matrix"]),
        ("0 <= seed < 1 and method not in ('full',)", ["matrix"]),
    ],
)
def test_where_filters_still_work(real_store, where, methods):
    res = report(real_store, "--where", where, "--format", "csv")
    assert res.returncode == 0, res.stderr
    summary = pd.read_csv(real_store.parent / "out" / "summary.csv")
    assert sorted(summary["method"]) == methods


@pytest.mark.parametrize("option", ["--sort", "--columns"])
def test_sort_and_columns_take_names_only(real_store, tmp_path, option):
    res = report(real_store, option, "__import__('os').system('touch pwned')", cwd=tmp_path)
    assert res.returncode == 2 and not (tmp_path / "pwned").exists()
    assert "column" in res.stderr


# suite names: plain path segments ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "-x", "...", "a/b", ".hidden"])
def test_suite_name_must_be_a_plain_name(tmp_path, name):
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(name=name)))
    res = cli("run", str(suite), cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "is not a plain name" in res.stderr and "Traceback" not in res.stderr
    assert not list(tmp_path.rglob("results.sqlite"))


def test_plain_suite_names_are_accepted(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(name="tiny_v2.1-b")))
    assert cli("run", str(suite), "--dry-run", cwd=tmp_path).returncode == 0


# grid size: counted before expanding ------------------------------------------------------------------------


def big_suite(seeds: int, ranks: int, **over) -> dict:
    return tiny_suite(
        seeds=list(range(seeds)), methods=[{"name": "matrix", "params": {"rank": list(range(1, ranks + 1))}}], **over
    )


def test_a_million_run_grid_is_refused_at_once(tmp_path):
    suite = tmp_path / "big.yaml"
    suite.write_text(yaml.safe_dump(big_suite(1000, 1000)))
    start = time.monotonic()
    res = run_cli("run", str(suite), "--dry-run", "--results", str(tmp_path / "r"), timeout=120)
    assert res.returncode == 2, res.stdout[-500:] + res.stderr
    assert time.monotonic() - start < 60
    assert "1,000,000 runs" in res.stderr and "limit of 100,000" in res.stderr and "--max-runs" in res.stderr
    assert res.stdout.count("\n") < 5  # nothing listed


def test_max_runs_and_its_environment_variable(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(big_suite(3, 2)))  # 6 runs
    args = ("run", str(suite), "--dry-run", "--results", str(tmp_path / "r"))
    refused = cli(*args, "--max-runs", "5")
    assert refused.returncode == 2 and "6 runs, more than the limit of 5" in refused.stderr
    assert cli(*args, env={"HARNESS_MAX_RUNS": "5"}).returncode == 2
    assert cli(*args, "--max-runs", "6").returncode == 0
    assert cli(*args, "--max-runs", "0", env={"HARNESS_MAX_RUNS": "5"}).returncode == 0


def test_grids_are_counted_together(tmp_path):
    data = tiny_suite(grids=[{"name": "a", "seeds": [0, 1]}, {"name": "b", "seeds": [0, 1, 2]}])
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(data))
    res = cli("run", str(suite), "--dry-run", "--max-runs", "4", "--results", str(tmp_path / "r"))
    assert res.returncode == 2 and "5 runs (2 + 3 in its grids)" in res.stderr


def test_expansion_is_lazy():
    from harness.suite import iter_runs, parse_suite

    suite = parse_suite(big_suite(1000, 1000), max_runs=0)
    start = time.monotonic()
    runs = iter_runs(suite)
    first = [next(runs) for _ in range(3)]
    assert time.monotonic() - start < 5 and len({r.id for r in first}) == 3


# report files: written atomically ---------------------------------------------------------------------------


def half_then_fail(real):
    """A writer that writes half of what it was given, then fails as a kill or a full disk would."""

    def write(self, data, *args, **kwargs):
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    return write


def test_a_failed_html_write_keeps_the_old_report(real_store, tmp_path, monkeypatch):
    store = tmp_path / "results"
    shutil.copytree(real_store, store)
    assert cli("report", str(store), "--no-plots", "--format", "html").returncode == 0
    page = store / "report" / "report.html"
    before = page.read_text()
    monkeypatch.setattr(Path, "write_text", half_then_fail(Path.write_text))
    with pytest.raises(OSError, match="No space left"):
        cli("report", str(store), "--no-plots", "--format", "html")
    monkeypatch.undo()
    assert page.read_text() == before
    assert sorted(p.name for p in page.parent.iterdir()) == ["report.html"]


def test_a_failed_csv_write_keeps_the_old_table(real_store, tmp_path, monkeypatch):
    store = tmp_path / "results"
    shutil.copytree(real_store, store)
    assert cli("report", str(store), "--no-plots", "--format", "csv").returncode == 0
    table = store / "report" / "summary.csv"
    before = table.read_text()

    def fail_after_half(self, path, *args, **kwargs):
        Path(path).write_text(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_after_half)
    with pytest.raises(OSError, match="No space left"):
        cli("report", str(store), "--no-plots", "--format", "csv")
    monkeypatch.undo()
    assert table.read_text() == before
    assert not [p for p in table.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_figure_write_keeps_the_old_figure(real_store, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    store = tmp_path / "results"
    shutil.copytree(real_store, store)
    assert cli("report", str(store), "--format", "md").returncode == 0
    pngs = sorted((store / "report" / "plots").glob("*.png"))
    assert pngs
    before = {p: p.read_bytes() for p in pngs}
    real = Figure.savefig

    def fail_after_half(self, fname, *args, **kwargs):
        real(self, fname, *args, **kwargs)
        data = Path(fname).read_bytes()
        Path(fname).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", fail_after_half)
    with pytest.raises(OSError, match="No space left"):
        cli("report", str(store), "--format", "md")
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in pngs} == before
    assert not [p for p in pngs[0].parent.iterdir() if p.name.endswith(".tmp")]
