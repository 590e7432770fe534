"""Running a grid: sync its runs into the store, then train every pending run, one after another.

The store is the single source of truth: a run is claimed before it trains and finished (done or
failed, with its error) after, so a killed grid resumes where it stopped and nothing runs twice.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.store import Store
from harness.suite import RunSpec
from harness.train import Callbacks, train_run


@dataclass
class Plan:
    """What a ``harness run`` will do: runs to train now, and how many are already settled."""

    todo: list[RunSpec]
    done: int
    failed: int
    released: list[str]


def plan(store: Store, suite_name: str, runs: list[RunSpec], rerun_failed: bool = False, force: bool = False) -> Plan:
    """Register the grid's runs in the store and choose which to train."""
    store.add_runs(suite_name, runs)
    released = store.release_stale()
    state = {r["id"]: r["status"] for r in store.runs([r.id for r in runs])}
    again = [
        r.id
        for r in runs
        if (force and state[r.id] in ("done", "failed")) or (rerun_failed and state[r.id] == "failed")
    ]
    store.reset(again)
    for rid in again:
        state[rid] = "pending"
    todo = [r for r in runs if state[r.id] == "pending"]
    return Plan(todo, sum(s == "done" for s in state.values()), sum(s == "failed" for s in state.values()), released)


class Reporter(Callbacks):
    """Grid-level progress; the CLI supplies a rich one, tests a silent one. ``slot`` says which worker
    an event comes from when several train at once."""

    slot: int = 0

    def grid_start(self, total: int, skipped: int) -> None: ...
    def run_begin(self, run: RunSpec, index: int, total: int) -> None: ...
    def run_end(self, run: RunSpec, status: str, metrics: dict[str, Any] | None, error: str | None) -> None: ...


class _StoreCallbacks(Callbacks):
    def __init__(self, store: Store, rid: str, reporter: Reporter):
        self.store, self.rid, self.reporter = store, rid, reporter

    def run_start(self, epochs: int, steps_per_epoch: int) -> None:
        self.reporter.run_start(epochs, steps_per_epoch)

    def step(self, n: int = 1) -> None:
        self.reporter.step(n)

    def epoch_end(self, row: dict[str, Any]) -> None:
        self.store.add_epoch(self.rid, row)
        self.reporter.epoch_end(row)


def execute(
    store: Store,
    runs: list[RunSpec],
    reporter: Reporter | None = None,
    data_root: Path | None = None,
    device: str = "auto",
    download: bool = True,
) -> dict[str, int]:
    """Train each run that this process can claim; returns counts of done and failed runs."""
    reporter = reporter or Reporter()
    counts = {"done": 0, "failed": 0, "skipped": 0}
    for i, run in enumerate(runs):
        if not store.claim(run.id):
            counts["skipped"] += 1  # another worker has it
            continue
        reporter.run_begin(run, i, len(runs))
        try:
            metrics = train_run(
                run.config,
                data_root=data_root,
                device=device,
                callbacks=_StoreCallbacks(store, run.id, reporter),
                download=download,
            )
        except (KeyboardInterrupt, SystemExit):
            store.release(run.id)
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            detail = traceback.format_exc(limit=8)
            store.finish(run.id, "failed", error=f"{error}\n\n{detail}")
            counts["failed"] += 1
            reporter.run_end(run, "failed", None, error)
            continue
        store.finish(run.id, "done", metrics)
        counts["done"] += 1
        reporter.run_end(run, "done", metrics, None)
    return counts
