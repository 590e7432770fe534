"""``harness run`` (train a grid) and ``harness check`` (train a seeded suite and compare with a baseline)."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from harness.cli.common import console, err_console, fail, load, store_errors
from harness.config import RunSpec, RunStatus, short_run_labels
from harness.executors import RAY_MISSING, Options, run_local, run_ray
from harness.locate import default_results
from harness.pretrained import source_run, waiting
from harness.progress import RichReporter, make_progress
from harness.published import FLAG, is_published, write_refusal
from harness.runner import Reporter, plan, stop_on_signals
from harness.store import Store
from harness.suite import Suite, SuiteError, check_device, expand

P = ParamSpec("P")
R = TypeVar("R")


def stoppable(command: Callable[P, R]) -> Callable[P, R]:
    """Ctrl-C, SIGTERM and SIGHUP stop the command the same way: every run it trains is stopped and given
    back, one message, exit status 130, 143 or 129 (128 + the signal)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with stop_on_signals() as received:
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt as exc:
                err_console.print("interrupted: finished runs are stored; run the same command again to resume")
                raise typer.Exit(received.exit_code(exc)) from None

    return wrapper


def budget_note(s: Suite, budget: list[str] | None, results: Path | None) -> str:
    """For a --budget run in its default directory: that it is kept apart from the suite's main store."""
    if not budget or results is not None:
        return ""
    return f" (a --budget run: kept apart from {default_results(s)}; --results DIR to choose another)"


def datasets_to_train(runs: list[RunSpec], state: dict[str, str], rerun_failed: bool, force: bool) -> list[str]:
    """The datasets, in grid order, of the runs that ``harness run`` with these flags trains: those not in the
    store (``state``: stored status by run id) or not settled, failed ones with --rerun-failed, all with --force."""

    return list(dict.fromkeys(r.config["dataset"] for r in runs if will_train(state.get(r.id), rerun_failed, force)))


def will_train(status: str | None, rerun_failed: bool, force: bool) -> bool:
    """Whether ``harness run`` with these flags trains a run of this stored status (None: not in the store)."""
    st = status
    return st is None or force or not RunStatus(st).settled or (rerun_failed and st == RunStatus.FAILED)


def require_sources(s: Suite, store: Store, own: set[str]) -> None:
    """Exit 2, naming the key path, where a ``{run: ID}`` source that is not a run of this suite is not a finished
    ``full`` run of the same dataset, model and validation split in the store (harness.pretrained)."""
    from harness.config import validation_identity
    from harness.pretrained import stored_source_problem
    from harness.suite import pretrained_sources

    named = [(w, src, part) for w, src, part in pretrained_sources(s) if src.kind == "run" and src.value not in own]
    if not named:
        return
    stored = {r["id"]: r for r in store.runs([src.value for _, src, _ in named])} if store.exists() else {}
    problems = []
    for where, src, part in named:
        why = stored_source_problem(
            src, stored.get(src.value), store.dir, part.datasets, part.models, validation_identity(part.validation)
        )
        if why:
            problems.append(f"  {where}.from.run: {why}")
    if problems:
        lines = "\n".join(dict.fromkeys(problems))  # one line for the methods that share an entry
        fail(f"a pretrained source cannot be used:\n{lines}\nNothing was trained or stored.")


def stage_sources(s: Suite, store: Store) -> None:
    """Copy every model file the suite's runs start from into the results directory (RESULTS/pretrained/)."""
    from harness.pretrained import PretrainedError, stage_file
    from harness.suite import pretrained_sources

    for where, src, _ in pretrained_sources(s):
        if src.kind == "file":
            try:
                stage_file(store.dir, src)
            except (PretrainedError, OSError) as exc:
                fail(f"{where}.from.file: {exc}")


