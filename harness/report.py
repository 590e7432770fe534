"""The report: stored runs aggregated over seeds into comparison tables, written as Markdown, CSV,
LaTeX (booktabs) and one self-contained HTML page that also holds the plots (:mod:`harness.plots`).

One summary row per *setting*: (dataset, model, budget, training settings that differ between runs,
method, method parameters, initialization), aggregated over seeds. Only finished runs (status ``done``)
enter the means; failed and unfinished runs are counted in every row and listed in a table of their own.
The ``full`` baseline of the same dataset, model, budget (and training settings) is the reference of the
"delta acc" column; budget runs are never compared with unbudgeted ones. Nothing here depends on which
methods are registered: every number comes from the store (:func:`harness.results.runs_frame`).

Units: accuracies and compression rates in percent, accuracy differences in percentage points.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.results import epochs_frame, runs_frame
from harness.store import Store

BASELINE = "full"
FORMATS = ("md", "csv", "latex", "html")
UNFINISHED = ("pending", "running")

# Columns every runs frame gets (NaN where a run has no metrics yet).
_RUN_METRICS = ("final_acc", "best_acc", "compression", "compression_conv", "compression_train",
                "params_inference", "params_train", "flops", "epoch_seconds", "train_seconds", "peak_memory_mb",
                "ranks", "error")

# Summary columns: internal name -> header shown in Markdown, LaTeX and HTML. The internal names are what
# --columns and --sort take and what the CSV file uses. "acc" is virtual: "mean ± std" of acc_mean/acc_std.
HEADERS = {
    "dataset": "dataset", "model": "model", "budget": "budget", "method": "method", "params": "params",
    "params_json": "params (JSON)", "initialization": "init",
    "n": "n", "failed": "failed", "unfinished": "unfinished",
    "acc": "test acc (%)", "acc_mean": "test acc mean (%)", "acc_std": "test acc std (%)",
    "best_acc_mean": "best acc (%)", "delta_acc": "Δ acc vs full (pp)", "ref_acc": "full acc (%)",
    "ref": "reference",
    "compression": "compression (%)", "compression_std": "compression std (%)",
    "compression_conv": "conv compression (%)", "compression_train": "train compression (%)",
    "params_inference": "params (inference)", "params_train": "params (training)",
    "flops": "FLOPs (inference)", "epoch_seconds": "s / epoch", "train_seconds": "train s",
    "peak_memory_mb": "peak memory (MiB)", "ranks": "final ranks",
}
# How numeric summary columns print: digits after the point, "+" sign, thousands separator, SI prefix.
_NUMBER_FORMATS = {
    "acc_mean": "{:.2f}", "acc_std": "{:.2f}", "best_acc_mean": "{:.2f}", "delta_acc": "{:+.2f}",
    "ref_acc": "{:.2f}", "compression": "{:.1f}", "compression_std": "{:.1f}", "compression_conv": "{:.1f}",
    "compression_train": "{:.1f}", "params_inference": "{:,.0f}", "params_train": "{:,.0f}",
    "epoch_seconds": "{:.2f}", "train_seconds": "{:.1f}", "peak_memory_mb": "{:.0f}",
    "n": "{:d}", "failed": "{:d}", "unfinished": "{:d}",
}
_LEFT = {"dataset", "model", "budget", "method", "params", "params_json", "initialization", "ranks", "ref",
         "label", "status", "error", "run_id", "setting", "citation", "note", "measured", "suite"}


class ReportError(ValueError):
    """A report that cannot be made as asked (bad query, column, reference file): exit code 2."""

    exit_code = 2


class NoFinishedRuns(ReportError):
    """The store (or the selection) holds no finished run to report: exit code 1."""

    exit_code = 1


@dataclass
class Report:
    """Everything a report shows; the writers below only format it."""

    title: str
    source: str
    runs: pd.DataFrame  # selected runs, every status, with label columns added
    summary: pd.DataFrame  # one row per setting (numeric, internal column names)
    not_done: pd.DataFrame  # failed and unfinished runs
    comparison: pd.DataFrame  # published (quoted) numbers beside the measured ones
    epochs: pd.DataFrame  # per-epoch rows of the finished selected runs
    baseline: pd.DataFrame  # finished full-baseline runs of the whole store (reference of delta acc)
    columns: list[str]  # summary columns shown in Markdown / LaTeX / HTML
    csv_columns: list[str]  # summary columns written to summary.csv
    group_keys: list[str]  # what one plot / one baseline is per: dataset, model, budget, training...
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)
    figures: list[Any] = field(default_factory=list)  # harness.plots.PlotFile, once plots are made


# ------------------------------------------------------------------------------------------------------
# small helpers


def _missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    try:
        return bool(isinstance(v, float) and math.isnan(v))
    except TypeError:
        return False


def _plain(v: Any) -> str:
    """A config value as short text: 2000.0 -> 2000, lists as compact JSON."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list | dict):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def params_label(params_json: str) -> str:
    """``{"rank": 8, "tau": 0.1}`` as ``rank=8, tau=0.1`` (empty for a method without parameters)."""
    try:
        params = json.loads(params_json) if isinstance(params_json, str) else (params_json or {})
    except json.JSONDecodeError:
        return str(params_json)
    return ", ".join(f"{k}={_plain(v)}" for k, v in sorted(params.items()))


