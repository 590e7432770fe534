"""The accuracy-vs-compression figure of the report: per (dataset, model, budget) one colour per method, 95%
confidence intervals over seeds as error bars, the Pareto front, the reference method as a horizontal line and
published (quoted) numbers as hollow stars, each where there is one; point labels placed without overlaps
(:mod:`harness.report.annotate`). Its caption describes only what it draws."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure

from .annotate import Marker, PointLabel, place_labels
from .cells import missing
from .figures import (
    PlotFile,
    figure_title,
    group_title,
    groups,
    save,
    slug,
)
from .judged import JUDGED, JUDGED_BY, axis_label
from .stats import t_half_width
from .summary import row_key, values_key

if TYPE_CHECKING:
    from .build import Report


def pareto_front(points: pd.DataFrame, x: str = "compression", y: str = "acc_mean") -> pd.DataFrame:
    """Points no other point beats in both compression and accuracy, by increasing compression."""
    pts = points.dropna(subset=[x, y]).sort_values([x, y], ascending=[False, False])
    best, keep = -math.inf, []
    for idx, r in pts.iterrows():
        if r[y] > best:
            keep.append(idx)
            best = r[y]
    return pts.loc[keep].sort_values(x)


# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyFigure:
    """What one accuracy-vs-compression figure draws; its caption says exactly that."""

    reference: str
    baseline_runs: int = 0  # dashed line: the mean of this many reference runs
    band: bool = False  # its 95% confidence interval as a band
    error_bars: bool = False  # vertical: 95% confidence intervals of the means
    front: bool = False  # the Pareto front (drawn through two or more points)
    quoted: int = 0  # hollow stars
    labels: bool = False
    leaders: bool = False  # lines from labels set apart to their points
    x_error_bars: bool = False  # horizontal: one standard deviation of the compression
    interval: str = "Student t"  # how the vertical intervals are computed

    def caption(self) -> str:
        parts = [
            "One point per method setting, mean over seeds"
            + (
                f"; vertical error bars: 95% confidence interval of the mean ({self.interval})"
                if self.error_bars
                else ""
            )
            + ("; horizontal error bars: one standard deviation of the compression" if self.x_error_bars else "")
            + "."
        ]
        if self.labels:
            parts.append(
                "Labels: the setting's parameters (and its initialization where a method ran several)"
                + ("; a thin line joins a label set apart to its point" if self.leaders else "")
                + "."
            )
        if self.baseline_runs == 1:
            parts.append(f"Dashed line: the {self.reference} baseline of this dataset, model and budget (one run).")
        elif self.baseline_runs:
            parts.append(
                f"Dashed line: the mean of the {self.baseline_runs} {self.reference} baseline runs of this dataset, "
                "model and budget"
                + (", with a band of its 95% confidence interval (Student t)" if self.band else "")
                + "."
            )
        if self.front:
            parts.append(
                "Thick grey line: the Pareto front of the measured points (no other point is both more "
                "accurate and more compressed)."
            )
        if self.quoted:
            parts.append(
                "Hollow stars: published numbers (quoted, not measured here; their error bars: the standard "
                "deviation the source quotes)."
            )
        return " ".join(parts)


def y_errors(r: pd.Series) -> tuple[float, float] | None:
    """A setting's vertical error bar: below and above its mean, from its 95% confidence interval."""
    if missing(r["acc_ci_low"]) or missing(r["acc_ci_high"]):
        return None
    return max(r["acc_mean"] - r["acc_ci_low"], 0.0), max(r["acc_ci_high"] - r["acc_mean"], 0.0)


def markers(done: pd.DataFrame, quoted: pd.DataFrame) -> list[Marker]:
    """The points of an accuracy-vs-compression figure, for labels to keep off: measured, then quoted."""
    out = [
        Marker(r["compression"], r["acc_mean"], 7.0, 0.0 if (e := y_errors(r)) is None else max(e))
        for _, r in done.iterrows()
    ]
    out += [
        Marker(
            q["quoted_compression"],
            q["quoted_acc_mean"],
            13.0,
            0.0 if missing(q["quoted_acc_std"]) else q["quoted_acc_std"],
        )
        for _, q in quoted.iterrows()
    ]
    return out


