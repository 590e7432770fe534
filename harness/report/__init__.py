"""The report: stored runs aggregated over seeds into comparison tables, written as Markdown, CSV, LaTeX
(booktabs) and one self-contained HTML page that also holds the plots.

* :mod:`~harness.report.frames`: stored runs and epochs as flat tables (also ``harness export``);
* :mod:`~harness.report.labels`: run and setting labels, from the stored configurations alone;
* :mod:`~harness.report.judged`: the accuracy a run is judged by (test accuracy at the best-validation epoch,
  else the final one), defined once;
* :mod:`~harness.report.stats`: confidence intervals, paired tests over matched seeds, Holm's correction;
* :mod:`~harness.report.summary`: aggregation over seeds, each setting beside the reference method and tested
  against it;
* :mod:`~harness.report.equal_compression`: accuracy at equal compression levels, interpolated per seed;
* :mod:`~harness.report.ranking`: mean ranks across datasets and models, Friedman and Nemenyi
  (:mod:`~harness.report.cd_plot` draws the critical-difference diagram);
* :mod:`~harness.report.references`: published (quoted) numbers beside the measured ones;
* :mod:`~harness.report.build`: :func:`build_report`, which puts these together into a :class:`Report`;
* :mod:`~harness.report.cells` and :mod:`~harness.report.render`: the tables as text (Markdown, LaTeX, HTML
  from ``templates/report.html.j2`` with ``templates/report.css``);
* :mod:`~harness.report.plots`: the figures; :mod:`~harness.report.write`: the files.
"""

from .build import Report, build_report
from .errors import NoFinishedRuns, ReportError
from .frames import epochs_frame, flatten_run, runs_frame
from .references import compare_references, load_references
from .render import render_html, render_latex, render_markdown
from .summary import DEFAULT_REFERENCE, aggregate, summarize_ranks
from .write import FORMATS, parse_formats, write_report

__all__ = [
    "DEFAULT_REFERENCE",
    "FORMATS",
    "NoFinishedRuns",
    "Report",
    "ReportError",
    "aggregate",
    "build_report",
    "compare_references",
    "epochs_frame",
    "flatten_run",
    "load_references",
    "parse_formats",
    "render_html",
    "render_latex",
    "render_markdown",
    "runs_frame",
    "summarize_ranks",
    "write_report",
]
