"""The progress display where the output is not a terminal: a line per epoch and per run, never wrapped."""

from __future__ import annotations

import io
import re

import pytest
import yaml
from rich.console import Console
from rich.markup import escape

from harness.config import RunOutcome, RunSpec, RunStatus
from harness.progress import RichReporter, make_console, make_progress
from tests.conftest import cli, tiny_suite

RUN = RunSpec.of(
    {
        "dataset": "mnist",
        "model": "lenet5",
        "method": "tdlrt",
        "params": {"tau": 0.15, "r_max": 0.5},
        "initialization": "random",
        "seed": 0,
        "training": {},
        "budget": {},
    }
)


def test_log_lines_are_one_per_event_and_not_wrapped(monkeypatch):
    out = io.StringIO()
    console = make_console()
    monkeypatch.setattr(Console, "file", property(lambda self: out))
    long_label = "x" * 150 + "/tdlrt[tau=0.15]/random/s0"
    reporter = RichReporter(make_progress(console), {RUN.id: long_label})
    with reporter.progress:
        reporter.grid_start(1, 0)
        reporter.run_begin(RUN, 0, 1)
        reporter.run_start(2, 10)
        reporter.step(10)
        for epoch in range(2):
            reporter.epoch_end({"epoch": epoch, "train_loss": 0.5, "test_acc": 0.9, "seconds": 1.0})
        reporter.run_end(RUN, RunOutcome(RunStatus.FAILED, error="DivergedError: loss became NaN", detail="tb"))
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["1/2", "2/2"] and all(ln.endswith(long_label) for ln in epochs)
    (failed,) = [ln for ln in lines if ln.startswith("failed")]
    assert long_label in failed and failed.endswith("DivergedError: loss became NaN")


def test_a_run_without_a_short_label_shows_its_full_label():
    assert RichReporter(make_progress(Console(file=io.StringIO())))._label(RUN) == escape(RUN.label)
    assert RUN.label == "mnist/lenet5/tdlrt[r_max=0.5, tau=0.15]/random/s0"


# -- a real grid, its output captured as in a log file: labels tell runs apart, no line is broken ----------

LONG_TRAINING = {"batch_size": 32, "lr": 0.01, "momentum": 0.8, "nesterov": True, "weight_decay": 0.0001}


@pytest.fixture(scope="module")
def grid_log(tmp_path_factory):
    """Two runs of one method whose sub-grids differ in many training settings: labels of 170+ characters."""
    tmp = tmp_path_factory.mktemp("grid")
    suite = tmp / "grid.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(grids=[{"name": "plain"}, {"name": "long", "training": LONG_TRAINING}])))
    res = cli("run", str(suite), "--results", str(tmp / "res"))
    assert res.returncode == 0, res.stdout + res.stderr
    return suite, tmp / "res", res.stdout


def test_a_grid_log_never_breaks_a_long_label(grid_log):
    suite, _, out = grid_log
    label = (
        "mnist_subset/lenet5/full/pytorch/s0 (training.batch_size=32, training.lr=0.01, training.momentum=0.8, "
        "training.nesterov=True, training.weight_decay=0.0001)"
    )
    lines = out.splitlines()
    epoch = [ln for ln in lines if ln.startswith("epoch ") and ln.endswith(label)]
    done = [ln for ln in lines if ln.startswith("done ") and f" {label}  acc " in ln]
    assert len(epoch) == 1 and len(done) == 1 and len(done[0]) > 200, out  # longer than any console width
    # every line naming a training setting holds a whole label: none is a wrapped remainder
    assert all(ln.startswith(("epoch ", "done ")) for ln in lines if "training." in ln), out


def test_run_dry_run_and_export_label_runs_by_what_differs(grid_log):
    suite, results, out = grid_log
    plain = "mnist_subset/lenet5/full/pytorch/s0 (training.batch_size=64, training.lr=0.05, training.momentum=0.9"
    assert f"done   {plain}, training.nesterov=False, training.weight_decay=0)  acc " in out
    dry = cli("run", str(suite), "--results", str(results), "--dry-run").stdout
    labels = [m[1] for m in re.finditer(r"^[0-9a-f]{16}  \w+ +(.+)$", dry, re.MULTILINE)]
    assert len(labels) == 2 and len(set(labels)) == 2 and all("(training." in x for x in labels), dry
    assert "augmentation" not in dry and "epochs" not in dry  # settings the runs share are not listed
    exported = cli("export", str(results)).stdout
    assert sum(x in exported for x in labels) == 2  # the export's label column is the same


def test_dry_run_lists_the_parameters_that_differ_and_no_default(write_suite):
    path = write_suite(tiny_suite(methods=[{"name": "dlrt", "params": {"tau": [0.1, 0.2]}}], seeds=[0]))
    res = cli("run", str(path), "--results", str(path.parent / "res"), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "mnist_subset/lenet5/dlrt[tau=0.1]/random/s0" in res.stdout
    assert "mnist_subset/lenet5/dlrt[tau=0.2]/random/s0" in res.stdout
    assert "r_max" not in res.stdout and "adaptive_modes" not in res.stdout


def test_a_resumed_run_says_so_and_its_bar_starts_at_its_epochs(monkeypatch):
    out = io.StringIO()
    console = make_console()
    monkeypatch.setattr(Console, "file", property(lambda self: out))
    reporter = RichReporter(make_progress(console), {RUN.id: "the-run"})
    rows = [{"epoch": e, "train_loss": 0.5, "test_acc": 0.9, "seconds": 1.0} for e in range(2)]
    with reporter.progress:
        reporter.grid_start(1, 0)
        reporter.run_begin(RUN, 0, 1)
        reporter.run_start(5, 10)
        reporter.resumed(rows)
        (task,) = [t for t in reporter.progress.tasks if t.description.startswith("the-run")]
        assert task.completed == 20 and "epoch 3/5" in task.description
        reporter.notice("checkpoint x: not a readable checkpoint: starting from epoch 0")
        metrics = {"final_acc": 0.9, "best_acc": 0.9, "compression": 0.0, "params_inference": 10}
        reporter.run_end(RUN, RunOutcome(RunStatus.DONE, {**metrics, "epoch_seconds": 1.0, "resumed_from": 2}))
    text = out.getvalue()
    assert "resumed from epoch 2 (of 5): the-run" in text
    assert "note: checkpoint x: not a readable checkpoint" in text
    (done,) = [ln for ln in text.splitlines() if ln.startswith("done")]
    assert done.rstrip().split("  (")[0].endswith("resumed from epoch 2")


def test_a_workers_reporter_forwards_the_resume_and_notes():
    import queue

    from harness.executors import _QueueReporter

    events: queue.Queue = queue.Queue()
    rep = _QueueReporter(3, events)
    rep.resumed([{"epoch": 0, "train_loss": 0.5, "test_acc": 0.9, "seconds": 1.0, "layers": []}])
    rep.notice("a note")
    assert events.get_nowait() == ("resumed", 3, [{"epoch": 0, "train_loss": 0.5, "test_acc": 0.9}])
    assert events.get_nowait() == ("notice", 3, "a note")
