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
from .cells import (
    choices_frame,
    comparison_frame,
    display_frame,
    equal_compression_frame,
    not_done_frame,
    ranking_frame,
)
from .equal_compression import SINGLE_TOLERANCE
from .judged import protocol_of
from .stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, TEST_NAMES
from .tuning_table import TUNING_NOTE, tuning_frame

_EXPLANATION = (
    "Test accuracy: {judged}, in %, the mean over seeds {interval}; n: finished runs (only these are "
    "averaged). Δ acc vs {ref}: percentage points against the `{ref}` baseline of the same dataset, model, "
    "budget and training settings (its runs with the same initialization where it has them, otherwise all its "
    "runs). p vs {ref} (Holm): two-sided {test} of a setting against that baseline over the seeds both ran "
    "(pairs: their number; a seed fixes a run's initialization draw and data order), Holm-corrected over the "
    "{m} p-value(s) of this table; * marks p < 0.05 after the correction.{wilcoxon} Compression: 1 − "
    "inference parameters / dense parameters, in %. Model file: the size of the trained model's file (safetensors, "
    "as `harness export-model` writes it). FLOPs: one forward pass of one sample. Peak memory: the most "
    "tensor memory the training held at once (parameters, gradients, optimizer state, a step's activations and "
    "temporaries; not the dataset, not evaluation), from the CUDA allocator on GPU and from sampled steps on CPU."
)
_INTERVALS = {
    "t": "± the half-width of its 95% confidence interval (Student t, n − 1 degrees of freedom; none for n = 1)",
    "bootstrap": (
        f"and its 95% bootstrap confidence interval [low, high] (BCa, {BOOTSTRAP_RESAMPLES:,} resamples, seed "
        f"{BOOTSTRAP_SEED}; none for n = 1; with few seeds a bootstrap interval is too narrow)"
    ),
}
_WILCOXON = " With fewer than 6 pairs the two-sided signed-rank test cannot reach p < 0.05, whatever the differences."
_SPARSE = (
    " Storage: numbers stored to deploy the model, a sparse weight as CSR (nonzero values, their column indices, row"
    " pointers) where that is smaller; FLOPs (sparse): the theoretical count that skips multiplications by zero"
    " weights. Epochs and train s in all: every training pass of a run (a method that trains several, such as"
    " IMP's rounds, and its work before the loop), where the columns before count the final pass."
)
_QUOTED = (
    "Numbers quoted from the literature beside the measured settings they match; the difference is measured − quoted."
)


def explanation(
    reference: str, ci: str = "t", test: str = "ttest", judged: str = "", m: int = 0, columns: Sequence[str] = ()
) -> str:
    """What the columns of the results table mean: ``judged`` says which accuracy (:func:`.judged.protocol_of`),
    ``m`` how many p-values the Holm correction covers; the sparse-model columns explained where they are shown."""
    sparse = {"params_storage", "flops_sparse", "total_epochs", "total_train_seconds"} & set(columns)
    return _EXPLANATION.format(
        ref=reference,
        judged=judged or "final-epoch test accuracy",
        interval=_INTERVALS[ci],
        test=TEST_NAMES[test],
        m=m,
        wilcoxon=_WILCOXON if test == "wilcoxon" else "",
    ) + (_SPARSE if sparse else "")


def report_explanation(report: Report) -> str:
    """:func:`explanation` for a report."""
    done = report.runs[report.runs["status"] == RunStatus.DONE]
    m = int(report.summary["p_raw"].notna().sum())
    return explanation(report.reference, report.ci, report.test, protocol_of(done["judged_by"]), m, report.columns)


def equal_explanation(report: Report) -> str:
    """What the equal-compression table shows and how it is read."""
    cref = report.compression_reference
    m = int(report.equal["p_raw"].notna().sum()) if len(report.equal) else 0
    interval = "± 95% t-interval" if report.ci == "t" else "[95% bootstrap interval]"
    return (
        f"Test accuracy (judged as in the results table) at {', '.join(f'{v:g}%' for v in report.levels)} "
        "compression, read off each method's own sweep (its settings in the same group, at one initialization): "
        "per seed, linear interpolation between the seed's two runs whose compressions bracket the level; no "
        "extrapolation (out of range: no seed reaches the level). A method run with a single setting enters a "
        f"level only where its mean compression is within ±{SINGLE_TOLERANCE:g} pt of it. Mean over the seeds "
        f"that reach the level (n) {interval} over their values; rank 1: the most accurate at that level. "
        f"Δ and p vs {cref}: two-sided {TEST_NAMES[report.test]} against {cref} at the same level over the seeds "
        f"both have (pairs), Holm-corrected over the {m} p-value(s) of this table; * marks p < 0.05 after the "
        "correction."
    )


