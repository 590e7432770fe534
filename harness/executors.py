"""Executors: who trains the pending runs of a grid. The store stays the single source of truth.

* ``local`` (default): ``workers`` processes on this machine, each claiming runs atomically from the
  store and pinned to its share of the CPUs: its own ``threads`` cores (CPU affinity, where the OS allows it)
  and that many torch threads (and to one GPU each when several are visible).
  ``workers=1`` trains in this process.
* ``ray``: each pending run becomes a Ray task with its resource needs; the driver claims the run,
  collects the task's result and writes it to the store. A task that raises or dies (worker lost, OOM)
  is recorded failed with the reason, and the grid goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
import time
import traceback
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import RunOutcome, RunSpec, RunStatus
from harness.runner import (
    SKIPPED,
    STOP_SIGNALS,
    Reporter,
    attempt,
    execute,
    failure,
    keep_model,
    record_outcome,
    settle_checkpoint,
    stop_on_signals,
    tally,
)
from harness.store import Store, StoreError


@dataclass(frozen=True)
class Options:
    """How runs are trained wherever they run."""

    data_root: Path | None = None
    device: str = "auto"
    download: bool = True
    threads: int | None = None  # torch threads per run (default: cores / workers)
    keep_checkpoints: bool = False  # keep a finished run's checkpoint (harness.checkpoint) instead of deleting it


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def cpu_shares(available: list[int], workers: int, threads: int) -> list[list[int]] | None:
    """The CPUs each of ``workers`` processes is pinned to: disjoint blocks of ``threads`` CPUs in order, or
    ``None`` (no pinning) when the blocks would not fit in ``available``."""
    cpus = sorted(available)
    if workers * threads > len(cpus):
        return None
    return [cpus[w * threads : (w + 1) * threads] for w in range(workers)]


def _available_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def run_local(store: Store, runs: list[RunSpec], reporter: Reporter, options: Options, workers: int = 1) -> dict:
    """Train ``runs`` with ``workers`` local processes (1: in this process)."""
    if workers <= 1:
        _set_threads(options.threads)
        return execute(
            store, runs, reporter, options.data_root, options.device, options.download, options.keep_checkpoints
        )
    available = _available_cpus()
    threads = options.threads or max(1, len(available) // workers)
    shares = cpu_shares(available, workers, threads) if hasattr(os, "sched_setaffinity") else None
    gpus = _visible_gpus(options.device)
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    procs = []
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        for w in range(workers):
            if len(gpus) > 1:  # one GPU per worker, chosen before the child imports torch
                os.environ["CUDA_VISIBLE_DEVICES"] = gpus[w % len(gpus)]
            cpus = shares[w] if shares else None
            args = (w, str(store.dir), runs, options, threads, cpus, events)
            p = ctx.Process(target=_worker_main, args=args, daemon=True)
            p.start()
            procs.append(p)
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    return _collect(store, runs, reporter, procs, events)


def _visible_gpus(device: str) -> list[str]:
    if device == "cpu":
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


class _QueueReporter(Reporter):
    """A worker's reporter: forwards events to the parent, batching step counts."""

    def __init__(self, worker: int, events):
        self.w, self.events, self.pending, self.last = worker, events, 0, 0.0

    def run_begin(self, run, index, total):
        self.events.put(("begin", self.w, run.id))

    def run_start(self, epochs, steps_per_epoch):
        self.pending = 0  # steps of an earlier pass of the run (harness.session) belong to the bar it replaces
        self.events.put(("start", self.w, epochs, steps_per_epoch))

    def step(self, n=1):
        self.pending += n
        now = time.monotonic()
        if now - self.last > 0.25:
            self.events.put(("step", self.w, self.pending))
            self.pending, self.last = 0, now

    def epoch_end(self, row):
        if self.pending:
            self.events.put(("step", self.w, self.pending))
            self.pending = 0
        self.events.put(("epoch", self.w, {k: row[k] for k in ("epoch", "train_loss", "test_acc", "seconds")}))

    def resumed(self, rows):
        self.events.put(("resumed", self.w, [{k: r[k] for k in ("epoch", "train_loss", "test_acc")} for r in rows]))

    def notice(self, text):
        self.events.put(("notice", self.w, text))

    def run_end(self, run, outcome):
        self.events.put(("end", self.w, run.id, outcome))


def _worker_main(
    worker: int, store_dir: str, runs: list[RunSpec], options: Options, threads: int, cpus: list[int] | None, events
) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    _set_threads(threads)
    try:
        with stop_on_signals():  # the driver stops its workers with SIGTERM: each gives its run back first
            execute(
                Store(store_dir),
                runs,
                _QueueReporter(worker, events),
                options.data_root,
                options.device,
                options.download,
                options.keep_checkpoints,
            )
    except KeyboardInterrupt:
        pass
    except StoreError as exc:  # the store cannot be written (a full disk): the driver stops the grid and says why
        events.put(("error", worker, exc))
    finally:
        events.put(("exit", worker))


