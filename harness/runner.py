"""Running a grid: sync its runs into the store, then train every pending run, one after another.

The store is the single source of truth: a run is claimed before it trains and finished (done or
failed, with its error) after, so a killed grid resumes where it stopped and nothing runs twice.
:func:`run_one` trains one claimed run and :func:`record_outcome` stores how it ended; every executor
(this sequential loop, the local worker processes, the Ray driver) records outcomes through them.
"""

from __future__ import annotations

import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkpoint import CheckpointWriteError, remove_checkpoint
from harness.config import RunOutcome, RunSpec, RunStatus
from harness.store import Store, StoreError
from harness.train import Callbacks, train_run

DONE, FAILED, SKIPPED = RunStatus.DONE.value, RunStatus.FAILED.value, "skipped"
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) received: handled everywhere as Ctrl-C is, exit status 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class StopSignal:
    """The stop signal received inside :func:`stop_on_signals`, if any. A library that turns the handler's
    exception into a plain KeyboardInterrupt (Ray's ``wait`` does) loses the signal; this keeps it."""

    signum: int | None = None

    def exit_code(self, exc: KeyboardInterrupt) -> int:
        """128 + the signal that stopped the process (130 for Ctrl-C)."""
        if isinstance(exc, Interrupted):
            return exc.exit_code
        return 128 + (self.signum or signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[StopSignal]:
    """SIGTERM and SIGHUP raise :class:`Interrupted` (a KeyboardInterrupt) in this process while inside."""
    received = StopSignal()

    def stop(signum: int, frame: Any) -> None:
        for s in STOP_SIGNALS:  # one stop is enough: a second signal must not break the clean-up
            signal.signal(s, signal.SIG_IGN)
        received.signum = signum
        raise Interrupted(signum)

    saved = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


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
    state = {r["id"]: RunStatus(r["status"]) for r in store.runs([r.id for r in runs])}
    again = [
        r.id for r in runs if (force and state[r.id].settled) or (rerun_failed and state[r.id] is RunStatus.FAILED)
    ]
    store.reset(again)
    for rid in again:
        state[rid] = RunStatus.PENDING
        remove_checkpoint(store.dir, rid)  # trained again from the start, never from a kept checkpoint
    todo = [r for r in runs if state[r.id] is RunStatus.PENDING]
    statuses = list(state.values())
    return Plan(todo, statuses.count(RunStatus.DONE), statuses.count(RunStatus.FAILED), released)


def tally() -> dict[str, int]:
    """Counts of an executor's call: runs done, failed, and skipped (another worker had them)."""
    return {DONE: 0, FAILED: 0, SKIPPED: 0}


class Reporter(Callbacks):
    """Grid-level progress; the CLI supplies a rich one, tests a silent one. ``slot`` says which worker
    an event comes from when several train at once."""

    slot: int = 0

    def grid_start(self, total: int, skipped: int) -> None: ...
    def run_begin(self, run: RunSpec, index: int, total: int) -> None: ...
    def run_end(self, run: RunSpec, outcome: RunOutcome) -> None: ...

    def resumed(self, rows: list[dict[str, Any]]) -> None:
        """The run resumes from its checkpoint after ``len(rows)`` epochs (the store has them back)."""


class _StoreCallbacks(Callbacks):
    def __init__(self, store: Store, rid: str, reporter: Callbacks):
        self.store, self.rid, self.reporter = store, rid, reporter

    def results_dir(self) -> Path | None:
        return self.store.dir

    def resumed(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:  # the store dropped the run's epochs when it was given back
            self.store.add_epoch(self.rid, row)
        self.reporter.resumed(rows)

    def notice(self, text: str) -> None:
        self.reporter.notice(text)

    def run_start(self, epochs: int, steps_per_epoch: int) -> None:
        self.reporter.run_start(epochs, steps_per_epoch)

    def step(self, n: int = 1) -> None:
        self.reporter.step(n)

    def epoch_end(self, row: dict[str, Any]) -> None:
        self.store.add_epoch(self.rid, row)
        self.reporter.epoch_end(row)

    def model_file(self, data: bytes) -> None:
        keep_model(self.store, self.rid, data)


def keep_model(store: Store, rid: str, data: bytes) -> None:
    """Keep a finished run's model file in its run directory of the results directory (RESULTS/runs/<id>/); a disk
    that cannot take it is a store error (the run goes back to pending, the grid stops and says why)."""
    from harness.model_file import run_model_path, write_run_model
    from harness.store_errors import explain

    try:
        write_run_model(store.dir, rid, data)
    except OSError as exc:
        err = explain(exc, run_model_path(store.dir, rid), writing=True)
        if err is None:
            raise
        raise err from exc


def failure(exc: BaseException, detail: str | None = None) -> RunOutcome:
    """The outcome of a run that raised ``exc`` (detail: the traceback being handled, unless given)."""
    return RunOutcome(
        RunStatus.FAILED,
        error=f"{type(exc).__name__}: {exc}",
        detail=traceback.format_exc(limit=8) if detail is None else detail,
    )


def attempt(
    config: dict[str, Any],
    callbacks: Callbacks | None = None,
    data_root: Path | None = None,
    device: str = "auto",
    download: bool = True,
) -> RunOutcome:
    """Train one run configuration: done with its metrics, or failed with the error and its traceback.
    Interrupts (KeyboardInterrupt, SystemExit) and a store that cannot be written are not outcomes: they
    propagate."""
    try:
        metrics = train_run(config, data_root=data_root, device=device, callbacks=callbacks, download=download)
    except StoreError:
        raise
    except CheckpointWriteError as exc:  # a full or read-only disk stops the grid like the store's own files
        from harness.store_errors import explain

        err = explain(exc.cause, exc.path, writing=True)
        if err is not None:
            raise err from exc
        return failure(exc)
    except Exception as exc:
        return failure(exc)
    return RunOutcome(RunStatus.DONE, metrics)


def record_outcome(store: Store, rid: str, outcome: RunOutcome) -> None:
    """Store how a claimed run ended: done with its metrics, or failed with its error and traceback."""
    store.finish(rid, outcome.status, outcome.metrics, outcome.stored_error)


def run_one(
    store: Store,
    run: RunSpec,
    reporter: Reporter,
    data_root: Path | None = None,
    device: str = "auto",
    download: bool = True,
    keep_checkpoints: bool = False,
) -> RunOutcome:
    """Train a run this process has claimed, its epochs stored as they finish, and record its outcome; its
    checkpoint (:mod:`harness.checkpoint`) is then deleted unless ``keep_checkpoints``.
    An interrupt, or a store that cannot take the run's results (a full disk), gives the run back (pending)
    and propagates; if even that cannot be written, the next ``harness run`` releases it (its process is gone).
    A run given back keeps its checkpoint: it resumes from it."""
    try:
        outcome = attempt(run.config, _StoreCallbacks(store, run.id, reporter), data_root, device, download)
        record_outcome(store, run.id, outcome)
    except (KeyboardInterrupt, SystemExit, StoreError):
        with suppress(StoreError):
            store.release(run.id)
        raise
    settle_checkpoint(store, run.id, keep_checkpoints)
    return outcome


def settle_checkpoint(store: Store, rid: str, keep: bool) -> None:
    """A settled run's checkpoint: deleted unless ``keep`` (``--keep-checkpoints``)."""
    if not keep:
        with suppress(OSError):
            remove_checkpoint(store.dir, rid)


def execute(
    store: Store,
    runs: list[RunSpec],
    reporter: Reporter | None = None,
    data_root: Path | None = None,
    device: str = "auto",
    download: bool = True,
    keep_checkpoints: bool = False,
) -> dict[str, int]:
    """Train each run that this process can claim; returns counts of done and failed runs."""
    reporter = reporter or Reporter()
    counts = tally()
    for i, run in enumerate(runs):
        if not store.claim(run.id):
            counts[SKIPPED] += 1  # another worker has it
            continue
        reporter.run_begin(run, i, len(runs))
        outcome = run_one(store, run, reporter, data_root, device, download, keep_checkpoints)
        counts[outcome.status.value] += 1
        reporter.run_end(run, outcome)
    return counts