def short_params_labels(methods: Sequence[str], params: Sequence[str]) -> list[str]:
    """Display labels naming only what distinguishes a run: the parameters that vary among the runs of its
    method; for a method run with one setting, the parameters that differ from the method's defaults (when
    the method is registered here), else all of them."""
    decoded = [json.loads(p) if isinstance(p, str) else (p or {}) for p in params]
    by_method: dict[str, list[dict]] = {}
    for m, d in zip(methods, decoded, strict=True):
        by_method.setdefault(m, []).append(d)
    shown: dict[str, list[str] | None] = {}
    for m, dicts in by_method.items():
        keys = sorted({k for d in dicts for k in d})
        varying = [k for k in keys if len({json.dumps(d.get(k), sort_keys=True) for d in dicts}) > 1]
        if varying:
            shown[m] = varying
            continue
        try:
            from harness.registry import METHODS

            defaults = METHODS.get(m).Params().model_dump(mode="json")
            shown[m] = [k for k in keys if k not in defaults or defaults[k] != dicts[0][k]] or None
        except Exception:  # not registered here, or no defaults: show everything
            shown[m] = None
    out = []
    for m, d in zip(methods, decoded, strict=True):
        keys = shown[m] if shown[m] is not None else sorted(d)
        out.append(", ".join(f"{k}={_plain(d[k])}" for k in keys if k in d))
    return out


def summarize_ranks(values: Iterable[Any]) -> str:
    """Final ranks of the runs of one setting (JSON dicts layer -> ranks) as ``layer: r1×r2; ...``.

    A rank that differs between seeds prints as its mean with one decimal."""
    dicts = []
    for v in values:
        if _missing(v):
            continue
        d = json.loads(v) if isinstance(v, str) else v
        if d:
            dicts.append(d)
    if not dicts:
        return ""
    layers: list[str] = []
    for d in dicts:
        layers += [k for k in d if k not in layers]
    parts = []
    for layer in layers:
        lists = [d[layer] for d in dicts if d.get(layer) is not None]
        if not lists:
            continue
        modes = []
        for i in range(max(len(x) for x in lists)):
            vals = [x[i] for x in lists if i < len(x)]
            same = all(v == vals[0] for v in vals)
            modes.append(_plain(vals[0]) if same else f"{sum(vals) / len(vals):.1f}")
        parts.append(f"{layer}: {'×'.join(modes)}")
    return "; ".join(parts)


def si(v: float) -> str:
    """4586000 -> '4.59 M'."""
    if _missing(v):
        return ""
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v:.0f}"


