"""One resolver for a command's target: a suite file (or its name in ./suites/) or a results directory."""

from __future__ import annotations

import re

import pytest
import yaml

from harness.locate import TargetError, locate
from harness.store import Store
from harness.suite import SuiteError, expand, load_suite
from tests.conftest import ROOT, cli, tiny_suite


def test_results_directory_suite_file_and_neither(tmp_path, write_suite, monkeypatch):
    res = tmp_path / "res"
    res.mkdir()
    t = locate(res)
    assert t.store.dir == res and t.suite is None and t.runs() is None and t.references() == []
    with pytest.raises(TargetError, match="no results store"):
        t.require_store()

    path = write_suite({**tiny_suite(), "references": "published.yaml"})
    t = locate(str(path), results=res)
    assert t.store.dir == res and t.suite.name == "tiny" and t.path == path
    assert [r.id for r in t.runs()] == [r.id for r in expand(t.suite)]
    assert t.references() == [path.parent / "published.yaml"]

    monkeypatch.chdir(tmp_path)  # a bare name is looked up in ./suites/, results default to results/<name>/
    (tmp_path / "suites").mkdir()
    path.rename(tmp_path / "suites" / "tiny.yaml")
    t = locate("tiny")
    assert t.path.name == "tiny.yaml" and t.store.dir.as_posix() == "results/tiny"

    with pytest.raises(TargetError, match="neither a results directory nor a suite file"):
        locate(tmp_path / "nowhere")
    (tmp_path / "bad.yaml").write_text("name: bad\n")
    with pytest.raises(SuiteError):
        locate(tmp_path / "bad.yaml")


def test_commands_taking_a_target_agree(tmp_path, write_suite):
    path = write_suite(tiny_suite(seeds=[0, 1]))
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("status", "export", "report"):
        res = cli(command, str(empty))
        assert res.returncode == 2 and "no results store" in res.stderr, command
        res = cli(command, str(tmp_path / "nowhere.yaml"))
        assert res.returncode == 2 and "neither a results directory nor a suite file" in res.stderr, command
    store = Store(tmp_path / "res")
    store.add_runs("tiny", expand(load_suite(path))[:1])
    res = cli("status", str(path), "--results", str(store.dir))
    assert res.returncode == 0 and "pending" in res.stdout and "2" in res.stdout


def table(stdout: str) -> dict[str, list[int]]:
    """A status table's rows: status -> its counts, one per column."""
    rows = re.findall(r"│ (\w+)\s+((?:│ \d+\s+)+)│", stdout)
    return {st: [int(n) for n in re.findall(r"\d+", cells)] for st, cells in rows}


def test_status_of_a_suite_and_of_its_directory_show_the_same_store(tmp_path):
    """A suite's status counts every run of its store too: its own runs, and apart, the others (here budget
    runs of the same suite); the directory's status shows them all, and the two agree."""
    (tmp_path / "suites").mkdir()
    path = tmp_path / "suites" / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_suite(seeds=[0, 1])))
    ours = expand(load_suite(path))
    others = expand(load_suite(path, {"budget": {"train_subset": 200}}))
    store = Store(tmp_path / "results" / "tiny")
    store.add_runs("tiny", ours + others)
    outcomes = [("done", None), ("failed", "ValueError: ours"), ("failed", "RuntimeError: theirs"), ("done", None)]
    for run, (status, error) in zip(ours + others, outcomes, strict=True):
        assert store.claim(run.id)
        store.finish(run.id, status, {"final_acc": 0.5} if status == "done" else None, error)

    suite = cli("status", "tiny", cwd=tmp_path)
    directory = cli("status", "results/tiny", cwd=tmp_path)
    assert suite.returncode == 0 and directory.returncode == 0, suite.stderr + directory.stderr
    assert "this suite" in suite.stdout and "other runs in the store" in suite.stdout
    assert "results/tiny holds 4 runs, 2 of them not in this suite" in suite.stdout
    split, whole = table(suite.stdout), table(directory.stdout)
    assert split["done"] == [1, 1] and split["failed"] == [1, 1] and split["pending"] == [0, 0]
    assert {st: [sum(n)] for st, n in split.items()} == whole
    for res in (suite, directory):
        assert "ValueError: ours" in res.stdout and "RuntimeError: theirs" in res.stdout
    assert suite.stdout.index("ValueError: ours") < suite.stdout.index("other runs in the store:")
    assert suite.stdout.index("other runs in the store:") < suite.stdout.index("RuntimeError: theirs")


def test_a_suite_name_that_resolves_to_nothing_says_where_it_looked(tmp_path):
    """Outside the checkout (no ./suites/), a suite name fails with the paths tried and what to do instead."""
    tried = "tried quickstart, suites/quickstart, suites/quickstart.yaml"
    for args in (("run", "quickstart"), ("run", "quickstart", "--dry-run"), ("status", "quickstart")):
        res = cli(*args, cwd=tmp_path)
        assert res.returncode == 2, args
        assert tried in res.stderr and f"relative to {tmp_path}" in res.stderr, res.stderr
        assert "harness list suites" in res.stderr and "path of a suite file" in res.stderr
        assert str(ROOT / "suites" / "quickstart.yaml") in res.stderr  # the one that comes with harness
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "results").exists()
    res = cli("report", "nothing.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "tried nothing.yaml, suites/nothing.yaml (" in res.stderr
    listed = cli("list", "suites", cwd=tmp_path)
    assert listed.returncode == 0 and f"no suites/ folder in {tmp_path}" in listed.stderr
    assert str(ROOT / "suites") in listed.stderr
    inside = cli("list", "suites", cwd=ROOT)
    assert "suites/quickstart.yaml" in inside.stdout and "no suites/ folder" not in inside.stderr