def require_data(datasets: list[str], root: Path | None, download: bool) -> None:
    """Exit 2, one message per dataset whose files are missing (after one download try each when ``download``),
    before anything is trained or stored."""
    from harness.data import missing_datasets

    problems = missing_datasets(datasets, root, download)
    if problems:
        fail("\n\n".join(problems) + "\nNothing was trained or stored.")


def require_device(s: Suite, path: Path, device: str, known: bool = True) -> None:
    """Exit 2 when the suite asks for what its runs' device cannot do (fp16 on a CPU), before anything is stored.
    ``device``: auto, cpu or cuda; ``known``: whether the runs train on this machine (not on a Ray cluster's
    nodes, which check each run as it starts)."""
    import torch

    if not known:
        return
    device_type = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    try:
        check_device(s, device_type, str(path))
    except SuiteError as exc:
        fail(str(exc))


def end_of_run(store: Store, s: Suite, path: Path, report: bool | None) -> None:
    """What ``harness run`` ends with: with ``report`` (default: the suite's ``report`` key), the suite's report
    written beside its store, its comparison table and the report's path; otherwise the command that makes it."""
    if not (s.report if report is None else report):
        console.print(f"tables and plots: harness report {store.dir}", highlight=False, markup=False)
        return
    from harness.report import ReportError
    from harness.report.brief import write_run_report

    references = [path.parent / s.references] if s.references else []
    try:
        rr = write_run_report(store, s.name, references)
    except ReportError as exc:
        err_console.print(f"no report: {exc}", highlight=False, markup=False)
        return
    console.print(f"\n{rr.table}\n", highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"report: {rr.markdown} (also {rr.html.name}; {rr.plots} plots in {rr.markdown.parent / 'plots'})",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


DataRoot = Annotated[
    Path | None, typer.Option("--data-root", envvar="HARNESS_DATA", help="Where datasets live (env HARNESS_DATA).")
]


@store_errors
@stoppable
def run(
    suite: Annotated[str, typer.Argument(help="Suite YAML file (or the name of one in ./suites/).")],
    results: Annotated[
        Path | None,
        typer.Option(
            "--results",
            help="Results directory (default: results/<suite name>/; with --budget, results/<suite name>-budget/).",
        ),
    ] = None,
    into_published: Annotated[
        bool,
        typer.Option(FLAG, help="Add runs to a published results directory (one holding a PUBLISHED file)."),
    ] = False,
    data_root: DataRoot = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: the suite's).")] = None,
    rerun_failed: Annotated[bool, typer.Option("--rerun-failed", help="Train failed runs again.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Train every run again; earlier results are kept in the store's history table."),
    ] = False,
    budget: Annotated[
        list[str] | None,
        typer.Option(
            "--budget",
            help="Override the suite's budget, KEY=VALUE, repeatable: train_subset, test_subset, epochs. "
            "Recorded with each run.",
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated models to run instead of the suite's (with grids: a selection of its own)."),
    ] = None,
    datasets: Annotated[str | None, typer.Option(help="Comma-separated datasets instead of the suite's.")] = None,
    grids: Annotated[
        str | None, typer.Option(help="Comma-separated names of the suite's grids to run (the others are left alone).")
    ] = None,
    download: Annotated[bool, typer.Option(help="Try to download missing datasets.")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and list the runs; train nothing.")] = False,
    report: Annotated[
        bool | None,
        typer.Option(
            "--report/--no-report",
            help="End by writing the report (Markdown, HTML, plots) and printing its table (default: the suite's "
            "`report` key).",
        ),
    ] = None,
    executor: Annotated[str, typer.Option(help="local (processes on this machine) or ray.")] = "local",
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes; each claims runs from the store.")] = 1,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch threads per run (default: cores / workers).")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster: auto, ray://host:port (default: a local Ray instance).")
    ] = None,
    cpus_per_run: Annotated[int, typer.Option(min=1, help="Ray: CPUs each run asks for.")] = 1,
    keep_checkpoints: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoints",
            help="Keep each finished run's last checkpoint (RESULTS/runs/<id>/checkpoint.pt); by default it is "
            "deleted once the run is done or failed.",
        ),
    ] = False,
    max_runs: Annotated[
        int | None,
        typer.Option(
            "--max-runs",
            min=0,
            envvar="HARNESS_MAX_RUNS",
            help="Refuse a suite of more runs than this, counted before expanding it (0: no limit; default: 100000).",
        ),
    ] = None,
) -> None:
    """Expand a suite into runs and train every run not yet done; a killed grid resumes where it stopped."""
    path, s = load(suite, budget, models, datasets, grids, max_runs)
    require_device(s, path, device or s.device, known=not (executor == "ray" and address))
    runs = expand(s)  # a tuned suite: its trials (the chosen settings' runs follow, below)
    store = Store(results or default_results(s, budget=bool(budget)))
    published = is_published(store.dir)
    if published and not into_published and not dry_run:  # before anything is read, downloaded or trained
        fail(write_refusal(store.dir, "harness run", "--results DIR to train into a results directory of your own"))
    state = {r["id"]: r["status"] for r in store.runs([r.id for r in runs])}
    require_sources(s, store, {r.id for r in runs})
    if not (executor == "ray" and address):  # the nodes of a Ray cluster read their own data roots
        require_data(datasets_to_train(runs, state, rerun_failed, force), data_root, download and not dry_run)
    if dry_run:
        later = expand(s, stored_by_id(store)) if tuned(s) else runs
        state = {r["id"]: r["status"] for r in store.runs([r.id for r in later])}
        labels = dict(zip([r.id for r in later], short_run_labels([r.config for r in later]), strict=True))
        for r in later:
            console.print(f"{r.id}  {state.get(r.id, 'new'):8s} {labels[r.id]}", highlight=False, markup=False)
        note = f" (published: harness run adds to it only with {FLAG})" if published else ""
        pending_note = " (a tuned setting's runs are listed once its trials are settled)" if tuned(s) else ""
        console.print(
            f"{len(later)} runs in {path}{pending_note}; results in {store.dir}{note}", highlight=False, markup=False
        )
        return
    if executor not in ("local", "ray"):
        fail(f"unknown executor {executor!r}; choose local or ray")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        fail(RAY_MISSING)
    options = Options(
        data_root=data_root,
        device=device or s.device,
        download=download,
        threads=threads,
        keep_checkpoints=keep_checkpoints,
    )

    def trains(rid: str) -> bool:
        return rid in state_ids and will_train(state.get(rid), rerun_failed, force)

    state_ids = {r.id for r in runs}

    def train(todo: list[RunSpec], stage: str, note: str) -> dict[RunStatus, int]:
        return train_runs(
            store,
            s,
            path,
            options,
            todo,
            stage,
            note,
            rerun_failed=rerun_failed,
            force=force,
            executor=executor,
            address=address,
            cpus_per_run=cpus_per_run,
            workers=workers,
        )

    stage_sources(s, store)
    # a run that starts from a run of this call waits for it: trained in a later pass (harness.pretrained)
    deferred = waiting({r.id: r.config for r in runs}, lambda src: state.get(src) == "done" and not trains(src))
    store.add_runs(s.name, [r for r in runs if r.id in deferred])  # listed as pending meanwhile
    now = [r for r in runs if r.id not in deferred]
    tally = train(now, "trials" if tuned(s) else "", budget_note(s, budget, results))
    if deferred:
        starts = {r.id: source_run(r.config) or "" for r in runs if r.id in deferred}
        sources = {r["id"]: r["status"] for r in store.runs(set(starts.values()))}
        ready = [r for r in runs if r.id in deferred and sources.get(starts[r.id]) == "done"]
        if ready:
            more = train(ready, "from trained models", "")
            tally = {k: tally[k] + more[k] for k in tally}
        if len(ready) < len(deferred):
            console.print(
                f"{len(deferred) - len(ready)} run(s) not trained: they start from a run that did not finish "
                "(failed, or stopped); --rerun-failed trains it again",
                highlight=False,
            )
    if tuned(s):  # the chosen setting of every tuned setting whose trials are all settled, with the suite's seeds
        known = {r.id for r in runs}
        runs = expand(s, stored_by_id(store))
        chosen = [r for r in runs if r.id not in known]
        if chosen:
            more = train(chosen, "tuned settings", "")
            tally = {k: tally[k] + more[k] for k in tally}
    final = store.counts([r.id for r in runs])
    done, failed, pending = RunStatus.DONE, RunStatus.FAILED, RunStatus.PENDING
    console.print(
        f"finished: {tally[done]} done, {tally[failed]} failed in this call; suite now "
        f"{final[done]} done, {final[failed]} failed, {final[pending]} pending",
        highlight=False,
    )
    console.print(checkpoint_note(store, [r.id for r in runs], keep_checkpoints), highlight=False, markup=False)
    end_of_run(store, s, path, report)
    if tally[failed]:
        raise typer.Exit(1)