def pm(mean: Any, std: Any, digits: int = 2) -> str:
    """``mean ± std``; only the mean where there is no spread (one run), an em dash where no mean."""
    if _missing(mean):
        return "—"
    if _missing(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _key(df: pd.DataFrame, cols: Sequence[str]) -> pd.Series:
    """One string per row that identifies its values in ``cols`` (NaN-safe, type-safe matching)."""
    if df.empty:
        return pd.Series([], dtype=str, index=df.index)
    return df[list(cols)].astype(str).agg("\x1f".join, axis=1)


# ------------------------------------------------------------------------------------------------------
# runs -> labelled runs -> summary


def budget_label(row: pd.Series, budget_cols: Sequence[str]) -> str:
    """The budget of a run as ``train_subset=2000, test_subset=1000`` (``none``: full data and epochs)."""
    parts = [f"{c.removeprefix('budget.')}={_plain(row[c])}" for c in budget_cols if not _missing(row[c])]
    return ", ".join(parts) or "none"


def varying_training_columns(runs: pd.DataFrame) -> list[str]:
    """Training settings that differ between runs: part of every setting's identity then."""
    cols = [c for c in runs.columns if c.startswith("training.")]
    return [c for c in cols if runs[c].astype(str).nunique() > 1]


def label_runs(runs: pd.DataFrame, training_cols: Sequence[str]) -> pd.DataFrame:
    """Add ``budget``, ``params_label`` and ``setting`` (method[params] with the init where it varies)."""
    runs = runs.copy()
    for col in _RUN_METRICS:
        if col not in runs.columns:
            runs[col] = None
    budget_cols = sorted(c for c in runs.columns if c.startswith("budget."))
    order = ["budget.train_subset", "budget.test_subset", "budget.epochs"]
    budget_cols = [c for c in order if c in budget_cols] + [c for c in budget_cols if c not in order]
    runs["budget"] = [budget_label(r, budget_cols) for _, r in runs.iterrows()] if len(runs) else []
    runs["params_label"] = short_params_labels(list(runs["method"]), list(runs["params"])) if len(runs) else []
    multi_init = runs.groupby("method")["initialization"].nunique() > 1 if len(runs) else pd.Series(dtype=bool)
    settings = []
    for _, r in runs.iterrows():
        s = r["method"] + (f"[{r['params_label']}]" if r["params_label"] else "")
        if multi_init.get(r["method"], False):
            s += f" / {r['initialization']}"
        settings.append(s)
    runs["setting"] = settings
    for col in ("final_acc", "best_acc", "compression", "compression_conv", "compression_train",
                "params_inference", "params_train", "flops", "epoch_seconds", "train_seconds", "peak_memory_mb"):
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    runs.attrs["training_cols"] = list(training_cols)
    return runs


def setting_keys(training_cols: Sequence[str]) -> list[str]:
    return ["dataset", "model", "budget", *training_cols, "method", "params", "initialization"]


def group_keys(training_cols: Sequence[str]) -> list[str]:
    return ["dataset", "model", "budget", *training_cols]


def aggregate(runs: pd.DataFrame, baseline: pd.DataFrame | None = None,
              training_cols: Sequence[str] = ()) -> pd.DataFrame:
    """One row per setting, aggregated over seeds; only runs with status ``done`` enter the statistics.

    ``runs`` are labelled runs (:func:`label_runs`); ``baseline`` the finished runs that may serve as the
    reference (default: the ``full`` runs among ``runs``). Each row's reference is the ``full`` baseline of
    the same dataset, model, budget and training settings: its runs with the same initialization where it
    has that initialization, else all its runs."""
    keys = setting_keys(training_cols)
    if baseline is None:
        baseline = runs[(runs["method"] == BASELINE) & (runs["status"] == "done")]
    gkeys = group_keys(training_cols)
    base_key = _key(baseline, gkeys)
    rows = []
    for values, g in runs.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, values, strict=True))
        row["params_json"] = row["params"]
        row["params"] = g["params_label"].iloc[0]
        done = g[g["status"] == "done"]
        row["n"] = len(done)
        row["failed"] = int((g["status"] == "failed").sum())
        row["unfinished"] = int(g["status"].isin(UNFINISHED).sum())
        acc = done["final_acc"] * 100
        row["acc_mean"], row["acc_std"] = acc.mean(), acc.std(ddof=1)
        row["best_acc_mean"] = (done["best_acc"] * 100).mean()
        comp = done["compression"] * 100
        row["compression"], row["compression_std"] = comp.mean(), comp.std(ddof=1)
        row["compression_conv"] = (done["compression_conv"] * 100).mean()
        row["compression_train"] = (done["compression_train"] * 100).mean()
        for col in ("params_inference", "params_train", "flops", "epoch_seconds", "train_seconds",
                    "peak_memory_mb"):
            row[col] = done[col].mean()
        row["ranks"] = summarize_ranks(done["ranks"])
        # the reference: full runs of the same dataset/model/budget/training, same init if it has it
        gk = "\x1f".join(str(row[k]) for k in gkeys)
        ref = baseline[base_key == gk]
        same = ref[ref["initialization"] == row["initialization"]]
        if len(same):
            ref, what = same, f"{BASELINE} / {row['initialization']}"
        else:
            what = f"{BASELINE}, all initializations"
        if len(ref):
            row["ref_acc"] = (ref["final_acc"] * 100).mean()
            row["ref"] = f"{what} (n={len(ref)})"
        else:
            row["ref_acc"], row["ref"] = math.nan, ""
        row["delta_acc"] = row["acc_mean"] - row["ref_acc"]
        rows.append(row)
    order = [*keys[:-2], "method", "params", "initialization", "params_json", "n", "failed", "unfinished",
             "acc_mean", "acc_std", "delta_acc", "ref_acc", "ref", "best_acc_mean", "compression",
             "compression_std", "compression_conv", "compression_train", "params_inference", "params_train",
             "flops", "epoch_seconds", "train_seconds", "peak_memory_mb", "ranks"]
    out = pd.DataFrame(rows, columns=list(dict.fromkeys(order)))
    for col in ("n", "failed", "unfinished"):
        out[col] = out[col].astype(int)
    return out


