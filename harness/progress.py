"""The progress display of ``harness run``: rich bars in a terminal, plain lines in a log.

In a terminal: a grid bar, one bar per run in training (one per worker), and one line per finished run.
Where the output is not a terminal (a log file, CI, a pipe): one line per epoch instead of the bars, and
lines are never wrapped, so a log holds one line per event whatever its width.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness.config import RunOutcome, RunSpec, RunStatus
from harness.runner import Reporter
from harness.units import shown


def make_console(stderr: bool = False) -> Console:
    """A console for the CLI: wrapping at the terminal's width, never where the output is not a terminal."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


def make_progress(console: Console) -> Progress:
    """The bars: description, bar, steps done of total, time elapsed and remaining."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def summary(metrics: dict[str, Any]) -> str:
    """One line of a finished run's metrics: accuracy (with a validation split: the test accuracy at the epoch best
    on validation), compression (in percent), size, speed and ranks."""
    m = shown(metrics)
    if m.get("best_val_acc") is not None:  # judged at the epoch best on validation
        judged = [
            f"acc {m['test_acc_at_best_val']:.2f}% at epoch {m['best_epoch']} (val {m['best_val_acc']:.2f}%)",
            f"final {m['final_acc']:.2f}%",
        ]
    else:
        judged = [f"acc {m['final_acc']:.2f}%", f"best {m['best_acc']:.2f}%"]
    if m.get("start_acc") is not None:  # a run from a trained model: its accuracy right after the method took it
        judged.append(f"from {m['start_acc']:.2f}% at the start")
    parts = [
        *judged,
        f"compression {m['compression']:.1f}%",
        f"{metrics['params_inference']:,} params",
        f"{metrics['epoch_seconds']:.1f} s/epoch",
    ]
    if metrics.get("total_epochs", metrics.get("epochs")) != metrics.get("epochs"):
        parts.append(f"{metrics['total_epochs']} epochs in all, {metrics['total_train_seconds']:.0f} s")
    if metrics.get("ranks"):
        ranks = " ".join(str(r) for r in metrics["ranks"].values())
        parts.append(f"ranks {ranks}")
    if metrics.get("resumed_from") is not None:
        parts.append(f"resumed from epoch {metrics['resumed_from']}")
    return ", ".join(parts)


class RichReporter(Reporter):
    """Progress of a grid on a rich :class:`Progress`; ``labels`` names runs by id (see
    :func:`harness.config.short_run_labels`), a run without one by its full label."""

    def __init__(self, progress: Progress, labels: Mapping[str, str] | None = None):
        self.progress = progress
        self.labels = dict(labels or {})
        self.grid: TaskID | None = None
        self.slots: dict[int, dict[str, Any]] = {}  # worker slot -> label, task, epochs, started

    def _label(self, run: RunSpec) -> str:
        return escape(self.labels.get(run.id) or run.label)

    def _print(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    def grid_start(self, total: int, skipped: int) -> None:
        self.grid = self.progress.add_task("grid", total=total)

    def run_begin(self, run: RunSpec, index: int, total: int) -> None:
        self._drop_task()
        self.slots[self.slot] = {"label": self._label(run), "task": None, "epochs": 0, "started": time.perf_counter()}

    def run_start(self, epochs: int, steps_per_epoch: int) -> None:
        s = self.slots[self.slot]
        if s["task"] is not None:  # a method trained a pass before the loop (harness.session): a new bar
            self.progress.remove_task(s["task"])
        s["epochs"], s["steps"] = epochs, steps_per_epoch
        s["task"] = self.progress.add_task(f"{s['label']} epoch 1/{epochs}", total=epochs * steps_per_epoch)

    def step(self, n: int = 1) -> None:
        task = self.slots.get(self.slot, {}).get("task")
        if task is not None:
            self.progress.advance(task, n)

    def epoch_end(self, row: dict[str, Any]) -> None:
        s = self.slots[self.slot]
        e = shown(row)  # epochs from 1, accuracy in percent
        if not self.progress.console.is_terminal:  # a log file or pipe shows no bars: one line per epoch instead
            self._print(
                f"epoch {e['epoch']}/{s['epochs']}  loss {e['train_loss']:.4f}  "
                f"acc {e['test_acc']:.2f}%  {e['seconds']:.0f} s  {s['label']}"
            )
        self._describe(s, e)

    def _describe(self, s: dict[str, Any], e: dict[str, Any]) -> None:
        """The run's bar after epoch ``e`` (as shown: epochs from 1, accuracy in percent)."""
        if s["task"] is not None:
            nxt = min(e["epoch"] + 1, s["epochs"])
            self.progress.update(
                s["task"],
                description=(
                    f"{s['label']} epoch {nxt}/{s['epochs']} loss {e['train_loss']:.3f} acc {e['test_acc']:.2f}%"
                ),
            )

    def resumed(self, rows: list[dict[str, Any]]) -> None:
        s = self.slots[self.slot]
        self._print(f"resumed from epoch {len(rows)} (of {s['epochs']}): {s['label']}")
        if s["task"] is not None and rows:
            self.progress.advance(s["task"], len(rows) * s["steps"])
            self._describe(s, shown(rows[-1]))

    def notice(self, text: str) -> None:
        self._print(f"[yellow]note:[/] {escape(text)}")

    def run_end(self, run: RunSpec, outcome: RunOutcome) -> None:
        s = self.slots.get(self.slot)
        took = f"  ({time.perf_counter() - s['started']:.0f} s)" if s else ""
        if outcome.status is RunStatus.DONE:
            self._print(f"[green]done[/]   {self._label(run)}  {escape(summary(outcome.metrics or {}))}{took}")
        else:
            self._print(f"[red]failed[/] {self._label(run)}  {escape(outcome.error or '')}")
        if self.grid is not None:
            self.progress.advance(self.grid)
        self._drop_task()

    def _drop_task(self) -> None:
        s = self.slots.pop(self.slot, None)
        if s and s["task"] is not None:
            self.progress.remove_task(s["task"])