def checkpoint_note(store: Store, ids: list[str], keep: bool) -> str:
    """The checkpoints' disk use after ``harness run``: the largest a run of the suite wrote, and what is left on
    disk (the runs' given back, or kept with --keep-checkpoints)."""
    from harness.checkpoint import checkpoints_on_disk
    from harness.model_file import RUNS_DIR

    count, size = checkpoints_on_disk(store.dir, ids)
    largest = max(((r["metrics"] or {}).get("checkpoint_bytes", 0) for r in store.runs(ids)), default=0)
    what = "kept" if keep else "left (runs not finished; a finished run's is deleted unless --keep-checkpoints)"
    return (
        f"checkpoints: {count} {what}, {mib(size)} in {store.dir / RUNS_DIR}; the largest a run wrote: {mib(largest)}"
    )


def torch_threads() -> int:
    """The number of threads torch uses in this process."""
    import torch

    return torch.get_num_threads()


def mib(n: int) -> str:
    """Bytes in MiB, for the output."""
    return f"{n / 2**20:.1f} MiB"


def tuned(s: Suite) -> bool:
    """Whether any grid of the suite is tuned."""
    return any(p.tuning is not None for p in s.parts or [s])


def stored_by_id(store: Store) -> dict[str, dict]:
    """Every stored run by id (what a tuned suite's choice reads)."""
    return {r["id"]: r for r in store.runs()} if store.exists() else {}


