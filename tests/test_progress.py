"""The progress display where the output is not a terminal: a line per epoch and per run, never wrapped."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape

from harness.config import RunOutcome, RunSpec, RunStatus
from harness.progress import RichReporter, make_console, make_progress

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
