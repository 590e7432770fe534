"""The ``harness`` command line: run, status, list, export."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from harness.executors import RAY_MISSING, Options, run_local, run_ray
from harness.registry import DATASETS, METHODS, MODELS
from harness.runner import Reporter, plan
from harness.store import Store
from harness.suite import RunSpec, Suite, SuiteError, expand, load_suite

app = typer.Typer(
    help="Train factorized neural networks over a YAML grid, store every result, and compare the methods.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

EXIT_INVALID = 2


def _fail(message: str, code: int = EXIT_INVALID) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def resolve_suite_path(suite: str) -> Path:
    """A suite file path, or the name of a file in ./suites/."""
    p = Path(suite)
    if p.is_file():
        return p
    for cand in (Path("suites") / suite, Path("suites") / f"{suite}.yaml"):
        if cand.is_file():
            return cand
    return p


def _parse_budget(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--budget takes KEY=VALUE (e.g. --budget train_subset=5000 --budget epochs=2), got {item!r}")
        out[key.strip()] = None if value.strip().lower() in ("none", "null", "") else value.strip()
    return out


def _load(
    suite: str, budget: list[str] | None = None, models: str | None = None, datasets: str | None = None,
    grids: str | None = None,
) -> tuple[Path, Suite]:
    path = resolve_suite_path(suite)
    overrides: dict[str, Any] = {}
    if budget:
        overrides["budget"] = _parse_budget(budget)
    if models:
        overrides["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if datasets:
        overrides["datasets"] = [d.strip() for d in datasets.split(",") if d.strip()]
    try:
        names = [g.strip() for g in grids.split(",") if g.strip()] if grids else None
        return path, load_suite(path, overrides, names)
    except SuiteError as exc:
        _fail(str(exc))
        raise  # unreachable


def _default_results(suite: Suite) -> Path:
    return Path("results") / suite.name


def _summary(metrics: dict[str, Any]) -> str:
    parts = [
        f"acc {100 * metrics['final_acc']:.2f}%",
        f"best {100 * metrics['best_acc']:.2f}%",
        f"compression {100 * metrics['compression']:.1f}%",
        f"{metrics['params_inference']:,} params",
        f"{metrics['epoch_seconds']:.1f} s/epoch",
    ]
    if metrics.get("ranks"):
        ranks = " ".join(str(r) for r in metrics["ranks"].values())
        parts.append(f"ranks {ranks}")
    return ", ".join(parts)


class RichReporter(Reporter):
    """A grid bar, one bar per run in training (one per worker), and one line per finished run; where the output
    is not a terminal (a log file, CI), one line per epoch instead of the bars."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.grid = None
        self.slots: dict[int, dict[str, Any]] = {}  # worker slot -> label, task, epochs, started

    def grid_start(self, total: int, skipped: int) -> None:
        self.grid = self.progress.add_task("grid", total=total)

    def run_begin(self, run: RunSpec, index: int, total: int) -> None:
        self._drop_task()
        self.slots[self.slot] = {"label": escape(run.label), "task": None, "epochs": 0, "started": time.perf_counter()}

    def run_start(self, epochs: int, steps_per_epoch: int) -> None:
        s = self.slots[self.slot]
        s["epochs"] = epochs
        s["task"] = self.progress.add_task(f"{s['label']} epoch 1/{epochs}", total=epochs * steps_per_epoch)

    def step(self, n: int = 1) -> None:
        task = self.slots.get(self.slot, {}).get("task")
        if task is not None:
            self.progress.advance(task, n)

    def epoch_end(self, row: dict[str, Any]) -> None:
        s = self.slots[self.slot]
        if not self.progress.console.is_terminal:  # a log file or pipe shows no bars: one line per epoch instead
            self.progress.console.print(
                f"epoch {row['epoch'] + 1}/{s['epochs']}  loss {row['train_loss']:.4f}  "
                f"acc {100 * row['test_acc']:.2f}%  {row['seconds']:.0f} s  {s['label']}",
                highlight=False,
            )
        if s["task"] is not None:
            nxt = min(row["epoch"] + 2, s["epochs"])
            self.progress.update(
                s["task"],
                description=(
                    f"{s['label']} epoch {nxt}/{s['epochs']} loss {row['train_loss']:.3f} "
                    f"acc {100 * row['test_acc']:.2f}%"
                ),
            )

    def run_end(self, run: RunSpec, status: str, metrics: dict[str, Any] | None, error: str | None) -> None:
        s = self.slots.get(self.slot)
        took = f"  ({time.perf_counter() - s['started']:.0f} s)" if s else ""
        if status == "done":
            self.progress.console.print(
                f"[green]done[/]   {escape(run.label)}  {escape(_summary(metrics))}{took}", highlight=False
            )
        else:
            self.progress.console.print(f"[red]failed[/] {escape(run.label)}  {escape(error or '')}", highlight=False)
        self.progress.advance(self.grid)
        self._drop_task()

    def _drop_task(self) -> None:
        s = self.slots.pop(self.slot, None)
        if s and s["task"] is not None:
            self.progress.remove_task(s["task"])


