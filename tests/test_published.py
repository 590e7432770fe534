"""Published results directories (a PUBLISHED file beside the store): run, merge and check refuse them as a
write target unless told, budget runs get their own store, and a report rebuild removes only its stale files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from matplotlib.figure import Figure

from harness.config import RunSpec
from harness.published import MARKER
from harness.report.figures import save
from harness.store import Store
from harness.suite import expand, load_suite
from tests.conftest import cli, tiny_suite
from tests.test_report import FULL, REFERENCES_YAML, finish, make_store


def published_suite(root: Path, seeds: list[int], done: int) -> tuple[Store, list[RunSpec]]:
    """``root/suites/tiny.yaml`` and its published store ``root/results/tiny`` with its first ``done`` runs
    finished (by hand: these tests are about where runs go, not about training)."""
    (root / "suites").mkdir()
    path = root / "suites" / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_suite(seeds=seeds)))
    runs = expand(load_suite(path))
    store = Store(root / "results" / "tiny")
    store.add_runs("tiny", runs[:done])
    for r in runs[:done]:
        assert store.claim(r.id)
        store.add_epoch(r.id, {"epoch": 0, "train_loss": 1.0, "test_acc": 0.5, "layers": []})
        store.finish(r.id, "done", {"final_acc": 0.5})
    (store.dir / MARKER).write_text("published: the README quotes this store\n")
    return store, runs


def contents(store: Store) -> tuple:
    """Everything a store holds (runs, epochs, history), to see that nothing changed."""
    return store.runs(), store.epochs(), store.history()


def test_run_refuses_a_published_store_and_says_how_to_proceed(tmp_path):
    store, runs = published_suite(tmp_path, seeds=[0, 1], done=1)
    before = contents(store)
    for extra in ([], ["--results", "results/tiny"], ["--force"]):
        res = cli("run", "tiny", *extra, cwd=tmp_path)
        assert res.returncode == 2, (extra, res.stdout, res.stderr)
        assert "results/tiny is published" in res.stderr and "--into-published" in res.stderr
        assert "--results DIR" in res.stderr and "Traceback" not in res.stderr
    assert contents(store) == before

    dry = cli("run", "tiny", "--dry-run", cwd=tmp_path)  # reading it is fine
    assert dry.returncode == 0 and "results in results/tiny (published" in dry.stdout
    assert contents(store) == before

    res = cli("run", "tiny", "--into-published", cwd=tmp_path)  # on purpose: the missing seed is trained
    assert res.returncode == 0, res.stderr
    assert "1 done, 0 failed, 1 to train; results in results/tiny" in res.stdout
    after = {r["id"]: r for r in store.runs()}
    assert [after[r.id]["status"] for r in runs] == ["done", "done"]
    assert after[runs[0].id]["metrics"] == {"final_acc": 0.5} and store.history() == []  # the published run kept


def test_budget_run_gets_its_own_store_not_the_suite_s(tmp_path):
    store, runs = published_suite(tmp_path, seeds=[0], done=1)
    before = contents(store)
    budget = ["--budget", "train_subset=200", "--budget", "test_subset=100"]
    res = cli("run", "tiny", *budget, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert "results in results/tiny-budget" in first and "kept apart from results/tiny" in first
    assert contents(store) == before
    (run,) = Store(tmp_path / "results" / "tiny-budget").runs()
    assert run["status"] == "done" and run["config"]["budget"]["train_subset"] == 200
    assert run["id"] != runs[0].id
    # the same budget run again finds its results there; a --results DIR still wins
    assert "nothing to do" in cli("run", "tiny", *budget, cwd=tmp_path).stdout
    dry = cli("run", "tiny", *budget, "--results", "mine", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "results in mine" in dry.stdout


def test_merge_into_a_published_store_needs_the_flag(tmp_path):
    store, runs = published_suite(tmp_path, seeds=[0, 1], done=1)
    other = Store(tmp_path / "elsewhere")
    other.add_runs("tiny", runs[1:])
    assert other.claim(runs[1].id)
    other.finish(runs[1].id, "done", {"final_acc": 0.7})
    before = contents(store)
    res = cli("merge", str(other.dir), "--into", str(store.dir))
    assert res.returncode == 2 and "is published" in res.stderr and "--into-published" in res.stderr
    assert contents(store) == before
    res = cli("merge", str(other.dir), "--into", str(store.dir), "--into-published")
    assert res.returncode == 0, res.stderr
    assert "added 1" in res.stdout and store.counts()["done"] == 2


def test_check_never_trains_into_a_published_store(tmp_path):
    store, _ = published_suite(tmp_path, seeds=[0], done=1)
    before = contents(store)
    baseline = tmp_path / "baseline.json"
    res = cli("check", "tiny", "--against", str(baseline), "--update", "--results", str(store.dir), cwd=tmp_path)
    assert res.returncode == 2 and "is published" in res.stderr and "another --results" in res.stderr
    assert not baseline.exists() and contents(store) == before


def report(*args: str):
    return cli("report", *args)


def test_report_rebuild_removes_only_the_stale_files_it_generated(tmp_path):
    pub = tmp_path / "pub"
    make_store(pub)
    (pub / MARKER).write_text("published\n")
    refs = tmp_path / "refs.yaml"
    refs.write_text(REFERENCES_YAML)
    out = pub / "report"
    first = report(str(pub), "--format", "all", "--references", str(refs))
    assert first.returncode == 0, first.stderr
    assert (out / "quoted.csv").is_file() and list(out.glob("plots/ranks_*.png"))
    mine = [out / "notes.txt", out / "plots" / "sketch.png", out / "plots" / "ranks-by-hand.svg"]
    for p in mine:
        p.write_text("kept by hand")

    # without dlrt no rank moves (no ranks_ figures) and without references there is no quoted.csv
    second = report(str(pub), "--format", "all", "--where", "method != 'dlrt'")
    assert second.returncode == 0, second.stderr
    assert not list(out.glob("plots/ranks_*")) and not (out / "quoted.csv").exists()
    assert "removed 3 stale file(s)" in second.stderr  # ranks_...png, ranks_...svg, quoted.csv
    figures = sorted(p.name for p in (out / "plots").iterdir() if p not in mine)
    page = (out / "report.html").read_text()
    assert figures and page.count('src="data:image/png;base64,') == len(figures) // 2  # every figure is shown
    assert all(p.read_text() == "kept by hand" for p in mine)

    # formats and plots not asked for are left as they are
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".png", ".svg", ".tex", ".csv")}
    third = report(str(pub), "--no-plots")
    assert third.returncode == 0 and "removed" not in third.stderr
    assert {p: p.stat().st_mtime_ns for p in kept if p.exists()} == kept


def test_report_from_another_store_into_a_published_folder_is_refused(tmp_path):
    pub, other = tmp_path / "pub", Store(tmp_path / "other")
    make_store(pub)
    (pub / MARKER).write_text("published\n")
    (pub / "report").mkdir()
    (pub / "report" / "report.md").write_text("the published report")
    other.add_runs("hand", FULL[:1])
    finish(other, FULL[0], 0.9)
    for out in (pub / "report", pub, pub / "report" / "sub"):
        res = report(str(other.dir), "--out", str(out), "--no-plots")
        assert res.returncode == 2, res.stdout
        assert "lies in the published results directory" in res.stderr and "another --out" in res.stderr
    assert sorted(p.name for p in pub.rglob("*") if p.is_file()) == [MARKER, "report.md", "results.sqlite"]
    assert (pub / "report" / "report.md").read_text() == "the published report"
    assert report(str(other.dir), "--no-plots").returncode == 0  # its own folder: fine
    assert (other.dir / "report" / "report.md").is_file()


def test_a_figure_must_be_named_as_a_report_figure(tmp_path):
    """A figure a rebuild would not recognise as its own (and so never remove) is refused when saved."""
    with pytest.raises(ValueError, match="must start with one of acc_vs_compression"):
        save(Figure(), tmp_path, "loss_landscape", "t", "c")
    assert save(Figure(), tmp_path, "curves_x", "t", "c").png.is_file()