def train_runs(
    store: Store,
    s: Suite,
    path: Path,
    options: Options,
    runs: list[RunSpec],
    stage: str,
    note: str,
    *,
    rerun_failed: bool,
    force: bool,
    executor: str,
    address: str | None,
    cpus_per_run: int,
    workers: int,
) -> dict[RunStatus, int]:
    """Register ``runs``, say what stands, train those to train; the executor's counts."""
    p = plan(store, s.name, runs, rerun_failed=rerun_failed, force=force)
    what = f" ({stage})" if stage else ""
    console.print(
        f"suite [bold]{s.name}[/] ({path}): {len(runs)} runs{what}, {p.done} done, {p.failed} failed, "
        f"{len(p.todo)} to train; results in {store.dir}" + note,
        highlight=False,
    )
    if p.released:
        console.print(f"{len(p.released)} interrupted run(s) will be trained again", highlight=False)
    if p.failed and not rerun_failed:
        console.print(f"{p.failed} failed run(s) are kept as failed; --rerun-failed trains them again", highlight=False)
    if not p.todo:
        console.print("nothing to do")
        return {RunStatus.DONE: 0, RunStatus.FAILED: 0}
    labels = dict(zip([r.id for r in runs], short_run_labels([r.config for r in runs]), strict=True))
    progress = make_progress(console)
    reporter = RichReporter(progress, labels)
    with progress:
        reporter.grid_start(len(p.todo), p.done)
        if executor == "ray":
            counts = run_ray(store, p.todo, reporter, options, address=address, cpus_per_run=cpus_per_run)
        else:
            counts = run_local(store, p.todo, reporter, options, workers=workers)
    return {RunStatus.DONE: counts[RunStatus.DONE], RunStatus.FAILED: counts[RunStatus.FAILED]}


