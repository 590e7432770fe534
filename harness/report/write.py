"""Writing a report's files (each atomically): the formats asked for, plus the plots under ``plots/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .atomic import replacing, write_text
from .build import Report
from .errors import ReportError
from .render import render_html, render_latex, render_markdown

FORMATS = ("md", "csv", "latex", "html")
_ALIASES = {"markdown": "md", "tex": "latex", "htm": "html"}
_TEXT = {
    "md": ("report.md", render_markdown),
    "latex": ("report.tex", render_latex),
    "html": ("report.html", render_html),
}


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
    for path, table in zip(paths, tables, strict=True):
        with replacing(path) as tmp:
            table.to_csv(tmp, index=False)
    return paths


def write_report(report: Report, out: str | Path, formats: Sequence[str] = ("md",), plots: bool = True) -> list[Path]:
    """Write the report's files under ``out``; returns their paths. Plots go to ``out/plots``."""
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
    return written
