"""The report's figures, each titled and labelled to stand alone, saved as PNG and SVG.

* accuracy vs compression rate per (dataset, model, budget) (:mod:`harness.report.accuracy_plot`);
* rank evolution over epochs per layer (named by its module path, kind and shape), for methods whose ranks
  change during training;
* training loss and test accuracy curves per method setting;
* initialization robustness: the judged accuracy of every run per method setting and initialization;
* the critical-difference diagram of the ranking across datasets and models, where there are several
  (:mod:`harness.report.cd_plot`).

Method settings are named by the report's label columns (:mod:`harness.report.labels`); accuracies are in
percent and epochs count from 1, as the report's frames give them (:mod:`harness.units`). Figures are built
on :class:`matplotlib.figure.Figure` (Agg canvas) without pyplot, so making them never touches a global
backend or leaks figures. Every caption describes only what its figure draws.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from harness.config import RunStatus

from .accuracy_plot import accuracy_vs_compression
from .cd_plot import cd_diagram
from .figures import (
    LINESTYLES,
    MODE_STYLES,
    PlotFile,
    figure_title,
    group_title,
    groups,
    method_colors,
    save,
    slug,
)
from .judged import JUDGED, JUDGED_BY, axis_label, protocol_of
from .stats import t_half_width

if TYPE_CHECKING:
    from .build import Report


def layer_title(name: str, kind: Any = None, shape: Any = None) -> str:
    """A layer named by its module path in the model, with its kind and dense shape from its stored stats:
    ``features.3 (conv 64→128, 3×3)``, ``7 (linear 800→500)``."""
    dims = [int(d) for d in shape] if isinstance(shape, list | tuple) else []
    if kind == "conv" and len(dims) == 4:
        return f"{name} (conv {dims[1]}→{dims[0]}, {dims[2]}×{dims[3]})"
    if kind == "linear" and len(dims) == 2:
        return f"{name} (linear {dims[1]}→{dims[0]})"
    return f"{name} ({kind})" if kind else str(name)


def _rank_rows(epochs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for e in epochs.itertuples(index=False):
        layers = json.loads(e.layers) if isinstance(e.layers, str) else e.layers
        for layer in layers or []:
            if not isinstance(layer, dict) or layer.get("ranks") is None:
                continue
            title = layer_title(layer["name"], layer.get("kind"), layer.get("shape"))
            for mode, r in enumerate(layer["ranks"]):
                rows.append((e.run_id, e.epoch, layer["name"], title, mode, r))
    return pd.DataFrame(rows, columns=["run_id", "epoch", "layer", "title", "mode", "rank"])


def rank_evolution(report: Report, out: Path) -> tuple[list[PlotFile], list[str]]:
    epochs = report.epochs
    if epochs is None or epochs.empty or "layers" not in epochs.columns:
        return [], ["No per-epoch rows stored: the rank-evolution plot is skipped."]
    ranks = _rank_rows(epochs)
    if ranks.empty:
        return [], ["No method reports layer ranks: the rank-evolution plot is skipped."]
    varying = ranks.groupby(["run_id", "layer", "mode"])["rank"].nunique()
    moving_runs = set(varying[varying > 1].index.get_level_values("run_id"))
    info = epochs.drop_duplicates("run_id").set_index("run_id")
    moving_methods = sorted(set(info.loc[list(moving_runs), "method"])) if moving_runs else []
    if not moving_methods:
        return [], ["No method changed a layer's rank during training: the rank-evolution plot is skipped."]
    keys = report.group_keys
    ranks = ranks.merge(info[[*keys, "method", "setting", "seed"]], left_on="run_id", right_index=True)
    files = []
    for values, g in groups(ranks[ranks["method"].isin(moving_methods)], [*keys, "method"]):
        method = values[-1]
        gtitle = group_title(keys, values[:-1])
        layers = list(dict.fromkeys(g["layer"]))
        settings = list(dict.fromkeys(g["setting"]))
        ncols = min(3, len(layers))
        nrows = math.ceil(len(layers) / ncols)
        fig = Figure(figsize=(4.3 * ncols + 0.5, 3.0 * nrows + 1.4), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
        palette = sns.color_palette("viridis" if len(settings) > 6 else "tab10", len(settings))
        nmodes = int(g["mode"].max()) + 1
        band = False
        for i, layer in enumerate(layers):
            ax = axes[i // ncols][i % ncols]
            lg = g[g["layer"] == layer]
            for s, setting in enumerate(settings):
                for mode in sorted(lg["mode"].unique()):
                    d = lg[(lg["setting"] == setting) & (lg["mode"] == mode)]
                    if d.empty:
                        continue
                    stat = d.groupby("epoch")["rank"].agg(["mean", "min", "max"]).sort_index()
                    x = stat.index
                    ax.plot(
                        x,
                        stat["mean"],
                        color=palette[s],
                        ls=MODE_STYLES[mode % len(MODE_STYLES)],
                        marker="o",
                        ms=3,
                        lw=1.4,
                    )
                    if (stat["max"] > stat["min"]).any():
                        ax.fill_between(x, stat["min"], stat["max"], color=palette[s], alpha=0.15, lw=0)
                        band = True
            ax.set_title(lg["title"].iloc[0], fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel("rank")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
        for j in range(len(layers), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        handles = [Line2D([], [], color=palette[s], lw=2, label=setting) for s, setting in enumerate(settings)]
        if nmodes > 1:
            handles += [
                Line2D([], [], color="0.3", ls=MODE_STYLES[m % len(MODE_STYLES)], label=f"mode {m + 1}")
                for m in range(nmodes)
            ]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8, frameon=False)
        title = f"Rank evolution per layer — {method} — {gtitle}"
        fig.suptitle(figure_title(title))
        seeds = int(g.groupby("setting")["run_id"].nunique().max())
        caption = (
            "Rank of each factorized layer after each epoch, one panel per layer (titled by its module path in "
            "the model, kind and dense shape); "
            + ("mean over seeds" if seeds > 1 else "one run per setting")
            + ("; band: min to max over seeds" if band else "")
            + "; one colour per method setting"
            + ("; line style: tensor mode." if nmodes > 1 else ".")
        )
        files.append(save(fig, out, f"ranks_{slug(*values)}", title, caption))
    return files, []


def training_curves(report: Report, out: Path, colors: dict[str, Any]) -> list[PlotFile]:
    epochs = report.epochs
    if epochs is None or epochs.empty:
        return []
    keys = report.group_keys
    files = []
    for values, g in groups(epochs, keys):
        gtitle = group_title(keys, values)
        fig = Figure(figsize=(12, 5.2), layout="constrained")
        ax_loss, ax_acc = fig.subplots(1, 2)
        handles = []
        styles: dict[str, int] = {}
        band = False
        for setting, d in g.groupby("setting", sort=True):
            method = d["method"].iloc[0]
            c = colors.get(method, "0.5")
            ls = LINESTYLES[styles.get(method, 0) % len(LINESTYLES)]
            styles[method] = styles.get(method, 0) + 1
            stat = d.assign(acc=d["test_acc"]).groupby("epoch")[["train_loss", "acc"]].agg(["mean", t_half_width])
            x = stat.index
            for ax, col in ((ax_loss, "train_loss"), (ax_acc, "acc")):
                m, h = stat[(col, "mean")], stat[(col, "t_half_width")].fillna(0)
                ax.plot(x, m, color=c, ls=ls, marker="o", ms=3, lw=1.5)
                if (h > 0).any():
                    ax.fill_between(x, m - h, m + h, color=c, alpha=0.12, lw=0)
                    band = True
            nseeds = d["run_id"].nunique()
            handles.append(Line2D([], [], color=c, ls=ls, lw=2, label=f"{setting} (n={nseeds})"))
        over = "mean over seeds, band: 95% t-interval" if band else "mean over seeds"
        ax_loss.set_title(f"training loss ({over})", fontsize=10)
        ax_loss.set_ylabel("training loss (cross-entropy, epoch mean)")
        ax_acc.set_title(f"test accuracy ({over})", fontsize=10)
        ax_acc.set_ylabel("test accuracy (%)")
        for ax in (ax_loss, ax_acc):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8, frameon=False)
        title = f"Training curves — {gtitle}"
        fig.suptitle(figure_title(title))
        caption = (
            "Training loss and test accuracy after each epoch, one line per method setting (colour: "
            "method; n: its runs), mean over seeds"
            + (" with a band of its 95% confidence interval (Student t over seeds)." if band else ".")
        )
        files.append(save(fig, out, f"curves_{slug(*values)}", title, caption))
    return files


def initialization_robustness(report: Report, out: Path) -> list[PlotFile]:
    runs = report.runs[report.runs["status"] == RunStatus.DONE]
    keys = report.group_keys
    files = []
    for values, g in groups(runs, keys):
        gtitle = group_title(keys, values)
        d = g.assign(acc=g[JUDGED], x=g["method_label"]).sort_values(["x", "initialization"])
        labels = d.drop_duplicates("x")
        order = [x for _, x in sorted(zip(labels["method"] != report.reference, labels["x"], strict=True))]
        inits = sorted(d["initialization"].unique())
        fig = Figure(figsize=(max(7.0, 1.2 * len(order) * max(1, len(inits)) ** 0.5 + 3), 5.4), layout="constrained")
        ax = fig.add_subplot()
        palette = dict(zip(inits, sns.color_palette("Set2", len(inits)), strict=True))
        common = dict(data=d, x="x", y="acc", hue="initialization", order=order, hue_order=inits, palette=palette)
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated ``vert``
            warnings.simplefilter("ignore", DeprecationWarning)
            sns.boxplot(**common, ax=ax, fill=False, whis=(0, 100), linewidth=1.2, legend=False)
        sns.stripplot(**common, ax=ax, dodge=True, size=6, jitter=0.12, edgecolor="0.2", linewidth=0.6)
        ax.legend(title="initialization", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_xlabel("method [parameters]")
        ax.set_ylabel(axis_label(g[JUDGED_BY], "one point per run"))
        if max(len(s) for s in order) > 12:
            ax.tick_params(axis="x", labelrotation=20)
            for lab in ax.get_xticklabels():
                lab.set_horizontalalignment("right")
        ax.grid(True, axis="y", alpha=0.3)
        title = f"Initialization robustness — {gtitle}"
        fig.suptitle(figure_title(title))
        caption = (
            f"Test accuracy ({protocol_of(g[JUDGED_BY])}) of every finished run (one point per seed), per method "
            "setting and initialization; boxes span the quartiles, whiskers the range."
        )
        if len(inits) == 1:
            caption += f" Only one initialization ({inits[0]}) was run here: the spread is over seeds alone."
        files.append(save(fig, out, f"init_robustness_{slug(*values)}", title, caption))
    return files


def make_plots(report: Report, out: Path) -> tuple[list[PlotFile], list[str]]:
    """Every figure of a report; returns the files and notes on figures that were skipped."""
    methods = set(report.summary["method"])
    if len(report.comparison):
        methods |= set(report.comparison["method"])
    colors = method_colors(methods, report.reference)
    files = accuracy_vs_compression(report, out, colors)
    ranks, notes = rank_evolution(report, out)
    files += ranks
    files += training_curves(report, out, colors)
    files += initialization_robustness(report, out)
    if report.has_ranking and report.ranking is not None:
        cd = cd_diagram(report.ranking, out, colors)
        files += [cd] if cd is not None else []
    return files, notes