@app.command()
def run(
    suite: Annotated[str, typer.Argument(help="Suite YAML file (or the name of one in ./suites/).")],
    results: Annotated[
        Path | None, typer.Option("--results", help="Results directory [default: results/<suite name>/].")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", envvar="HARNESS_DATA", help="Where datasets live (env HARNESS_DATA).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda [default: the suite's].")] = None,
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
    executor: Annotated[str, typer.Option(help="local (processes on this machine) or ray.")] = "local",
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes; each claims runs from the store.")] = 1,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch threads per run [default: cores / workers].")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster: auto, ray://host:port [default: a local Ray instance].")
    ] = None,
    cpus_per_run: Annotated[int, typer.Option(min=1, help="Ray: CPUs each run asks for.")] = 1,
) -> None:
    """Expand a suite into runs and train every run not yet done; a killed grid resumes where it stopped."""
    path, s = _load(suite, budget, models, datasets, grids)
    runs = expand(s)
    store = Store(results or _default_results(s))
    if dry_run:
        state = {r["id"]: r["status"] for r in store.runs([r.id for r in runs])}
        for r in runs:
            console.print(f"{r.id}  {state.get(r.id, 'new'):8s} {r.label}", highlight=False)
        console.print(f"{len(runs)} runs in {path}")
        return
    p = plan(store, s.name, runs, rerun_failed=rerun_failed, force=force)
    console.print(
        f"suite [bold]{s.name}[/] ({path}): {len(runs)} runs, {p.done} done, {p.failed} failed, "
        f"{len(p.todo)} to train; results in {store.dir}",
        highlight=False,
    )
    if p.released:
        console.print(f"{len(p.released)} interrupted run(s) will be trained again", highlight=False)
    if p.failed and not rerun_failed:
        console.print(f"{p.failed} failed run(s) are kept as failed; --rerun-failed trains them again", highlight=False)
    if not p.todo:
        console.print("nothing to do")
        return
    if executor not in ("local", "ray"):
        _fail(f"unknown executor {executor!r}; choose local or ray")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        _fail(RAY_MISSING)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    reporter = RichReporter(progress)
    try:
        with progress:
            reporter.grid_start(len(p.todo), p.done)
            options = Options(data_root=data_root, device=device or s.device, download=download, threads=threads)
            if executor == "ray":
                counts = run_ray(store, p.todo, reporter, options, address=address, cpus_per_run=cpus_per_run)
            else:
                counts = run_local(store, p.todo, reporter, options, workers=workers)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished runs are stored; run the same command again to resume")
        raise typer.Exit(130) from None
    final = store.counts([r.id for r in runs])
    console.print(
        f"finished: {counts['done']} done, {counts['failed']} failed in this call; suite now "
        f"{final['done']} done, {final['failed']} failed, {final['pending']} pending",
        highlight=False,
    )
    if counts["failed"]:
        raise typer.Exit(1)


@app.command()
def status(
    target: Annotated[str, typer.Argument(help="A suite file, or a results directory.")],
    results: Annotated[Path | None, typer.Option("--results", help="Results directory of the suite.")] = None,
) -> None:
    """Show done / failed / running / pending counts, and the errors of failed runs."""
    tpath = Path(target)
    if tpath.is_dir():
        store, ids, total = Store(results or tpath), None, None
        if not store.exists():
            _fail(f"{tpath} holds no results store ({store.path} not found)")
    else:
        _, s = _load(target)
        runs = expand(s)
        store, ids, total = Store(results or _default_results(s)), [r.id for r in runs], len(runs)
    counts = store.counts(ids)
    if total is not None:
        counts["pending"] += total - sum(counts.values())
    table = Table("status", "runs")
    for k, v in counts.items():
        table.add_row(k, str(v))
    console.print(table)
    for r in store.runs(ids):
        if r["status"] == "failed":
            console.print(
                f"[red]failed[/] {escape(r['label'])}: {escape((r['error'] or '').splitlines()[0])}", highlight=False
            )
        elif r["status"] == "running":
            console.print(f"running {r['label']} (host {r['host']}, pid {r['pid']})", highlight=False)


