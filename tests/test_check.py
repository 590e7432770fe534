"""Accuracy regression check against committed baselines."""

from __future__ import annotations

import json

from tests.conftest import ROOT, cli, run_cli, tiny_suite


def test_check_passes_unchanged_and_fails_naming_run_and_metric(tmp_path, write_suite):
    path = write_suite(tiny_suite(seeds=[0, 1]))
    base = tmp_path / "baseline.json"
    res = cli("check", str(path), "--against", str(base))
    assert res.returncode == 2 and "create it with --update" in res.stderr
    assert cli("check", str(path), "--against", str(base), "--update").returncode == 0
    doc = json.loads(base.read_text())
    assert len(doc["runs"]) == 2 and doc["tolerance"]["final_acc"] == 0.01 and doc["threads"] >= 1
    res = cli("check", str(path), "--against", str(base))
    assert res.returncode == 0 and "check passed: 2 runs" in res.stdout

    label = sorted(doc["runs"])[1]
    doc["runs"][label]["final_acc"] += 0.05  # beyond the 0.01 tolerance
    doc["runs"][sorted(doc["runs"])[0]]["compression"] += 1e-9  # within tolerance: not reported
    base.write_text(json.dumps(doc))
    res = cli("check", str(path), "--against", str(base))
    assert res.returncode == 1
    assert "1 difference(s)" in res.stderr and label in res.stderr and "final_acc" in res.stderr
    assert "tolerance ±0.01" in res.stderr

    res = cli("check", str(path), "--against", str(base), "--tolerance", "final_acc=0.1")
    assert res.returncode == 0  # a looser tolerance on the command line accepts it


def test_check_reports_runs_missing_from_baseline(tmp_path, write_suite):
    base = tmp_path / "b.json"
    assert cli("check", str(write_suite(tiny_suite())), "--against", str(base), "--update").returncode == 0
    res = cli("check", str(write_suite(tiny_suite(seeds=[0, 5]), "more.yaml")), "--against", str(base))
    assert res.returncode == 1 and "s5: not in the baseline" in res.stderr


def test_check_trains_with_the_threads_the_baseline_was_written_with(tmp_path, write_suite):
    """A baseline records its torch thread count; a check trains with it again unless --threads says otherwise."""
    base, path = tmp_path / "b.json", write_suite(tiny_suite())
    res = cli("check", str(path), "--against", str(base), "--update", "--threads", "1")
    assert res.returncode == 0 and json.loads(base.read_text())["threads"] == 1
    res = cli("check", str(path), "--against", str(base))
    assert res.returncode == 0 and "with 1 torch thread(s)" in res.stdout
    res = cli("check", str(path), "--against", str(base), "--threads", "2")
    assert "with 2 torch thread(s)" in res.stdout


def test_smoke_suite_matches_committed_baseline():
    """In a fresh process, as CI runs it, with the baseline's thread count (2: it was written on two cores)."""
    res = run_cli(
        "check",
        str(ROOT / "suites" / "smoke.yaml"),
        "--against",
        str(ROOT / "results" / "baselines" / "smoke.json"),
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout + res.stderr
