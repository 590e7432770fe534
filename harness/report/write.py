"""Writing a report's files (each atomically): the formats asked for, plus the plots under ``plots/``.

A rebuild then removes what an earlier build generated and this one no longer does (the figures of groups
that are gone, a ``quoted.csv`` without references), for the formats written and, when plots are drawn, in
``plots/``; a file the report does not generate (another name) is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .atomic import replacing, write_text
from .build import Report
from .errors import ReportError
from .ranking import ranking_table
from .render import render_html, render_latex, render_markdown

FORMATS = ("md", "csv", "latex", "html")
_ALIASES = {"markdown": "md", "tex": "latex", "htm": "html"}
_TEXT = {
    "md": ("report.md", render_markdown),
    "latex": ("report.tex", render_latex),
    "html": ("report.html", render_html),
}
CSV_FILES = ("summary.csv", "not_done.csv", "quoted.csv", "equal_compression.csv", "ranking.csv")  # _write_csv's


def parse_formats(spec: str) -> list[str]:
    """``md``, ``csv``, ``latex``, ``html``, ``all`` or a comma-separated list of them."""
    wanted = [_ALIASES.get(w, w) for w in (s.strip().lower() for s in spec.split(",")) if w]
    if "all" in wanted:
        return list(FORMATS)
    bad = [w for w in wanted if w not in FORMATS]
    if bad or not wanted:
        raise ReportError(
            f"--format: unknown format(s) {', '.join(map(repr, bad)) or '(none)'}; "
            f"choose from {', '.join(FORMATS)} or all"
        )
    return list(dict.fromkeys(wanted))


def _write_csv(report: Report, out: Path) -> list[Path]:
    paths = [out / "summary.csv", out / "not_done.csv"]
    tables = [report.summary[report.csv_columns], report.not_done]
    if len(report.comparison):
        paths.append(out / "quoted.csv")
        tables.append(report.comparison)
    if report.has_equal:
        paths.append(out / "equal_compression.csv")
        tables.append(report.equal)
    if report.has_ranking and report.ranking is not None:
        paths.append(out / "ranking.csv")
        tables.append(ranking_table(report.ranking))
    for path, table in zip(paths, tables, strict=True):
        with replacing(path) as tmp:
            table.to_csv(tmp, index=False)
    return paths


def generated_files(out: str | Path, formats: Sequence[str] = FORMATS, plots: bool = True) -> set[Path]:
    """The files in ``out`` named as a report of ``formats`` (and, with ``plots``, its figures in
    ``out/plots``) names its files: those a report build may replace or remove."""
    out = Path(out)
    names = [n for fmt in formats for n in (CSV_FILES if fmt == "csv" else (_TEXT[fmt][0],))]
    found = {out / n for n in names if (out / n).is_file()}
    if plots and (out / "plots").is_dir():
        from .figures import is_figure_file

        found |= {p for p in (out / "plots").iterdir() if p.is_file() and is_figure_file(p.name)}
    return found


def stale_files(out: str | Path, written: Sequence[Path], formats: Sequence[str], plots: bool) -> list[Path]:
    """What an earlier build generated in ``out`` that this build (``written``) no longer does."""
    return sorted(generated_files(out, formats, plots) - set(written))


def write_report(report: Report, out: str | Path, formats: Sequence[str] = ("md",), plots: bool = True) -> list[Path]:
    """Write the report's files under ``out``; returns their paths. Plots go to ``out/plots``. Once every
    file is written, the stale ones of the formats written (and of the plots, when drawn) are removed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if plots:
        from .plots import make_plots

        figures, notes = make_plots(report, out / "plots")
        report.figures = figures
        report.notes += [n for n in notes if n not in report.notes]
        for f in figures:
            written += [f.png, f.svg]
    for fmt in FORMATS:
        if fmt not in formats:
            continue
        if fmt == "csv":
            written += _write_csv(report, out)
            continue
        name, render = _TEXT[fmt]
        path = out / name
        write_text(path, render(report))
        written.append(path)
    for path in stale_files(out, written, formats, plots):
        path.unlink(missing_ok=True)
    return written
