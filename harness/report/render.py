"""The report as text: Markdown, LaTeX (booktabs) and one self-contained HTML page (a jinja2 template with
its CSS as a file beside it, plots embedded)."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

import pandas as pd

from harness.config import UNFINISHED, RunStatus

from .build import Report
from .cells import comparison_frame, display_frame, not_done_frame
from .tuning_table import TUNING_NOTE, tuning_frame

_EXPLANATION = (
    "Test accuracy: final-epoch test accuracy in %, mean ± sample standard deviation over seeds; n: finished "
    "runs (only these are averaged). Δ acc vs {ref}: percentage points against the `{ref}` baseline of the "
    "same dataset, model, budget and training settings (its runs with the same initialization where it has "
    "them, otherwise all its runs). Compression: 1 − inference parameters / dense parameters, in %. Model file: "
    "the size of the trained model's file (safetensors, as `harness export-model` writes it). FLOPs: one "
    "forward pass of one sample. Peak memory: the most tensor memory the training held at once (parameters, "
    "gradients, optimizer state, a step's activations and temporaries; not the dataset, not evaluation), from "
    "the CUDA allocator on GPU and from sampled steps on CPU."
)
_QUOTED = (
    "Numbers quoted from the literature beside the measured settings they match; the difference is measured − quoted."
)


def explanation(reference: str) -> str:
    """What the columns of the results table mean."""
    return _EXPLANATION.format(ref=reference)


def counts_line(report: Report) -> str:
    c = report.counts
    done, failed = (f"{c[s.value]} {s}" for s in (RunStatus.DONE, RunStatus.FAILED))
    pending, running = (f"{c[s]} {s}" for s in UNFINISHED)
    return f"{sum(c.values())} runs: {done}, {failed}, {report.unfinished} unfinished ({pending}, {running})."


def _not_done_line(report: Report) -> str:
    return (
        f"{report.counts[RunStatus.FAILED.value]} failed and {report.unfinished} unfinished run(s); none of "
        "them enters the statistics above."
    )


def _results(report: Report) -> tuple[pd.DataFrame, list[bool]]:
    return display_frame(report.summary, report.columns, report.reference)


# ------------------------------------------------------------------------------------------------------
# Markdown


def markdown_table(df: pd.DataFrame, left: Sequence[bool]) -> str:
    """A GitHub-flavoured pipe table."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join(":---" if lf else "---:" for lf in left) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def render_markdown(report: Report) -> str:
    out = [
        f"# {report.title}",
        "",
        f"Store: `{report.source}`. {counts_line(report)}",
        "",
        explanation(report.reference),
        "",
        "## Results",
        "",
        markdown_table(*_results(report)),
        "",
    ]
    if len(report.tuning):
        out += ["## Tuning", "", TUNING_NOTE, "", markdown_table(*tuning_frame(report.tuning)), ""]
    if len(report.comparison):
        out += [
            "## Published results (quoted, not measured here)",
            "",
            _QUOTED,
            "",
            markdown_table(*comparison_frame(report.comparison)),
            "",
        ]
    out += ["## Failed and unfinished runs", ""]
    if len(report.not_done):
        out += [_not_done_line(report), "", markdown_table(*not_done_frame(report.not_done)), ""]
    else:
        out += ["None: every selected run finished.", ""]
    if report.figures:
        out += ["## Plots", ""]
        for f in report.figures:
            out += [f"### {f.title}", "", f"![{f.title}](plots/{f.png.name})", "", f.caption, ""]
    if report.notes:
        out += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------
# LaTeX


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "—": "---",
    "−": "$-$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def latex_escape(text: Any) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def latex_table(df: pd.DataFrame, left: Sequence[bool], caption: str, label: str) -> str:
    """A booktabs table (\\toprule, \\midrule, \\bottomrule) via pandas' Styler (needs jinja2)."""
    esc = pd.DataFrame(
        [[latex_escape(v) for v in row] for row in df.itertuples(index=False)], columns=list(df.columns), dtype=object
    )
    esc.columns = [latex_escape(c) for c in df.columns]
    styler = esc.style.hide(axis="index")
    return styler.to_latex(
        hrules=True,
        column_format="".join("l" if lf else "r" for lf in left),
        caption=latex_escape(caption),
        label=label,
        position="htbp",
        position_float="centering",
    )


def render_latex(report: Report) -> str:
    parts = [
        "% Tables of the harness report. Needs \\usepackage{booktabs} in the preamble.",
        f"% {report.title}: {counts_line(report)}",
        "",
    ]
    parts.append(
        latex_table(
            *_results(report),
            caption=f"{report.title}. Test accuracy mean ± std over seeds; Δ acc against "
            f"the {report.reference} baseline of the same dataset, model and budget.",
            label="tab:harness-results",
        )
    )
    if len(report.comparison):
        parts.append(
            latex_table(
                *comparison_frame(report.comparison),
                caption="Published results (quoted) beside the measured ones.",
                label="tab:harness-quoted",
            )
        )
    if len(report.not_done):
        parts.append(
            latex_table(
                *not_done_frame(report.not_done), caption="Failed and unfinished runs.", label="tab:harness-not-done"
            )
        )
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------------
# HTML


@cache
def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _table(frame: tuple[pd.DataFrame, list[bool]]) -> dict[str, Any]:
    """A table for the template: headers, and rows of (text, left-aligned) cells."""
    df, left = frame
    return {
        "columns": [str(c) for c in df.columns],
        "rows": [list(zip(map(str, row), left, strict=True)) for row in df.itertuples(index=False)],
    }


def render_html(report: Report) -> str:
    """One self-contained page: CSS inline, plots embedded as base64 PNG data URIs, no external requests."""
    env = _environment()
    figures = [
        {
            "name": f.name,
            "title": f.title,
            "caption": f.caption,
            "data": base64.b64encode(f.png.read_bytes()).decode("ascii"),
        }
        for f in report.figures
    ]
    return env.get_template("report.html.j2").render(
        css=env.loader.get_source(env, "report.css")[0],
        title=report.title,
        source=report.source,
        counts_line=counts_line(report),
        generated=time.strftime("%Y-%m-%d %H:%M"),
        explanation=explanation(report.reference),
        results=_table(_results(report)),
        quoted=_table(comparison_frame(report.comparison)) if len(report.comparison) else None,
        tuning=_table(tuning_frame(report.tuning)) if len(report.tuning) else None,
        tuning_note=TUNING_NOTE,
        not_done=_table(not_done_frame(report.not_done)) if len(report.not_done) else None,
        failed=report.counts[RunStatus.FAILED.value],
        unfinished=report.unfinished,
        figures=figures,
        notes=report.notes,
    )