def _collect(store: Store, runs: list[RunSpec], reporter: Reporter, procs, events) -> dict:
    by_id = {r.id: r for r in runs}
    current: dict[int, str] = {}
    counts = tally()
    exited: set[int] = set()
    index = 0
    try:
        while len(exited) < len(procs):
            try:
                ev = events.get(timeout=0.5)
            except queue_mod.Empty:
                for w, p in enumerate(procs):  # a worker that died without saying so
                    if w not in exited and not p.is_alive():
                        exited.add(w)
                        _worker_lost(store, by_id, current.pop(w, None), p.exitcode, reporter, counts)
                continue
            kind, w = ev[0], ev[1]
            reporter.slot = w
            if kind == "begin":
                current[w] = ev[2]
                reporter.run_begin(by_id[ev[2]], index, len(runs))
                index += 1
            elif kind == "start":
                reporter.run_start(ev[2], ev[3])
            elif kind == "step":
                reporter.step(ev[2])
            elif kind == "epoch":
                reporter.epoch_end(ev[2])
            elif kind == "resumed":
                reporter.resumed(ev[2])
            elif kind == "notice":
                reporter.notice(ev[2])
            elif kind == "end":
                current.pop(w, None)  # the worker has recorded the outcome
                counts[ev[3].status.value] += 1
                reporter.run_end(by_id[ev[2]], ev[3])
            elif kind == "error":
                current.pop(w, None)  # the worker has given its run back
                raise ev[2]
            elif kind == "exit":
                exited.add(w)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM, SIGHUP) or the store failed: stop every worker
        _stop_workers(store, procs)
        raise
    for p in procs:
        p.join()
    return counts


def _stop_workers(store: Store, procs: list, grace: float = 15.0) -> None:
    """SIGTERM every worker (each gives its claimed run back), kill any still there after ``grace`` seconds,
    then release the runs of workers that could not (best effort: the store may be what failed)."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(5)
    with suppress(StoreError):
        store.release_stale()


def _worker_lost(
    store: Store, by_id: dict, rid: str | None, exitcode: int | None, reporter: Reporter, counts: dict
) -> None:
    if rid is None:
        return
    error = f"WorkerLost: worker process exited with code {exitcode} while training this run"
    _settle(store, by_id[rid], RunOutcome(RunStatus.FAILED, error=error), reporter, counts)


def _settle(store: Store, run: RunSpec, outcome: RunOutcome, reporter: Reporter, counts: dict) -> None:
    """The driver records a run's outcome itself (a lost worker, a Ray task), counts and reports it."""
    record_outcome(store, run.id, outcome)
    counts[outcome.status.value] += 1
    reporter.run_end(run, outcome)


# -- Ray ----------------------------------------------------------------------------------------------
RAY_MISSING = (
    "the ray executor needs Ray, which is not installed: pip install 'harness[ray]' (or pip install 'ray>=2.9')"
)


@dataclass
class RayResult:
    """What a Ray task gives back: the run's outcome, its epoch rows and model file, and what it said."""

    outcome: RunOutcome
    rows: list[dict[str, Any]]
    model: bytes | None = None
    notices: list[str] | None = None


def _ray_train(config: dict[str, Any], options: Options, threads: int, results: str | None) -> RayResult:
    """Runs inside a Ray worker (which may not reach the store): train one run; its outcome, epoch rows and
    model file. ``results``: the results directory where the worker can reach it (a local Ray instance), for the
    run's checkpoint and pretrained source."""
    from harness.train import Callbacks

    _set_threads(threads)

    class Collect(Callbacks):
        def __init__(self):
            self.rows = []
            self.model: bytes | None = None
            self.notices: list[str] = []

        def results_dir(self):
            return Path(results) if results else None

        def resumed(self, rows):
            self.rows.extend(rows)

        def notice(self, text):
            self.notices.append(text)

        def epoch_end(self, row):
            self.rows.append(row)

        def model_file(self, data):
            self.model = data

    cb = Collect()
    outcome = attempt(config, cb, options.data_root, options.device, options.download)
    return RayResult(outcome, cb.rows, cb.model, cb.notices)


def run_ray(
    store: Store,
    runs: list[RunSpec],
    reporter: Reporter,
    options: Options,
    address: str | None = None,
    cpus_per_run: int = 1,
    gpus_per_run: float | None = None,
    num_cpus: int | None = None,
) -> dict:
    """Submit every run this driver can claim as a Ray task; write results to the store as they finish."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(RAY_MISSING) from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        ray.init(**kwargs)
        for s, handler in saved.items():  # ray.init sets its own SIGTERM handler (exit): ours cancels the tasks
            signal.signal(s, handler)
    if gpus_per_run is None:
        gpus_per_run = 1 if options.device != "cpu" and ray.cluster_resources().get("GPU", 0) else 0
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(_ray_train)
    counts = tally()
    refs: dict[Any, RunSpec] = {}
    # checkpoints and pretrained sources live in the results directory: a local Ray instance's workers reach it
    results = None if address else str(store.dir.resolve())
    try:
        for run in runs:
            if store.claim(run.id):
                refs[task.remote(run.config, options, cpus_per_run, results)] = run
            else:
                counts[SKIPPED] += 1
        for i, run in enumerate(refs.values()):
            reporter.run_begin(run, i, len(refs))
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            run = refs[done[0]]
            try:
                result = ray.get(done[0])
            except Exception as exc:  # the task did not return: WorkerCrashedError, OutOfMemoryError, ...
                result = RayResult(_ray_failure(exc), [])
            for text in result.notices or []:  # a resumed run says so in its line (harness.progress.summary)
                reporter.notice(text)
            for row in result.rows:
                store.add_epoch(run.id, row)
            if result.model is not None and result.outcome.status is RunStatus.DONE:
                keep_model(store, run.id, result.model)
            _settle(store, run, result.outcome, reporter, counts)
            settle_checkpoint(store, run.id, options.keep_checkpoints)
    except BaseException:  # interrupted, or the store failed: cancel every task, give their runs back
        for ref in refs:
            ray.cancel(ref, force=True)
        with suppress(StoreError):  # every run this driver claimed, also one claimed just before the signal
            store.release_own(run.id for run in runs)
        raise
    finally:
        if started_here:
            ray.shutdown()
    return counts


def _ray_failure(exc: BaseException) -> RunOutcome:
    """The outcome of a task Ray could not finish: the cause it names (a RayTaskError's), else the error."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return failure(cause, detail=str(exc))
    return failure(exc, detail=traceback.format_exc(limit=4))
