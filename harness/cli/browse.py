"""Looking at stores and registries: ``harness status``, ``merge``, ``list`` and ``export``."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.common import console, err_console, fail, open_target, store_errors, stored
from harness.config import STATUSES, RunStatus, did_you_mean, short_run_labels
from harness.locate import no_suites_here
from harness.published import FLAG, is_published, write_refusal
from harness.registry import DATASETS, METHODS, MODELS
from harness.store import Store, interrupted

TargetArg = Annotated[str, typer.Argument(help="A suite file, or a results directory.")]
Results = Annotated[Path | None, typer.Option("--results", help="Results directory of the suite.")]


INTERRUPTED = "interrupted"  # shown for a run still marked running by a process of this host that is gone


def count_statuses(shown: list[str], missing: int = 0) -> dict[str, int]:
    """Runs per status, interrupted apart; ``missing`` runs (a suite's, not yet in the store) count as pending."""
    counts = {**dict.fromkeys(STATUSES, 0), INTERRUPTED: 0}
    for st in shown:
        counts[st] += 1
    counts[RunStatus.PENDING] += missing
    return counts


def status_table(columns: dict[str, dict[str, int]]) -> Table:
    """One row per status, one column per group of runs; the interrupted row only when there is one."""
    table = Table("status", *columns)
    for k in next(iter(columns.values())):
        values = [c[k] for c in columns.values()]
        if any(values) or k != INTERRUPTED:
            table.add_row(str(k), *map(str, values))
    return table


def print_problems(shown: list[tuple[dict, str, str]]) -> None:
    """The error of each failed run and the host and pid of each running or interrupted one."""
    for r, st, label in shown:
        if st == RunStatus.FAILED:
            error = (r["error"] or "").splitlines()[0] if r["error"] else ""
            console.print(f"[red]failed[/] {escape(label)}: {escape(error)}", highlight=False)
        elif st in (RunStatus.RUNNING, INTERRUPTED):
            gone = "; its process is gone, the next harness run trains it again" if st == INTERRUPTED else ""
            console.print(f"{st} {label} (host {r['host']}, pid {r['pid']}{gone})", highlight=False, markup=False)


@store_errors
def status(target: TargetArg, results: Results = None) -> None:
    """Show done / failed / running / interrupted / pending counts, and the errors of failed runs.

    A results directory shows all of its runs; a suite shows every run of its store too, in two columns: the
    suite's runs (those not yet stored count as pending) and the store's other runs (another budget, other
    settings). Reads the store only (a read-only store can be shown); an interrupted run trains again at
    the next run."""
    t = open_target(target, results)
    runs = t.runs()
    if runs is None:
        stored(t)
    rows = t.store.runs()
    shown = [
        (r, INTERRUPTED if interrupted(r) else r["status"], label)
        for r, label in zip(rows, short_run_labels([r["config"] for r in rows]), strict=True)
    ]
    if runs is None:
        console.print(f"{t.store.dir}: {len(rows)} runs", highlight=False, markup=False)
        console.print(status_table({"runs": count_statuses([st for _, st, _ in shown])}))
        print_problems(shown)
        return
    ids = {r.id for r in runs}
    ours = [x for x in shown if x[0]["id"] in ids]
    others = [x for x in shown if x[0]["id"] not in ids]
    console.print(
        f"suite {t.suite.name if t.suite else ''} ({t.path}): {len(ids)} runs; {t.store.dir} holds {len(rows)} "
        f"runs, {len(others)} of them not in this suite",
        highlight=False,
        markup=False,
    )
    columns = {
        "this suite": count_statuses([st for _, st, _ in ours], len(ids) - len(ours)),
        "other runs in the store": count_statuses([st for _, st, _ in others]),
    }
    console.print(status_table(columns))
    print_problems(ours)
    if any(st in (RunStatus.FAILED, RunStatus.RUNNING, INTERRUPTED) for _, st, _ in others):
        console.print("other runs in the store:", highlight=False, markup=False)
        print_problems(others)


@store_errors
def merge(
    sources: Annotated[list[Path], typer.Argument(help="Results directories to take finished runs from.")],
    into: Annotated[Path, typer.Option("--into", help="The results directory that receives them.")],
    into_published: Annotated[
        bool, typer.Option(FLAG, help="Merge into a published results directory (one holding a PUBLISHED file).")
    ] = False,
) -> None:
    """Join stores: parts of one grid run on other machines (or by Ray elsewhere) into one results directory.

    A run missing here, or only pending here, takes the other store's result; a run finished in both keeps
    this one's and archives the other's in the history table. Nothing is overwritten. A published directory
    receives runs only with --into-published.
    """
    if is_published(into) and not into_published:
        fail(write_refusal(into, "harness merge", "--into DIR with a results directory of your own"))
    dest = Store(into)
    for src in sources:
        try:
            counts = dest.merge_from(Store(src))
        except (FileNotFoundError, ValueError) as exc:
            fail(str(exc))
        counts["models"] = take_models(Store(src), dest)
        console.print(
            f"{src} -> {into}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()), highlight=False
        )


def take_models(src: Store, dest: Store) -> int:
    """Copy the model files (RESULTS/runs/<id>/) of the runs whose result ``dest`` now holds from ``src`` (the same
    start and finish), where ``dest`` has none; returns how many."""
    import shutil

    from harness.model_file import run_dir, run_model_path

    ours = {r["id"]: r for r in dest.runs()}
    taken = 0
    for r in src.runs():
        mine = ours.get(r["id"])
        if (
            mine is None
            or mine["status"] != RunStatus.DONE
            or (mine["started"], mine["finished"])
            != (
                r["started"],
                r["finished"],
            )
        ):
            continue
        if run_model_path(src.dir, r["id"]).is_file() and not run_model_path(dest.dir, r["id"]).is_file():
            shutil.copytree(run_dir(src.dir, r["id"]), run_dir(dest.dir, r["id"]), dirs_exist_ok=True)
            taken += 1
    return taken


def list_(
    what: Annotated[str, typer.Argument(help="methods, models, datasets or suites.")],
    pattern: Annotated[str, typer.Argument(help="Shell-style name filter.")] = "*",
) -> None:
    """List what is registered (methods, models, datasets) or the suites in ./suites/."""
    registries = {"methods": METHODS, "models": MODELS, "datasets": DATASETS}
    if what == "suites":
        import yaml

        if not Path("suites").is_dir():
            err_console.print(no_suites_here(), highlight=False, markup=False)
        for f in sorted(Path("suites").glob("*.yaml")):
            if not fnmatch.fnmatch(f.stem, pattern):  # the suite's name, as harness run takes it
                continue
            try:
                desc = (yaml.safe_load(f.read_text()) or {}).get("description", "")
            except Exception as exc:  # a broken suite is still listed
                desc = f"(unreadable: {exc})"
            first = str(desc).strip().splitlines()[0] if desc else ""
            console.print(f"{str(f):32s} {first}", highlight=False, markup=False)
        return
    if what not in registries:
        fail(
            f"cannot list {what!r}{did_you_mean(what, [*registries, 'suites'])}; "
            "choose methods, models, datasets or suites"
        )
    registry = registries[what]
    for e in registry.entries(pattern):
        extra = ""
        if what == "methods" and e.builder:
            extra = f"  [dim](initializations: {escape(', '.join(e.builder.initializations))})[/]"
        console.print(f"{escape(f'{e.name:18s} {e.description}')}{extra}", highlight=False)
    for prefix, ns in registry.namespaces.items():  # names resolved on demand: one line, unless asked for them
        if not pattern.startswith(prefix) and fnmatch.fnmatch(prefix + "x", pattern):
            more = f"{ns.description}; `harness list {what} '{prefix}*'` lists them"
            console.print(f"{prefix + '<name>':18s} {more}", highlight=False, markup=False)


@store_errors
def export(
    target: Annotated[str, typer.Argument(help="A suite file or a results directory.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output file: .csv, .json or .parquet (default: stdout CSV)."),
    ] = None,
    epochs: Annotated[bool, typer.Option("--epochs", help="Export per-epoch rows instead of runs.")] = False,
    where: Annotated[
        str | None,
        typer.Option(help="Select rows with a filter over the table's columns, e.g. \"final_acc > 97\" (as report's)."),
    ] = None,
    sort: Annotated[
        str | None, typer.Option(help="Comma-separated columns to sort by, '-' in front for descending.")
    ] = None,
) -> None:
    """Write every stored run (or epoch) as a pandas-readable CSV, JSON or Parquet table.

    Accuracies and compression rates are in percent and epochs count from 1, as in the report."""
    from harness.report import ReportError
    from harness.report.export import check_out, export_table, write_table

    try:
        if out is not None:
            check_out(out)
        df = export_table(stored(open_target(target)).store, epochs, where, sort)
        if out is None:
            df.to_csv(sys.stdout, index=False)
            return
        write_table(df, out)
    except ReportError as exc:
        fail(str(exc), exc.exit_code)
    console.print(f"wrote {len(df)} rows to {out}", highlight=False, markup=False)
