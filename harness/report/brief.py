"""The report a run ends with: the suite's report written beside its store, and its comparison in brief.

``harness run`` calls :func:`write_run_report` when the suite says ``report: true`` (or ``--report``): the full
report (Markdown, HTML and plots) goes to ``<results>/report/``, and a short table (per method setting:
accuracy with its 95% confidence interval, its difference to the reference method and, where seeds allow, the
Holm-corrected p-value of the paired test, compression and ranks) is printed. Like the rest of the
report it knows no method by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.store import Store

from .build import Report, build_report
from .cells import display_frame
from .render import markdown_table
from .write import write_report

BRIEF = ["method", "params", "initialization", "n", "acc", "delta_acc", "p_vs_ref", "compression", "ranks"]
RUN_REPORT_FORMATS = ("md", "html")


@dataclass(frozen=True)
class RunReport:
    """What a run's report holds for the terminal: the brief table and where the files went."""

    table: str
    markdown: Path
    html: Path
    plots: int


def brief_columns(report: Report) -> list[str]:
    """The brief's columns: the group columns that differ between rows (dataset, model, budget, training
    settings), then :data:`BRIEF`, without columns that are empty or say nothing."""
    summary = report.summary
    groups = [c for c in report.group_keys if summary[c].astype(str).nunique() > 1]
    keep = [c for c in BRIEF if c not in ("params", "ranks") or _any_text(summary[c])]
    if not summary["p_vs_ref"].notna().any():  # no setting shares two seeds with the reference
        keep.remove("p_vs_ref")
    return groups + keep


def _any_text(column: pd.Series) -> bool:
    return bool((column.fillna("").astype(str) != "").any())


def brief_table(report: Report) -> str:
    """The report's results as a short Markdown table (see :func:`brief_columns`)."""
    return markdown_table(*display_frame(report.summary, brief_columns(report), report.reference, report.ci))


def write_run_report(
    store: Store, suite: str, references: Sequence[str | Path] = (), out: Path | None = None
) -> RunReport:
    """Build the suite's report from its store, write it (Markdown, HTML, plots) under ``out`` (default:
    ``report/`` beside the store) and return its brief. Raises :class:`~harness.report.NoFinishedRuns`
    when no run of the suite finished."""
    out = out if out is not None else store.dir / "report"
    report = build_report(store, suite=suite, references=references)
    written = write_report(report, out, RUN_REPORT_FORMATS, plots=True)
    plots = sum(1 for p in written if p.suffix == ".png")
    return RunReport(brief_table(report), out / "report.md", out / "report.html", plots)
