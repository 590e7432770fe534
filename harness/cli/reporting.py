"""``harness report``: stored runs aggregated into comparison tables and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import err_console, fail, open_target, stored
from harness.published import published_owner, report_refusal


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
        typer.Option(
            help="Comma-separated summary columns to show (acc = mean with its 95% CI; 'all' for every column)."
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(help="Comma-separated columns to sort by, '-' in front for descending, e.g. -acc_mean,method."),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            help="Select runs with a filter over the runs table (the columns of harness export; accuracies in "
            "percent), e.g. \"method == 'full' and final_acc > 97\"."
        ),
    ] = None,
    references: Annotated[
        list[Path] | None,
        typer.Option(
            "--references", help="File of published numbers (YAML or CSV) to show beside the measured ones; repeatable."
        ),
    ] = None,
    reference: Annotated[str, typer.Option("--reference", help="the method the others are compared with")] = "full",
    ci: Annotated[
        str,
        typer.Option("--ci", help="95% confidence intervals over seeds: t (Student t) or bootstrap (BCa, seeded)."),
    ] = "t",
    test: Annotated[
        str,
        typer.Option(
            "--test",
            help="Paired test over matched seeds (Holm-corrected): ttest (paired t-test) or wilcoxon (signed-rank).",
        ),
    ] = "ttest",
    at: Annotated[
        str,
        typer.Option("--at", help="Compression levels (%) of the equal-compression table, comma-separated."),
    ] = "90,95",
    compression_reference: Annotated[
        str | None,
        typer.Option(
            "--compression-reference",
            help="The method the equal-compression table tests the others against (default: tdlrt).",
        ),
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the plots (PNG and SVG).")] = True,
) -> None:
    """Aggregate stored runs over seeds into comparison tables and plots (Markdown, CSV, LaTeX, HTML)."""
    from harness.report import ReportError, build_report, parse_formats, render_markdown, write_report
    from harness.report.equal_compression import parse_levels
    from harness.report.write import generated_files

    t = stored(open_target(target, results))
    store = t.store
    refs = t.references() + list(references or [])
    suite_name = t.suite.name if t.suite is not None else None
    dest = out or store.dir / "report"
    owner = published_owner(dest)
    if owner is not None and owner != store.dir.resolve():
        fail(report_refusal(dest, owner, store.dir))
    before = generated_files(dest)
    try:
        formats = parse_formats(fmt)
        rep = build_report(
            store,
            suite=suite_name,
            where=where,
            references=refs,
            columns=columns,
            sort=sort,
            reference=reference,
            ci=ci,
            test=test,
            levels=parse_levels(at),
            compression_reference=compression_reference,
            run_ids=None if t.suite is None else {r.id for r in t.runs() or []},
        )
        written = write_report(rep, dest, formats, plots=plots)
    except ReportError as exc:
        fail(str(exc), exc.exit_code)
    if "md" in formats:
        typer.echo(render_markdown(rep))
    figures = [p for p in written if p.parent.name == "plots"]
    others = ", ".join(p.name for p in written if p not in figures)
    removed = sorted(p for p in before if not p.exists())
    err_console.print(
        f"wrote {dest}: {others}"
        + (f"; {len(figures)} plot files in plots/" if figures else "")
        + (f"; removed {len(removed)} stale file(s) an earlier build wrote" if removed else ""),
        highlight=False,
        markup=False,
    )