@app.command()
def merge(
    sources: Annotated[list[Path], typer.Argument(help="Results directories to take finished runs from.")],
    into: Annotated[Path, typer.Option("--into", help="The results directory that receives them.")],
) -> None:
    """Join stores: parts of one grid run on other machines (or by Ray elsewhere) into one results directory.

    A run missing here, or only pending here, takes the other store's result; a run finished in both keeps
    this one's and archives the other's in the history table. Nothing is overwritten.
    """
    dest = Store(into)
    for src in sources:
        try:
            counts = dest.merge_from(Store(src))
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        console.print(f"{src} -> {into}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()),
                      highlight=False)


def _suite_files() -> list[Path]:
    return sorted(Path("suites").glob("*.yaml"))


@app.command("list")
def list_(
    what: Annotated[str, typer.Argument(help="methods, models, datasets or suites.")],
    pattern: Annotated[str, typer.Argument(help="Shell-style name filter.")] = "*",
) -> None:
    """List what is registered (methods, models, datasets) or the suites in ./suites/."""
    registries = {"methods": METHODS, "models": MODELS, "datasets": DATASETS}
    if what == "suites":
        import yaml

        for f in _suite_files():
            try:
                desc = (yaml.safe_load(f.read_text()) or {}).get("description", "")
            except Exception as exc:  # a broken suite is still listed
                desc = f"(unreadable: {exc})"
            console.print(f"{str(f):32s} {str(desc).strip().splitlines()[0] if desc else ''}", highlight=False)
        return
    if what not in registries:
        from harness.registry import did_you_mean

        _fail(
            f"cannot list {what!r}{did_you_mean(what, [*registries, 'suites'])}; "
            "choose methods, models, datasets or suites"
        )
    for e in registries[what].entries(pattern):
        extra = ""
        if what == "methods":
            extra = f"  [dim](initializations: {', '.join(e.builder.initializations)})[/]" if e.builder else ""
        console.print(f"{e.name:18s} {e.description}{extra}", highlight=False)


@app.command()
def export(
    target: Annotated[str, typer.Argument(help="A suite file or a results directory.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output file (.csv or .json) [default: stdout CSV].")
    ] = None,
    epochs: Annotated[bool, typer.Option("--epochs", help="Export per-epoch rows instead of runs.")] = False,
) -> None:
    """Write every stored run (or epoch) as a pandas-readable CSV or JSON table."""
    from harness.results import epochs_frame, runs_frame

    tpath = Path(target)
    store = Store(tpath) if tpath.is_dir() else Store(_default_results(_load(target)[1]))
    if not store.exists():
        _fail(f"no results store at {store.path}; run the suite first")
    df = epochs_frame(store) if epochs else runs_frame(store)
    if out is None:
        df.to_csv(sys.stdout, index=False)
    elif out.suffix == ".json":
        df.to_json(out, orient="records", indent=1)
    else:
        df.to_csv(out, index=False)
    if out is not None:
        console.print(f"wrote {len(df)} rows to {out}")


