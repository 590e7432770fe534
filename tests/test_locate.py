"""One resolver for a command's target: a suite file (or its name in ./suites/) or a results directory."""

from __future__ import annotations

import pytest

from harness.locate import TargetError, locate
from harness.store import Store
from harness.suite import SuiteError, expand, load_suite
from tests.conftest import cli, tiny_suite


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