def accuracy_vs_compression(report: Report, out: Path, colors: dict[str, Any]) -> list[PlotFile]:
    files = []
    keys = report.group_keys
    refs = report.comparison
    for values, g in groups(report.summary, keys):
        done = g[g["n"] > 0]
        if done.empty:
            continue
        gtitle = group_title(keys, values)
        fig = Figure(figsize=(10, 5.6), layout="constrained")
        ax = fig.add_subplot()
        # the baseline: every finished run of the reference method in this group (what delta acc refers to)
        ref = report.reference
        base = report.baseline
        base = base[row_key(base, keys) == values_key(values)]
        if len(base):
            acc = base[JUDGED]
            mean, half = acc.mean(), t_half_width(acc)
            ax.axhline(
                mean, ls="--", lw=1.2, color=colors[ref], zorder=1, label=f"{ref} baseline: {mean:.2f}% (n={len(acc)})"
            )
            if not missing(half):
                ax.axhspan(mean - half, mean + half, color=colors[ref], alpha=0.07, lw=0, zorder=0)
        front = pareto_front(done)
        labels: list[PointLabel] = []
        quoted_labels: list[PointLabel] = []
        if len(front) > 1:
            ax.plot(
                front["compression"],
                front["acc_mean"],
                color="0.6",
                lw=2.5,
                alpha=0.6,
                zorder=2,
                solid_capstyle="round",
                label="Pareto front (measured)",
            )
        seen = set()
        spread = done["compression_std"].fillna(0)
        xs = [*(done["compression"] - spread).dropna(), *(done["compression"] + spread).dropna(), 0.0]
        multi_init = done.groupby("method")["initialization"].nunique() > 1
        for _, r in done.iterrows():
            c = colors.get(r["method"], "0.5")
            yerr = y_errors(r)
            ax.errorbar(
                r["compression"],
                r["acc_mean"],
                yerr=None if yerr is None else [[yerr[0]], [yerr[1]]],
                xerr=None if missing(r["compression_std"]) or r["compression_std"] == 0 else r["compression_std"],
                fmt="o",
                ms=6,
                color=c,
                ecolor=c,
                capsize=3,
                zorder=3,
                label=r["method"] if r["method"] not in seen else "_nolegend_",
            )
            seen.add(r["method"])
            text = ", ".join(x for x in (r["params"], r["initialization"] if multi_init[r["method"]] else "") if x)
            if text:
                labels.append(PointLabel(text, (r["compression"], r["acc_mean"]), c, 7.0))
        quoted = refs.iloc[0:0]
        if len(refs):
            d = dict(zip(keys, values, strict=True))
            quoted = refs[(refs["dataset"] == d["dataset"]) & (refs["model"] == d["model"])]
            quoted = quoted.drop_duplicates(subset=["method", "setting", "citation", "quoted_acc_mean"])
            quoted = quoted[quoted["quoted_compression"].notna()]
            xs += list(quoted["quoted_compression"])
            legend_seen = set()
            for _, q in quoted.iterrows():
                c = colors.get(q["method"], "0.5")
                key = (q["method"], q["citation"])  # one legend entry per method and source
                label = f"quoted: {q['method']} ({q['citation'][:40]})" if key not in legend_seen else "_nolegend_"
                legend_seen.add(key)
                ax.errorbar(
                    q["quoted_compression"],
                    q["quoted_acc_mean"],
                    yerr=None if missing(q["quoted_acc_std"]) else q["quoted_acc_std"],
                    fmt="*",
                    ms=13,
                    mfc="none",
                    mec=c,
                    ecolor=c,
                    mew=1.3,
                    capsize=3,
                    zorder=3,
                    label=label,
                )
                if q["setting"]:
                    quoted_labels.append(
                        PointLabel(str(q["setting"]), (q["quoted_compression"], q["quoted_acc_mean"]), c, 6.0)
                    )
        ax.set_xlabel("compression rate (%) = 1 − inference parameters / dense parameters")
        ax.set_ylabel(axis_label(report.runs[JUDGED_BY], "mean and 95% CI over seeds"))
        title = f"Accuracy vs compression — {gtitle}"
        fig.suptitle(figure_title(title))
        ax.margins(y=0.15)
        lo, hi = min(xs), max(xs)
        pad = 0.1 * max(hi - lo, 10.0)
        ax.set_xlim(lo - pad, max(hi, lo + 10.0) + pad)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        leaders = place_labels(fig, ax, labels + quoted_labels, markers(done, quoted))
        drawn = AccuracyFigure(
            reference=ref,
            baseline_runs=len(base),
            band=len(base) > 1 and not missing(t_half_width(base[JUDGED])),
            error_bars=bool(done["acc_ci_low"].notna().any()),
            x_error_bars=bool((done["compression_std"].fillna(0) > 0).any()),
            interval="bootstrap" if report.ci == "bootstrap" else "Student t",
            front=len(front) > 1,
            quoted=len(quoted),
            labels=bool(labels or quoted_labels),
            leaders=leaders > 0,
        )
        caption = drawn.caption()
        files.append(save(fig, out, f"acc_vs_compression_{slug(*values)}", title, caption))
    return files