@app.command()
def report(
    target: Annotated[
        str,
        typer.Argument(
            help="A results directory, or a suite file (its results directory and its references file are used)."
        ),
    ],
    results: Annotated[Path | None, typer.Option("--results", help="Results directory of the suite.")] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: report/ inside the results directory)."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="md, csv, latex, html, all, or a comma-separated list; Markdown is also printed."
        ),
    ] = "md",
    columns: Annotated[
        str | None,
        typer.Option(help="Comma-separated summary columns to show (acc = mean ± std; 'all' for every column)."),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(help="Comma-separated columns to sort by, '-' in front for descending, e.g. -acc_mean,method."),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            help="Select runs with a pandas query over the runs table, e.g. "
            "\"method == 'full' and dataset == 'mnist'\"."
        ),
    ] = None,
    references: Annotated[
        list[Path] | None,
        typer.Option(
            "--references", help="File of published numbers (YAML or CSV) to show beside the measured ones; repeatable."
        ),
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the plots (PNG and SVG).")] = True,
) -> None:
    """Aggregate stored runs over seeds into comparison tables and plots (Markdown, CSV, LaTeX, HTML)."""
    from rich.markup import escape

    from harness.report import ReportError, build_report, parse_formats, render_markdown, write_report

    tpath = Path(target)
    refs: list[Path] = []
    suite_name = None
    if tpath.is_dir():
        store = Store(results or tpath)
    elif not resolve_suite_path(target).is_file():
        _fail(escape(f"{target} is neither a results directory nor a suite file"))
        return
    else:
        spath, s = _load(target)
        store, suite_name = Store(results or _default_results(s)), s.name
        if s.references:
            refs.append(spath.parent / s.references)
    refs += list(references or [])
    if not store.exists():
        _fail(escape(f"no results store at {store.path}; run the suite first (harness run SUITE)"))
    try:
        formats = parse_formats(fmt)
        rep = build_report(store, suite=suite_name, where=where, references=refs, columns=columns, sort=sort)
        written = write_report(rep, out or store.dir / "report", formats, plots=plots)
    except ReportError as exc:
        _fail(escape(str(exc)), exc.exit_code)
        raise  # unreachable
    if "md" in formats:
        typer.echo(render_markdown(rep))
    figures = [p for p in written if p.parent.name == "plots"]
    others = ", ".join(p.name for p in written if p not in figures)
    err_console.print(
        escape(
            f"wrote {out or store.dir / 'report'}: {others}"
            + (f"; {len(figures)} plot files in plots/" if figures else "")
        ),
        highlight=False,
    )


@app.command()
def check(
    suite: Annotated[str, typer.Argument(help="A short, seeded suite (e.g. suites/smoke.yaml).")],
    against: Annotated[Path, typer.Option("--against", help="Baseline JSON file (e.g. results/baselines/smoke.json).")],
    update: Annotated[bool, typer.Option("--update", help="Rewrite the baseline from this run, on purpose.")] = False,
    results: Annotated[
        Path | None, typer.Option("--results", help="Store to train into [default: a fresh temporary directory].")
    ] = None,
    tolerance: Annotated[
        list[str] | None,
        typer.Option(
            "--tolerance",
            help="METRIC=ABS, repeatable [default: the baseline's, else final_acc=0.01, compression=1e-6].",
        ),
    ] = None,
    data_root: Annotated[Path | None, typer.Option("--data-root", envvar="HARNESS_DATA")] = None,
) -> None:
    """Train a seeded suite and fail with a readable diff when accuracy or compression moved beyond tolerance."""
    import tempfile

    from harness.check import DEFAULT_TOLERANCE, compare, load_baseline, snapshot, write_baseline

    _, s = _load(suite)
    baseline = None
    if against.is_file():
        try:
            baseline = load_baseline(against)
        except ValueError as exc:
            _fail(str(exc))
    elif not update:
        _fail(f"baseline {against} not found; create it with --update")
    tol = dict((baseline or {}).get("tolerance", DEFAULT_TOLERANCE))
    for item in tolerance or []:
        key, sep, value = item.partition("=")
        try:
            tol[key.strip()] = float(value)
        except ValueError:
            _fail(f"--tolerance takes METRIC=NUMBER, got {item!r}")
    runs = expand(s)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(results or tmp)
        p = plan(store, s.name, runs, force=True)
        console.print(f"check {s.name}: training {len(p.todo)} runs", highlight=False)
        run_local(store, p.todo, Reporter(), Options(data_root=data_root, device="cpu"))
        stored = store.runs([r.id for r in runs])
    if update:
        write_baseline(against, snapshot(s.name, stored, tol))
        console.print(f"baseline written: {against} ({len(stored)} runs)", highlight=False)
        return
    diffs = compare({**baseline, "tolerance": tol}, stored)
    if diffs:
        err_console.print(f"[bold red]check failed:[/] {len(diffs)} difference(s) against {against}", highlight=False)
        for d in diffs:
            err_console.print(f"  {escape(str(d))}", highlight=False)
        raise typer.Exit(1)
    console.print(
        f"check passed: {len(stored)} runs within tolerance of {against} "
        f"({', '.join(f'{k} ±{v:g}' for k, v in tol.items())})",
        highlight=False,
    )


def main() -> None:  # pragma: no cover
    app()