def ranking_explanation(report: Report) -> str:
    """The ranking's method and, where computed, its tests."""
    r = report.ranking
    assert r is not None
    text = (
        f"Mean rank of each method over {r.n_blocks} blocks (dataset, model, budget): within a block methods are "
        "ranked by the judged test accuracy of the setting that represents them (1: the most accurate; ties "
        "share the mean rank); a method with several settings in a block is represented by the one with the best "
        "validation accuracy (without a validation split: the best test accuracy, which is optimistic)."
    )
    if r.cd == r.cd:
        verdict = "the mean ranks differ" if r.friedman_p < 0.05 else "equal mean ranks are not rejected"
        text += (
            f" Friedman test over {r.k} methods: χ² = {r.friedman_stat:.2f}, p = {r.friedman_p:.3g} ({verdict}). "
            f"Nemenyi critical difference (Demšar 2006): CD = q_α √(k(k+1)/6N) = {r.q_alpha:.3f} · "
            f"√({r.k}·{r.k + 1}/(6·{r.n_blocks})) = {r.cd:.2f} at α = 0.05: two methods differ where their mean "
            "ranks differ by at least CD."
        )
        if r.groups and r.friedman_p < 0.05:
            text += " Not significantly different: " + "; ".join("{" + ", ".join(g) + "}" for g in r.groups) + "."
    return text


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
    return display_frame(report.summary, report.columns, report.reference, report.ci)


def _equal(report: Report) -> tuple[pd.DataFrame, list[bool]]:
    return equal_compression_frame(report.equal, report.group_keys, report.compression_reference, report.ci)


def _has_choices(report: Report) -> bool:
    return report.ranking is not None and bool((report.ranking.choices["candidates"] > 1).any())


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
        report_explanation(report),
        "",
        "## Results",
        "",
        markdown_table(*_results(report)),
        "",
    ]
    if len(report.tuning):
        out += ["## Tuning", "", TUNING_NOTE, "", markdown_table(*tuning_frame(report.tuning)), ""]
    if report.has_equal:
        out += [
            "## Accuracy at equal compression",
            "",
            equal_explanation(report),
            "",
            markdown_table(*_equal(report)),
            "",
        ]
    if report.has_ranking and report.ranking is not None:
        out += ["## Ranking across datasets and models", "", ranking_explanation(report), ""]
        out += [markdown_table(*ranking_frame(report.ranking)), ""]
        if _has_choices(report):
            out += ["Settings that represent a method in a block where it ran several:", ""]
            out += [markdown_table(*choices_frame(report.ranking)), ""]
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
    "–": "--",
    "χ": r"$\chi$",
    "²": r"$^2$",
    "√": r"$\surd$",
    "α": r"$\alpha$",
    "·": r"$\cdot$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "∞": r"$\infty$",
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
    interval = "± 95% t-interval" if report.ci == "t" else "[95% bootstrap interval]"
    parts.append(
        latex_table(
            *_results(report),
            caption=f"{report.title}. Test accuracy: mean over seeds {interval}; Δ acc against "
            f"the {report.reference} baseline of the same dataset, model and budget; p: paired "
            f"{TEST_NAMES[report.test]} against it over matched seeds, Holm-corrected; * p < 0.05.",
            label="tab:harness-results",
        )
    )
    if report.has_equal:
        parts.append(
            latex_table(
                *_equal(report),
                caption=f"Test accuracy at equal compression (mean {interval}), interpolated per seed along each "
                f"method's sweep; p: paired {TEST_NAMES[report.test]} against {report.compression_reference}, "
                "Holm-corrected; * p < 0.05.",
                label="tab:harness-equal-compression",
            )
        )
    if report.has_ranking and report.ranking is not None:
        parts.append(
            latex_table(
                *ranking_frame(report.ranking),
                caption=ranking_explanation(report),
                label="tab:harness-ranking",
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
        explanation=report_explanation(report),
        results=_table(_results(report)),
        equal=_table(_equal(report)) if report.has_equal else None,
        equal_explanation=equal_explanation(report) if report.has_equal else "",
        ranking=_table(ranking_frame(report.ranking)) if report.has_ranking and report.ranking else None,
        ranking_explanation=ranking_explanation(report) if report.has_ranking else "",
        choices=_table(choices_frame(report.ranking)) if _has_choices(report) and report.ranking else None,
        quoted=_table(comparison_frame(report.comparison)) if len(report.comparison) else None,
        tuning=_table(tuning_frame(report.tuning)) if len(report.tuning) else None,
        tuning_note=TUNING_NOTE,
        not_done=_table(not_done_frame(report.not_done)) if len(report.not_done) else None,
        failed=report.counts[RunStatus.FAILED.value],
        unfinished=report.unfinished,
        figures=figures,
        notes=report.notes,
    )