def default_sort(summary: pd.DataFrame, training_cols: Sequence[str]) -> pd.DataFrame:
    """Grouped by dataset, model, budget; the full baseline first in each group."""
    if summary.empty:
        return summary
    s = summary.assign(_base=(summary["method"] != BASELINE).astype(int))
    by = ["dataset", "model", "budget", *training_cols, "_base", "method", "params", "initialization"]
    return s.sort_values(by, kind="stable").drop(columns="_base").reset_index(drop=True)


def apply_sort(summary: pd.DataFrame, spec: str) -> pd.DataFrame:
    """``--sort``: comma-separated columns, ``-`` in front for descending (``-acc_mean,method``)."""
    by, ascending = [], []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        desc = item.startswith("-")
        name = item.lstrip("-+")
        name = {"acc": "acc_mean"}.get(name, name)
        if name not in summary.columns:
            raise ReportError(f"--sort: no column {name!r}; sortable columns: {', '.join(summary.columns)}")
        by.append(name)
        ascending.append(not desc)
    if not by:
        return summary
    return summary.sort_values(by, ascending=ascending, kind="stable", na_position="last").reset_index(drop=True)


def select_columns(summary: pd.DataFrame, spec: str | None, default: list[str]) -> list[str]:
    """``--columns``: comma-separated summary columns (``acc`` = mean ± std), or ``all``."""
    if not spec:
        return default
    available = ["acc", *summary.columns]
    if spec.strip() == "all":
        return [c for c in summary.columns if c != "params_json"]
    wanted = [c.strip() for c in spec.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise ReportError(f"--columns: unknown column(s) {', '.join(map(repr, unknown))}; "
                          f"available: {', '.join(available)}")
    return list(dict.fromkeys(wanted))


def filter_runs(runs: pd.DataFrame, where: str | None) -> pd.DataFrame:
    """``--where``: a pandas query over the runs table (the columns of ``harness export``)."""
    if not where:
        return runs
    try:
        mask = runs.eval(where)
    except Exception as exc:
        columns = ", ".join(f"`{c}`" if not c.isidentifier() else c for c in runs.columns)
        raise ReportError(
            f"--where {where!r} is not a valid query over the runs table: {type(exc).__name__}: {exc}.\n"
            f"Write a pandas query such as \"method == 'full' and dataset == 'mnist'\"; put column names "
            f"with dots in backticks (`param.rank` == 8). Columns: {columns}") from None
    if not isinstance(mask, pd.Series) or not pd.api.types.is_bool_dtype(mask.dtype):
        got = f"{type(mask).__name__}" + (f" of {mask.dtype}" if isinstance(mask, pd.Series) else "")
        raise ReportError(f"--where {where!r} does not give true/false per run (it gave {got})")
    return runs[mask.fillna(False).astype(bool)]


# ------------------------------------------------------------------------------------------------------
# published (quoted) numbers


REFERENCE_FIELDS = ("dataset", "model", "method", "setting", "params", "initialization", "acc_mean", "acc_std",
                    "compression", "citation", "note")


def _reference_model():
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    class Reference(BaseModel):
        """One published result: accuracy and compression in percent, as papers quote them."""

        model_config = ConfigDict(extra="forbid")

        dataset: str
        model: str
        method: str
        setting: str = ""
        params: dict[str, Any] = Field(default_factory=dict)
        initialization: str | None = None
        acc_mean: float | None = Field(None, ge=0, le=100)  # None: the source quotes a compression only
        acc_std: float | None = Field(None, ge=0)
        compression: float | None = Field(None, le=100)
        citation: str
        note: str = ""

        @model_validator(mode="after")
        def _something_quoted(self):
            if self.acc_mean is None and self.compression is None:
                raise ValueError("a reference quotes an accuracy (acc_mean), a compression, or both")
            return self

    return Reference


def load_references(path: str | Path) -> pd.DataFrame:
    """Read a file of published numbers (YAML list, YAML with a ``references`` list, or CSV)."""
    import yaml
    from pydantic import ValidationError

    path = Path(path)
    if not path.is_file():
        raise ReportError(f"reference file {path} not found")
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            items: Any = [{k: v for k, v in r.items() if v != ""} for r in df.to_dict("records")]
            for item in items:
                if "params" in item:
                    try:
                        item["params"] = json.loads(item["params"])
                    except json.JSONDecodeError as exc:
                        raise ReportError(f"reference file {path}: params {item['params']!r} is not JSON "
                                          f"(write e.g. {{\"rank\": 8}}): {exc}") from None
        else:
            items = yaml.safe_load(path.read_text())
            if isinstance(items, dict) and "references" in items:
                items = items["references"]
    except (OSError, yaml.YAMLError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ReportError(f"reference file {path} cannot be read: {exc}") from None
    if not isinstance(items, list):
        raise ReportError(f"reference file {path}: expected a list of rows (or a mapping with a "
                          f"'references' list), got {type(items).__name__}")
    model = _reference_model()
    rows, problems = [], []
    for i, item in enumerate(items):
        try:
            ref = model.model_validate(item)
        except ValidationError as err:
            for e in err.errors():
                loc = ".".join(str(p) for p in e["loc"])
                problems.append(f"  row {i + 1}{' ' + loc if loc else ''}: {e['msg']}")
            continue
        row = ref.model_dump()
        row["params_json"] = json.dumps(row.pop("params"), sort_keys=True)
        row["setting"] = row["setting"] or params_label(row["params_json"])
        row["file"] = str(path)
        rows.append(row)
    if problems:
        raise ReportError(f"invalid reference file {path}:\n" + "\n".join(problems)
                          + f"\nfields: {', '.join(REFERENCE_FIELDS)}")
    return pd.DataFrame(rows, columns=[*REFERENCE_FIELDS[:4], "params_json", *REFERENCE_FIELDS[5:], "file"]
                        ).drop(columns=["params"], errors="ignore")


def _params_match(wanted_json: str, have_json: str) -> bool:
    wanted = json.loads(wanted_json or "{}")
    have = json.loads(have_json or "{}")
    return all(k in have and json.dumps(have[k], sort_keys=True) == json.dumps(v, sort_keys=True)
               for k, v in wanted.items())


def compare_references(summary: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Each published row beside each measured setting it matches (same dataset, model and method; its
    params, when given, a subset of the measured params; its initialization, when given, the same).
    A reference that matches nothing is still listed, with empty measured columns."""
    cols = ["dataset", "model", "method", "setting", "quoted_acc_mean", "quoted_acc_std", "quoted_compression",
            "measured", "n", "acc_mean", "acc_std", "compression", "diff_acc", "citation", "note"]
    rows = []
    measured = summary[summary["n"] > 0] if len(summary) else summary
    for _, ref in references.iterrows():
        base = {"dataset": ref["dataset"], "model": ref["model"], "method": ref["method"],
                "setting": ref["setting"], "quoted_acc_mean": ref["acc_mean"], "quoted_acc_std": ref["acc_std"],
                "quoted_compression": ref["compression"], "citation": ref["citation"], "note": ref["note"]}
        hits = measured[(measured["dataset"] == ref["dataset"]) & (measured["model"] == ref["model"])
                        & (measured["method"] == ref["method"])] if len(measured) else measured
        if len(hits):
            hits = hits[[_params_match(ref["params_json"], p) for p in hits["params_json"]]]
        if len(hits) and not _missing(ref["initialization"]):
            hits = hits[hits["initialization"] == ref["initialization"]]
        if not len(hits):
            rows.append({**base, "measured": "(no measured run)", "n": 0})
            continue
        for _, m in hits.iterrows():
            what = ", ".join(x for x in (m["params"], m["initialization"],
                                         f"budget {m['budget']}" if m["budget"] != "none" else "") if x)
            rows.append({**base, "measured": what, "n": m["n"], "acc_mean": m["acc_mean"],
                         "acc_std": m["acc_std"], "compression": m["compression"],
                         "diff_acc": m["acc_mean"] - ref["acc_mean"] if not _missing(ref["acc_mean"]) else None})
    out = pd.DataFrame(rows, columns=cols)
    out["n"] = out["n"].fillna(0).astype(int)
    return out


# ------------------------------------------------------------------------------------------------------
# building the report


def build_report(store: Store, *, suite: str | None = None, where: str | None = None,
                 references: Sequence[str | Path] = (), columns: str | None = None,
                 sort: str | None = None, title: str | None = None) -> Report:
    """Read a store and aggregate it. ``suite`` keeps only that suite's runs; ``where`` selects runs
    (pandas query over the runs table) without changing the baseline that delta acc refers to."""
    raw = runs_frame(store)
    if suite is not None and len(raw):
        raw = raw[raw["suite"] == suite]
    if raw.empty:
        raise NoFinishedRuns(f"no runs in {store.dir}" + (f" for suite {suite!r}" if suite else "")
                             + "; run the suite first (harness run SUITE)")
    training_cols = varying_training_columns(raw)
    allruns = label_runs(raw, training_cols)
    selected = filter_runs(allruns, where)
    if selected.empty:
        raise NoFinishedRuns(f"--where {where!r} selects none of the {len(allruns)} runs in {store.dir}")
    counts = {s: int((selected["status"] == s).sum()) for s in ("done", "failed", "pending", "running")}
    not_done = selected[selected["status"] != "done"][
        ["label", "status", "attempts", "error", "dataset", "model", "method", "params_label", "initialization",
         "seed", "budget", "run_id"]].rename(columns={"params_label": "params"}).reset_index(drop=True)
    if counts["done"] == 0:
        listed = "\n".join(f"  {r.status:8s} {r.label}" + (f": {r.error}" if not _missing(r.error) else "")
                           for r in not_done.head(10).itertuples())
        more = f"\n  ... and {len(not_done) - 10} more" if len(not_done) > 10 else ""
        raise NoFinishedRuns(
            f"no finished runs to report in {store.dir}" + (f" matching --where {where!r}" if where else "")
            + f": {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending, "
            f"{counts['running']} running" + (f"\n{listed}{more}" if listed else "")
            + "\nFinish the runs first (harness run SUITE; --rerun-failed trains failed runs again).")
    baseline = allruns[(allruns["method"] == BASELINE) & (allruns["status"] == "done")]
    summary = default_sort(aggregate(selected, baseline, training_cols), training_cols)
    if sort:
        summary = apply_sort(summary, sort)
    any_ranks = bool((summary["ranks"] != "").any())
    default = ["dataset", "model", "budget", *training_cols, "method", "params", "initialization", "n"]
    if summary["failed"].any():
        default.append("failed")
    if summary["unfinished"].any():
        default.append("unfinished")
    default += ["acc", "delta_acc", "compression", "params_inference", "flops", "epoch_seconds",
                "peak_memory_mb"] + (["ranks"] if any_ranks else [])
    shown = select_columns(summary, columns, default)
    csv_columns = [c for c in summary.columns] if not columns else \
        list(dict.fromkeys(x for c in shown for x in (["acc_mean", "acc_std"] if c == "acc" else [c])))

    notes = []
    for _, r in summary[summary["n"] > 0].iterrows():
        if _missing(r["ref_acc"]):
            notes.append(f"No finished {BASELINE} baseline for {r['dataset']} / {r['model']} (budget "
                         f"{r['budget']}): Δ acc is empty for its rows.")
    notes = list(dict.fromkeys(notes))
    if len(store.history()):
        notes.append(f"The store's history table keeps {len(store.history())} earlier result(s) of runs that "
                     "were trained again; only the latest result of each run is reported.")

    refs = [load_references(p) for p in dict.fromkeys(str(p) for p in references)]
    ref_frame = pd.concat(refs, ignore_index=True) if refs else pd.DataFrame()
    comparison = compare_references(summary, ref_frame) if len(ref_frame) else pd.DataFrame()

    done_ids = set(selected.loc[selected["status"] == "done", "run_id"])
    epochs = epochs_frame(store)
    if len(epochs):
        info = selected[["run_id", "budget", "setting", "params_label", *training_cols]]
        epochs = epochs[epochs["run_id"].isin(done_ids)].drop(columns=[c for c in training_cols
                                                                       if c in epochs.columns])
        epochs = epochs.merge(info, on="run_id", how="left")
    suites = sorted(selected["suite"].unique())
    return Report(
        title=title or f"Results: {', '.join(suites)}", source=str(store.dir), runs=selected, summary=summary,
        not_done=not_done, comparison=comparison, epochs=epochs, baseline=baseline, columns=shown,
        csv_columns=csv_columns, group_keys=group_keys(training_cols), counts=counts, notes=notes,
    )


# ------------------------------------------------------------------------------------------------------
# formatting


def _format_cell(col: str, row: pd.Series) -> str:
    if col == "acc":
        return pm(row.get("acc_mean"), row.get("acc_std"))
    v = row.get(col)
    if _missing(v) or (isinstance(v, str) and v == ""):
        return "—"
    if col == "flops":
        return si(v)
    fmt = _NUMBER_FORMATS.get(col)
    if fmt is not None:
        try:
            return fmt.format(int(v) if "d" in fmt else v).replace("-", "−")
        except (ValueError, TypeError):
            return str(v)
    if isinstance(v, float):
        return _plain(v) if v.is_integer() else f"{v:.4g}"
    return str(v)


def display_frame(summary: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, list[bool]]:
    """The summary as strings under readable headers, plus which columns are left-aligned text."""
    data = {HEADERS.get(c, c): [_format_cell(c, r) for _, r in summary.iterrows()] for c in columns}
    return pd.DataFrame(data, columns=list(data)), [c in _LEFT for c in columns]


def comparison_frame(comparison: pd.DataFrame) -> tuple[pd.DataFrame, list[bool]]:
    """Published vs measured, as strings."""
    rows = []
    for _, r in comparison.iterrows():
        rows.append({
            "dataset": r["dataset"], "model": r["model"], "method": r["method"], "setting": r["setting"] or "—",
            "quoted acc (%)": pm(r["quoted_acc_mean"], r["quoted_acc_std"]),
            "quoted compression (%)": "—" if _missing(r["quoted_compression"])
            else f"{r['quoted_compression']:.1f}",
            "measured setting": r["measured"] or "—", "n": str(int(r["n"])),
            "measured acc (%)": pm(r["acc_mean"], r["acc_std"]),
            "measured compression (%)": "—" if _missing(r["compression"]) else f"{r['compression']:.1f}",
            "Δ acc measured − quoted (pp)": "—" if _missing(r["diff_acc"])
            else f"{r['diff_acc']:+.2f}".replace("-", "−"),
            "source (quoted)": r["citation"] + (f" — {r['note']}" if r["note"] else ""),
        })
    left = [True, True, True, True, False, False, True, False, False, False, False, True]
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None), left


def not_done_frame(not_done: pd.DataFrame) -> tuple[pd.DataFrame, list[bool]]:
    cols = ["label", "status", "attempts", "error"]
    df = not_done[cols].copy()
    df["error"] = df["error"].map(lambda e: "" if _missing(e) else str(e))
    df["attempts"] = df["attempts"].map(str)
    return df, [True, True, False, True]


def markdown_table(df: pd.DataFrame, left: Sequence[bool]) -> str:
    """A GitHub-flavoured pipe table."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join(":---" if lf else "---:" for lf in left) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
          "Δ": r"$\Delta$", "×": r"$\times$", "—": "---", "−": "$-$", "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(text: Any) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def latex_table(df: pd.DataFrame, left: Sequence[bool], caption: str, label: str) -> str:
    """A booktabs table (\\toprule, \\midrule, \\bottomrule) via pandas' Styler (needs jinja2)."""
    esc = pd.DataFrame([[latex_escape(v) for v in row] for row in df.itertuples(index=False)],
                       columns=list(df.columns), dtype=object)
    esc.columns = [latex_escape(c) for c in df.columns]
    styler = esc.style.hide(axis="index")
    return styler.to_latex(hrules=True, column_format="".join("l" if lf else "r" for lf in left),
                           caption=latex_escape(caption), label=label, position="htbp",
                           position_float="centering")


def html_table(df: pd.DataFrame, left: Sequence[bool], css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = "".join(f'<td class="{"txt" if lf else "num"}">{html.escape(str(v))}</td>'
                        for v, lf in zip(row, left, strict=True))
        body.append(f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table class="{css_class}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


EXPLANATION = (
    "Test accuracy: final-epoch test accuracy in %, mean ± sample standard deviation over seeds; n: finished "
    "runs (only these are averaged). Δ acc vs full: percentage points against the `full` baseline of the same "
    "dataset, model, budget and training settings (its runs with the same initialization where it has them, "
    "otherwise all its runs). Compression: 1 − inference parameters / dense parameters, in %. FLOPs: one "
    "forward pass of one sample. Peak memory: CUDA allocator peak on GPU, growth of the process' resident "
    "memory on CPU."
)


def _counts_line(report: Report) -> str:
    c = report.counts
    total = sum(c.values())
    return (f"{total} runs: {c['done']} done, {c['failed']} failed, {c['pending'] + c['running']} unfinished "
            f"({c['pending']} pending, {c['running']} running).")


def render_markdown(report: Report) -> str:
    out = [f"# {report.title}", "", f"Store: `{report.source}`. {_counts_line(report)}", "", EXPLANATION, "",
           "## Results", "", markdown_table(*display_frame(report.summary, report.columns)), ""]
    if len(report.comparison):
        out += ["## Published results (quoted, not measured here)", "",
                "Numbers quoted from the literature beside the measured settings they match; the difference "
                "is measured − quoted.", "", markdown_table(*comparison_frame(report.comparison)), ""]
    out += ["## Failed and unfinished runs", ""]
    if len(report.not_done):
        out += [f"{report.counts['failed']} failed and {report.counts['pending'] + report.counts['running']} "
                "unfinished run(s); none of them enters the statistics above.", "",
                markdown_table(*not_done_frame(report.not_done)), ""]
    else:
        out += ["None: every selected run finished.", ""]
    if report.figures:
        out += ["## Plots", ""]
        for f in report.figures:
            out += [f"### {f.title}", "", f"![{f.title}](plots/{f.png.name})", "", f.caption, ""]
    if report.notes:
        out += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    return "\n".join(out)


def render_latex(report: Report) -> str:
    parts = ["% Tables of the harness report. Needs \\usepackage{booktabs} in the preamble.",
             f"% {report.title}: {_counts_line(report)}", ""]
    parts.append(latex_table(*display_frame(report.summary, report.columns),
                             caption=f"{report.title}. Test accuracy mean ± std over seeds; Δ acc against "
                                     "the full baseline of the same dataset, model and budget.",
                             label="tab:harness-results"))
    if len(report.comparison):
        parts.append(latex_table(*comparison_frame(report.comparison),
                                 caption="Published results (quoted) beside the measured ones.",
                                 label="tab:harness-quoted"))
    if len(report.not_done):
        parts.append(latex_table(*not_done_frame(report.not_done), caption="Failed and unfinished runs.",
                                 label="tab:harness-not-done"))
    return "\n".join(parts)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.88em; }
th, td { padding: 0.3em 0.6em; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
thead th { border-top: 2px solid #444; border-bottom: 1.5px solid #444; text-align: left; }
tbody tr:last-child td { border-bottom: 2px solid #444; }
tbody tr:nth-child(even) { background: #f7f7f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.quoted { background: #fffbea; } .quoted-tag { background: #f3d36b; padding: 0 0.4em; border-radius: 3px; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; max-width: 70em; }
.note { color: #555; font-size: 0.92em; max-width: 70em; }
"""


def render_html(report: Report) -> str:
    """One self-contained page: CSS inline, plots embedded as base64 PNG data URIs, no external requests."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<link rel="icon" href="data:,">', f"<title>{e(report.title)}</title>", f"<style>{_CSS}</style>",
           "</head><body>", f"<h1>{e(report.title)}</h1>",
           f"<p>Store: <code>{e(report.source)}</code>. {e(_counts_line(report))} Generated "
           f"{e(time.strftime('%Y-%m-%d %H:%M'))}.</p>", f'<p class="note">{e(EXPLANATION)}</p>',
           '<h2 id="results">Results</h2>', html_table(*display_frame(report.summary, report.columns), "results")]
    if len(report.comparison):
        out += ['<h2 id="quoted">Published results <span class="quoted-tag">quoted</span></h2>',
                '<p class="note">Numbers quoted from the literature, not measured here, beside the measured '
                "settings they match; the difference is measured − quoted.</p>",
                html_table(*comparison_frame(report.comparison), "quoted")]
    out.append('<h2 id="not-done">Failed and unfinished runs</h2>')
    if len(report.not_done):
        out += [f"<p>{report.counts['failed']} failed and {report.counts['pending'] + report.counts['running']} "
                "unfinished run(s); none of them enters the statistics above.</p>",
                html_table(*not_done_frame(report.not_done), "not-done")]
    else:
        out.append("<p>None: every selected run finished.</p>")
    if report.figures:
        out.append('<h2 id="plots">Plots</h2>')
        for f in report.figures:
            data = base64.b64encode(f.png.read_bytes()).decode("ascii")
            out.append(f'<figure id="{e(f.name)}"><img src="data:image/png;base64,{data}" alt="{e(f.title)}">'
                       f"<figcaption><b>{e(f.title)}.</b> {e(f.caption)}</figcaption></figure>")
    if report.notes:
        out += ['<h2 id="notes">Notes</h2>', "<ul>", *[f"<li>{e(n)}</li>" for n in report.notes], "</ul>"]
    out.append("</body></html>")
    return "\n".join(out)


def parse_formats(spec: str) -> list[str]:
    """``md``, ``csv``, ``latex``, ``html``, ``all`` or a comma-separated list of them."""
    wanted = [s.strip().lower() for s in spec.split(",") if s.strip()]
    aliases = {"markdown": "md", "tex": "latex", "htm": "html"}
    wanted = [aliases.get(w, w) for w in wanted]
    if "all" in wanted:
        return list(FORMATS)
    bad = [w for w in wanted if w not in FORMATS]
    if bad or not wanted:
        raise ReportError(f"--format: unknown format(s) {', '.join(map(repr, bad)) or '(none)'}; "
                          f"choose from {', '.join(FORMATS)} or all")
    return list(dict.fromkeys(wanted))


def write_report(report: Report, out: str | Path, formats: Sequence[str] = ("md",),
                 plots: bool = True) -> list[Path]:
    """Write the report's files under ``out``; returns their paths. Plots go to ``out/plots``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if plots:
        from harness.plots import make_plots

        figures, notes = make_plots(report, out / "plots")
        report.figures = figures
        report.notes += [n for n in notes if n not in report.notes]
        for f in figures:
            written += [f.png, f.svg]
    if "md" in formats:
        p = out / "report.md"
        p.write_text(render_markdown(report), encoding="utf-8")
        written.append(p)
    if "csv" in formats:
        p = out / "summary.csv"
        report.summary[report.csv_columns].to_csv(p, index=False)
        written.append(p)
        p = out / "not_done.csv"
        report.not_done.to_csv(p, index=False)
        written.append(p)
        if len(report.comparison):
            p = out / "quoted.csv"
            report.comparison.to_csv(p, index=False)
            written.append(p)
    if "latex" in formats:
        p = out / "report.tex"
        p.write_text(render_latex(report), encoding="utf-8")
        written.append(p)
    if "html" in formats:
        p = out / "report.html"
        p.write_text(render_html(report), encoding="utf-8")
        written.append(p)
    return written
