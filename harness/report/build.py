"""Building a report: read a store, select and label its runs, aggregate them, set the quoted numbers beside.

Nothing here depends on which methods are registered: every number and label comes from the store's
configurations (:func:`harness.report.frames.runs_frame`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.config import UNFINISHED, RunStatus, did_you_mean
from harness.store import Store

from .cells import missing
from .equal_compression import DEFAULT_LEVELS, OK, check_compression_reference, equal_compression
from .errors import NoFinishedRuns, ReportError
from .frames import epochs_frame, runs_frame
from .labels import label_runs
from .ranking import Ranking, rank_methods
from .references import compare_references, load_all
from .stats import CI_METHODS, TESTS
from .summary import (
    DEFAULT_REFERENCE,
    aggregate,
    apply_sort,
    default_columns,
    default_sort,
    filter_runs,
    group_keys,
    reference_runs,
    select_columns,
    varying_training_columns,
)
from .tuning_table import mask_tuned, tuning_table, without_trials

_COUNTED = (RunStatus.DONE.value, RunStatus.FAILED.value, *UNFINISHED)  # the order counts are said in
_ACC_CSV = ["acc_mean", "acc_std", "acc_ci95", "acc_ci_low", "acc_ci_high"]  # what the acc column is in CSV
_NOT_DONE_COLUMNS = [
    "label",
    "status",
    "attempts",
    "error",
    "dataset",
    "model",
    "method",
    "params_label",
    "initialization",
    "seed",
    "budget",
    "run_id",
]


@dataclass
class Report:
    """Everything a report shows; the renderers only format it."""

    title: str
    source: str
    runs: pd.DataFrame  # selected runs, every status, with label columns added
    summary: pd.DataFrame  # one row per setting (numeric, internal column names)
    not_done: pd.DataFrame  # failed and unfinished runs
    comparison: pd.DataFrame  # published (quoted) numbers beside the measured ones
    epochs: pd.DataFrame  # per-epoch rows of the finished selected runs
    baseline: pd.DataFrame  # finished runs of the reference method in the whole store (what delta acc uses)
    columns: list[str]  # summary columns shown in Markdown / LaTeX / HTML
    csv_columns: list[str]  # summary columns written to summary.csv
    group_keys: list[str]  # what one plot / one baseline is per: dataset, model, budget, training...
    counts: dict[str, int]
    reference: str = DEFAULT_REFERENCE  # the method every other one is compared with
    ci: str = "t"  # how confidence intervals are computed: t or bootstrap
    test: str = "ttest"  # the paired test: ttest or wilcoxon
    equal: pd.DataFrame = field(default_factory=pd.DataFrame)  # accuracy at equal compression levels
    levels: tuple[float, ...] = DEFAULT_LEVELS
    compression_reference: str = ""  # the method the equal-compression table tests against
    ranking: Ranking | None = None  # mean ranks over (dataset, model, budget) blocks, where there are several
    notes: list[str] = field(default_factory=list)
    figures: list[Any] = field(default_factory=list)  # harness.report.plots.PlotFile, once plots are made
    tuning: pd.DataFrame = field(default_factory=pd.DataFrame)  # per tuned setting: space, trials, choice

    @property
    def unfinished(self) -> int:
        return sum(self.counts[s] for s in UNFINISHED)

    @property
    def has_equal(self) -> bool:
        """Whether some method reaches a level of the equal-compression table (else it is not shown)."""
        return bool(len(self.equal)) and bool((self.equal["status"] == OK).any())

    @property
    def has_ranking(self) -> bool:
        """Whether methods are ranked across several blocks."""
        return self.ranking is not None and self.ranking.k > 0


def _no_finished_runs(
    store: Store, where: str | None, counts: dict[str, int], not_done: pd.DataFrame
) -> NoFinishedRuns:
    listed = "\n".join(
        f"  {r.status:8s} {r.label}" + (f": {r.error}" if not missing(r.error) else "")
        for r in not_done.head(10).itertuples()
    )
    more = f"\n  ... and {len(not_done) - 10} more" if len(not_done) > 10 else ""
    return NoFinishedRuns(
        f"no finished runs to report in {store.dir}"
        + (f" matching --where {where!r}" if where else "")
        + ": "
        + ", ".join(f"{counts[s]} {s}" for s in _COUNTED)
        + (f"\n{listed}{more}" if listed else "")
        + "\nFinish the runs first (harness run SUITE; --rerun-failed trains failed runs again)."
    )


def _check_reference(runs: pd.DataFrame, reference: str) -> None:
    """A reference method asked for by name must have runs; the default may be absent (Δ acc stays empty)."""
    methods = sorted(set(runs["method"]))
    if reference != DEFAULT_REFERENCE and reference not in methods:
        raise ReportError(
            f"--reference: no run of method {reference!r}{did_you_mean(reference, methods)}; "
            f"methods in the store: {', '.join(methods)}"
        )


def _check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ReportError(
            f"{option}: unknown choice {value!r}{did_you_mean(value, list(choices))}; choose from {', '.join(choices)}"
        )


def pairing_notes(table: pd.DataFrame, against: str, shown: int = 6) -> list[str]:
    """Why rows that have a reference have no p-value: one note per reason, naming up to ``shown`` rows."""
    notes = []
    for reason, rows in table[table["pair_note"].fillna("") != ""].groupby("pair_note", sort=True):
        names = [
            f"{r['method']}" + (f"[{r['params']}]" if r.get("params") else "") + f" ({r['dataset']} / {r['model']})"
            for _, r in rows.iterrows()
        ]
        names = list(dict.fromkeys(names))
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        notes.append(f"No p vs {against} for {len(rows)} row(s), {reason}: {', '.join(names[:shown])}{more}.")
    return notes


def _notes(store: Store, summary: pd.DataFrame, reference: str) -> list[str]:
    notes = [
        f"No finished {reference} baseline for {r['dataset']} / {r['model']} (budget {r['budget']}): "
        "Δ acc and p are empty for its rows."
        for _, r in summary[summary["n"] > 0].iterrows()
        if missing(r["ref_acc"])
    ]
    notes = list(dict.fromkeys(notes)) + pairing_notes(summary[summary["method"] != reference], reference)
    if len(store.history()):
        notes.append(
            f"The store's history table keeps {len(store.history())} earlier result(s) of runs that "
            "were trained again; only the latest result of each run is reported."
        )
    return notes


def _epochs(store: Store, selected: pd.DataFrame, training_cols: Sequence[str]) -> pd.DataFrame:
    """Per-epoch rows of the finished selected runs, with their label and group columns."""
    epochs = epochs_frame(store)
    if not len(epochs):
        return epochs
    done_ids = set(selected.loc[selected["status"] == RunStatus.DONE, "run_id"])
    info = selected[["run_id", "budget", "setting", "params_label", "method_label", *training_cols]]
    epochs = epochs[epochs["run_id"].isin(done_ids)].drop(columns=[c for c in training_cols if c in epochs.columns])
    return epochs.merge(info, on="run_id", how="left")


def build_report(
    store: Store,
    *,
    suite: str | None = None,
    where: str | None = None,
    references: Sequence[str | Path] = (),
    columns: str | None = None,
    sort: str | None = None,
    title: str | None = None,
    reference: str = DEFAULT_REFERENCE,
    ci: str = "t",
    test: str = "ttest",
    levels: Sequence[float] = DEFAULT_LEVELS,
    compression_reference: str | None = None,
    run_ids: Collection[str] | None = None,
) -> Report:
    """Read a store and aggregate it. ``suite`` keeps only that suite's runs (tuning trials: only those among
    ``run_ids`` where given, e.g. the runs a suite file expands to now: the trials of settings it has dropped are
    left out); ``where`` selects runs
    (pandas query over the runs table) without changing the baseline that delta acc refers to;
    ``reference`` is the method every setting is compared with; ``ci`` (``t`` or ``bootstrap``) how intervals
    are computed; ``test`` (``ttest`` or ``wilcoxon``) the paired test; ``levels`` the compression levels (in
    %) of the equal-compression table and ``compression_reference`` the method it tests against (default
    ``tdlrt``)."""
    _check_choice("--ci", ci, CI_METHODS)
    _check_choice("--test", test, TESTS)
    raw = runs_frame(store)
    if suite is not None and len(raw):
        raw = raw[raw["suite"] == suite]
    raw, trials = without_trials(raw)
    if run_ids is not None and len(trials):
        trials = trials[trials["run_id"].isin(set(run_ids))]
    if raw.empty:
        raise NoFinishedRuns(
            f"no runs in {store.dir}"
            + (f" for suite {suite!r}" if suite else "")
            + (" but tuning trials" if len(trials) else "")
            + "; run the suite first (harness run SUITE)"
        )
    raw = mask_tuned(raw)
    _check_reference(raw, reference)
    cref = check_compression_reference(raw, compression_reference)
    training_cols = varying_training_columns(raw)
    allruns = label_runs(raw)
    tuned = allruns["tuned_setting"] != ""
    allruns.loc[tuned, "params_label"] = [
        ", ".join(x for x in (p, f"tuned: {t}") if x)
        for p, t in zip(allruns.loc[tuned, "params_label"], allruns.loc[tuned, "tuned_setting"], strict=True)
    ]
    selected = filter_runs(allruns, where)
    if selected.empty:
        raise NoFinishedRuns(f"--where {where!r} selects none of the {len(allruns)} runs in {store.dir}")
    counts = {s: int((selected["status"] == s).sum()) for s in _COUNTED}
    not_done = (
        selected[selected["status"] != RunStatus.DONE][_NOT_DONE_COLUMNS]
        .rename(columns={"params_label": "params"})
        .reset_index(drop=True)
    )
    if counts[RunStatus.DONE.value] == 0:
        raise _no_finished_runs(store, where, counts, not_done)
    baseline = reference_runs(allruns, reference)
    summary = default_sort(
        aggregate(selected, baseline, training_cols, reference, ci=ci, test=test), training_cols, reference
    )
    gkeys = group_keys(training_cols)
    equal, equal_notes = equal_compression(selected, gkeys, levels, cref, ci=ci, test=test)
    equal_notes += pairing_notes(equal, f"{cref} at equal compression")
    ranking = rank_methods(summary, training_cols)
    if len(equal) and not (equal["status"] == OK).any():
        equal_notes.append(
            f"Equal compression: no method reaches {' or '.join(f'{v:g}%' for v in levels)} within its own sweep "
            "(choose other levels with --at); the table is not shown."
        )
    if sort:
        summary = apply_sort(summary, sort)
    shown = select_columns(summary, columns, default_columns(summary, training_cols))
    csv_columns = (
        list(summary.columns)
        if not columns
        else list(dict.fromkeys(x for c in shown for x in (_ACC_CSV if c == "acc" else [c])))
    )
    ref_frame = load_all(references)
    comparison = compare_references(summary, ref_frame) if len(ref_frame) else pd.DataFrame()
    suites = sorted(selected["suite"].unique())
    return Report(
        title=title or f"Results: {', '.join(suites)}",
        source=str(store.dir),
        runs=selected,
        summary=summary,
        not_done=not_done,
        comparison=comparison,
        epochs=_epochs(store, selected, training_cols),
        baseline=baseline,
        columns=shown,
        csv_columns=csv_columns,
        group_keys=gkeys,
        counts=counts,
        reference=reference,
        ci=ci,
        test=test,
        equal=equal,
        levels=tuple(levels),
        compression_reference=cref,
        ranking=ranking,
        notes=_notes(store, summary, reference) + equal_notes + (ranking.notes if ranking else []),
        tuning=tuning_table(
            label_runs(trials) if len(trials) else trials,
            allruns[allruns["role"] == "tuned"] if "role" in allruns else allruns.iloc[0:0],
        ),
    )