@store_errors
@stoppable
def check(
    suite: Annotated[str, typer.Argument(help="A short, seeded suite (e.g. suites/smoke.yaml).")],
    against: Annotated[Path, typer.Option("--against", help="Baseline JSON file (e.g. results/baselines/smoke.json).")],
    update: Annotated[bool, typer.Option("--update", help="Rewrite the baseline from this run, on purpose.")] = False,
    results: Annotated[
        Path | None, typer.Option("--results", help="Store to train into (default: a fresh temporary directory).")
    ] = None,
    tolerance: Annotated[
        list[str] | None,
        typer.Option(
            "--tolerance",
            help="METRIC=ABS, repeatable (default: the baseline's, else final_acc=0.01, compression=1e-6).",
        ),
    ] = None,
    data_root: DataRoot = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Torch threads (default: the baseline's, else torch's own). A rank-adaptive run's ranks follow "
            "the thread count's rounding, so a baseline is checked at the count it was written with.",
        ),
    ] = None,
) -> None:
    """Train a seeded suite and fail with a readable diff when accuracy or compression moved beyond tolerance."""
    import tempfile

    from harness.check import DEFAULT_TOLERANCE, compare, load_baseline, snapshot, write_baseline

    path, s = load(suite)
    require_device(s, path, "cpu")
    baseline = None
    if against.is_file():
        try:
            baseline = load_baseline(against)
        except ValueError as exc:
            fail(str(exc))
    elif not update:
        fail(f"baseline {against} not found; create it with --update")
    tol = dict((baseline or {}).get("tolerance", DEFAULT_TOLERANCE))
    for item in tolerance or []:
        key, sep, value = item.partition("=")
        try:
            tol[key.strip()] = float(value)
        except ValueError:
            fail(f"--tolerance takes METRIC=NUMBER, got {item!r}")
    threads = threads or (baseline or {}).get("threads") or torch_threads()
    runs = expand(s)
    if results is not None and is_published(results):  # check trains every run again: never a published store
        fail(write_refusal(results, "harness check", "another --results (default: a temporary directory)", False))
    require_data(datasets_to_train(runs, {}, False, True), data_root, download=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(results or tmp)
        require_sources(s, store, {r.id for r in runs})
        stage_sources(s, store)
        p = plan(store, s.name, runs, force=True)
        console.print(f"check {s.name}: training {len(p.todo)} runs with {threads} torch thread(s)", highlight=False)
        # one after another, the runs that start from a trained model last (their sources are runs of no source)
        todo = sorted(p.todo, key=lambda r: source_run(r.config) is not None)
        run_local(store, todo, Reporter(), Options(data_root=data_root, device="cpu", threads=threads))
        stored = store.runs([r.id for r in runs])
    if update:
        write_baseline(against, snapshot(s.name, stored, tol, threads))
        console.print(f"baseline written: {against} ({len(stored)} runs)", highlight=False)
        return
    diffs = compare({**(baseline or {}), "tolerance": tol}, stored)
    if diffs:
        err_console.print(f"[bold red]check failed:[/] {len(diffs)} difference(s) against {against}", highlight=False)
        for d in diffs:
            err_console.print(f"  {d}", highlight=False, markup=False)
        raise typer.Exit(1)
    console.print(
        f"check passed: {len(stored)} runs within tolerance of {against} "
        f"({', '.join(f'{k} ±{v:g}' for k, v in tol.items())})",
        highlight=False,
    )
