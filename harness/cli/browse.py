"""Looking at stores and registries: ``harness status``, ``merge``, ``list`` and ``export``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.common import console, fail, open_target, store_errors, stored
from harness.config import STATUSES, RunStatus, did_you_mean, short_run_labels
from harness.registry import DATASETS, METHODS, MODELS
from harness.store import Store, interrupted

TargetArg = Annotated[str, typer.Argument(help="A suite file, or a results directory.")]
Results = Annotated[Path | None, typer.Option("--results", help="Results directory of the suite.")]


INTERRUPTED = "interrupted"  # shown for a run still marked running by a process of this host that is gone


@store_errors
def status(target: TargetArg, results: Results = None) -> None:
    """Show done / failed / running / interrupted / pending counts, and the errors of failed runs.

    Reads the store only (a read-only store can be shown); an interrupted run trains again at the next run."""
    t = open_target(target, results)
    runs = t.runs()
    ids = None if runs is None else [r.id for r in runs]
    if runs is None:
        stored(t)
    rows = t.store.runs(ids)
    shown = [INTERRUPTED if interrupted(r) else r["status"] for r in rows]
    counts = {**dict.fromkeys(STATUSES, 0), INTERRUPTED: 0}
    for st in shown:
        counts[st] += 1
    if runs is not None:  # a suite's runs not yet in the store are pending
        counts[RunStatus.PENDING] += len(runs) - len(rows)
    table = Table("status", "runs")
    for k, v in counts.items():
        if v or k != INTERRUPTED:
            table.add_row(str(k), str(v))
    console.print(table)
    labels = short_run_labels([r["config"] for r in rows])
    for r, st, label in zip(rows, shown, labels, strict=True):
        if st == RunStatus.FAILED:
            error = (r["error"] or "").splitlines()[0] if r["error"] else ""
            console.print(f"[red]failed[/] {escape(label)}: {escape(error)}", highlight=False)
        elif st in (RunStatus.RUNNING, INTERRUPTED):
            gone = "; its process is gone, the next harness run trains it again" if st == INTERRUPTED else ""
            console.print(f"{st} {label} (host {r['host']}, pid {r['pid']}{gone})", highlight=False, markup=False)


@store_errors
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
            fail(str(exc))
        console.print(
            f"{src} -> {into}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()), highlight=False
        )


def list_(
    what: Annotated[str, typer.Argument(help="methods, models, datasets or suites.")],
    pattern: Annotated[str, typer.Argument(help="Shell-style name filter.")] = "*",
) -> None:
    """List what is registered (methods, models, datasets) or the suites in ./suites/."""
    registries = {"methods": METHODS, "models": MODELS, "datasets": DATASETS}
    if what == "suites":
        import yaml

        for f in sorted(Path("suites").glob("*.yaml")):
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
    for e in registries[what].entries(pattern):
        extra = ""
        if what == "methods" and e.builder:
            extra = f"  [dim](initializations: {escape(', '.join(e.builder.initializations))})[/]"
        console.print(f"{escape(f'{e.name:18s} {e.description}')}{extra}", highlight=False)


@store_errors
def export(
    target: Annotated[str, typer.Argument(help="A suite file or a results directory.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output file (.csv or .json) [default: stdout CSV].")
    ] = None,
    epochs: Annotated[bool, typer.Option("--epochs", help="Export per-epoch rows instead of runs.")] = False,
) -> None:
    """Write every stored run (or epoch) as a pandas-readable CSV or JSON table."""
    from harness.report import epochs_frame, runs_frame

    store = stored(open_target(target)).store
    df = epochs_frame(store) if epochs else runs_frame(store)
    if out is None:
        df.to_csv(sys.stdout, index=False)
    elif out.suffix == ".json":
        df.to_json(out, orient="records", indent=1)
    else:
        df.to_csv(out, index=False)
    if out is not None:
        console.print(f"wrote {len(df)} rows to {out}", highlight=False, markup=False)
