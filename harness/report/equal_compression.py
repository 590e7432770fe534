"""Accuracy at equal compression: each method's judged test accuracy at chosen compression levels (90% and 95%
unless asked otherwise), read off its own sweep, and compared with one factorized method seed by seed.

A method's *sweep* is its settings (method parameters) within one group of the report (dataset, model, budget,
training settings that differ), at one initialization. The accuracy at level ``c`` is interpolated per seed:
the seed's runs, ordered by their compression, form a piecewise-linear curve (compression → judged accuracy,
:mod:`.judged`), read at ``c`` where the seed has runs on both sides of ``c`` (or one exactly at it); there is
no extrapolation. The mean over the seeds that reach ``c`` carries a 95% confidence interval over those seeds'
values (:func:`.stats.confidence_interval`). A method run with a single setting has no curve: it enters a level
only where its mean compression is within :data:`SINGLE_TOLERANCE` points of it (its runs' accuracies then).

Every row of a level is tested against the *compression reference* (``tdlrt`` by default; the dense reference
of the summary has 0% compression and cannot serve here) over the seeds both have values for, with the report's
paired test; the p-values of the whole table are Holm-corrected together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.config import RunStatus, did_you_mean, plain

from .errors import ReportError
from .judged import JUDGED
from .stats import confidence_interval, holm, paired_test, per_seed, significant
from .summary import row_key, values_key

DEFAULT_LEVELS = (90.0, 95.0)
DEFAULT_COMPRESSION_REFERENCE = "tdlrt"
SINGLE_TOLERANCE = 0.5  # percentage points: how far a single setting's compression may be from a level
OK, OUT_OF_RANGE = "ok", "out of range"
COLUMNS = (
    "level",
    "method",
    "initialization",
    "rank",
    "status",
    "source",
    "n",
    "acc_mean",
    "acc_std",
    "acc_ci95",
    "acc_ci_low",
    "acc_ci_high",
    "cref",
    "delta_vs_cref",
    "n_pairs",
    "p_raw",
    "p_vs_cref",
    "significant",
    "pair_note",
    "sweep_low",
    "sweep_high",
    "settings",
)


def parse_levels(spec: str | Sequence[float] | None) -> tuple[float, ...]:
    """``--at``: comma-separated compression levels in percent (``90,95``); each in (0, 100)."""
    if spec is None:
        return DEFAULT_LEVELS
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(v) for v in spec]
    items = [s.removesuffix("%") for s in items if s]
    if not items:
        raise ReportError("--at: no compression level given; write levels in percent, e.g. --at 90,95")
    levels = []
    for item in items:
        try:
            v = float(item)
        except ValueError:
            raise ReportError(f"--at: {item!r} is not a number; write levels in percent, e.g. --at 90,95") from None
        if not 0 < v < 100 or math.isnan(v):
            raise ReportError(f"--at: {item} is not a compression level in percent (between 0 and 100)")
        levels.append(v)
    return tuple(sorted(set(levels)))


def interpolate_at(compression: Sequence[float], accuracy: Sequence[float], level: float) -> float:
    """One seed's accuracy at ``level``: linear interpolation along its (compression, accuracy) points ordered
    by compression (points of equal compression count as their mean); NaN outside [lowest, highest]."""
    pts = pd.DataFrame({"x": list(compression), "y": list(accuracy)}, dtype=float).dropna()
    if pts.empty:
        return math.nan
    curve = pts.groupby("x")["y"].mean().sort_index()
    x, y = curve.index.to_numpy(float), curve.to_numpy(float)
    if level < x[0] or level > x[-1]:
        return math.nan
    return float(np.interp(level, x, y))


@dataclass(frozen=True)
class AtLevel:
    """A sweep read at one level: the value of each seed that reaches it, and where it came from."""

    values: pd.Series  # seed -> accuracy at the level
    status: str  # OK or OUT_OF_RANGE
    source: str  # "between rank=8 (84.2%) and rank=16 (89.0%)", "single setting tau=0.1 (89.8%)", ...


def _settings(runs: pd.DataFrame) -> pd.DataFrame:
    """A sweep's settings by mean compression: label and mean compression."""
    s = runs.groupby("params", sort=False).agg(label=("params_label", "first"), compression=("compression", "mean"))
    return s.sort_values("compression", kind="stable").reset_index(drop=True)


def _setting_text(label: str, compression: float) -> str:
    return f"{label or 'its setting'} ({compression:.1f}%)"


def sweep_at(runs: pd.DataFrame, level: float, tolerance: float = SINGLE_TOLERANCE) -> AtLevel:
    """The finished runs of one sweep (columns ``seed``, ``params``, ``params_label``, ``compression`` and the
    judged accuracy) read at ``level`` (see the module's docstring)."""
    settings = _settings(runs)
    if len(settings) == 1:
        label, comp = settings.loc[0, "label"], settings.loc[0, "compression"]
        text = f"single setting {_setting_text(label, comp)}" if label else f"single setting at {comp:.1f}%"
        if abs(comp - level) <= tolerance:
            return AtLevel(per_seed(runs["seed"], runs[JUDGED]), OK, text)
        return AtLevel(pd.Series(dtype=float), OUT_OF_RANGE, f"{text}, more than ±{tolerance:g} pt away")
    values = {}
    for seed, r in runs.groupby("seed"):
        v = interpolate_at(r["compression"], r[JUDGED], level)
        if not math.isnan(v):
            values[seed] = v
    lo, hi = settings["compression"].iloc[0], settings["compression"].iloc[-1]
    if not values:
        return AtLevel(pd.Series(dtype=float), OUT_OF_RANGE, f"sweep covers {lo:.1f}–{hi:.1f}%")
    below = settings[settings["compression"] <= level]
    above = settings[settings["compression"] >= level]
    if len(below) and len(above):
        a, b = below.iloc[-1], above.iloc[0]
        first, second = _setting_text(a["label"], a["compression"]), _setting_text(b["label"], b["compression"])
        source = f"at {first}" if first == second else f"between {first} and {second}"
    else:  # the settings' means do not bracket the level, some seeds' own compressions do
        source = f"sweep {lo:.1f}–{hi:.1f}% (bracketed by some seeds only)"
    return AtLevel(pd.Series(values, dtype=float), OK, source)


def check_compression_reference(runs: pd.DataFrame, cref: str | None) -> str:
    """The compression reference: ``tdlrt`` unless named; a method named must have runs among ``runs`` (the
    store's), else a :class:`ReportError`."""
    if cref is None:
        return DEFAULT_COMPRESSION_REFERENCE
    methods = sorted(set(runs["method"]))
    if cref not in methods:
        raise ReportError(
            f"--compression-reference: no run of method {cref!r}{did_you_mean(cref, methods)}; "
            f"methods in the store: {', '.join(methods)}"
        )
    return cref


def equal_compression(
    runs: pd.DataFrame,
    group_cols: Sequence[str],
    levels: Sequence[float] = DEFAULT_LEVELS,
    compression_reference: str = DEFAULT_COMPRESSION_REFERENCE,
    ci: str = "t",
    test: str = "ttest",
    tolerance: float = SINGLE_TOLERANCE,
) -> tuple[pd.DataFrame, list[str]]:
    """The equal-compression table of labelled runs (every status; only finished runs count): one row per
    group, level and sweep (method and initialization), ordered by accuracy within each level (``rank`` 1 is
    the most accurate; out-of-range rows last, without a rank); and notes on what was left out.

    ``compression_reference`` (default ``tdlrt``; :func:`check_compression_reference`) is the method every row is
    tested against; where it has no runs, no row is tested (a note says so)."""
    cref = compression_reference
    done = runs[(runs["status"] == RunStatus.DONE) & runs[JUDGED].notna() & runs["compression"].notna()]
    rows: list[dict] = []
    notes: list[str] = []
    dense = sorted(set(done.groupby("method")["compression"].max().loc[lambda c: c <= 0].index))
    if dense:
        notes.append(
            f"Equal compression: {', '.join(dense)} (0% compression) cannot be read at a compression level and is "
            "not in the table."
        )
    done = done[~done["method"].isin(dense)]
    keys = list(group_cols)
    if done.empty:
        return pd.DataFrame(columns=[*keys, *COLUMNS]), notes
    if cref not in set(done["method"]):
        notes.append(
            f"Equal compression: no finished {cref} runs, so no paired tests (choose another method with "
            "--compression-reference)."
        )
    missed: dict[tuple, list[float]] = {}  # group -> levels no method of it reaches
    for gvalues, g in done.groupby(keys, sort=False, dropna=False):
        base = dict(zip(keys, gvalues, strict=True))
        sweeps = {k: r for k, r in g.groupby(["method", "initialization"], sort=True)}
        for level in levels:
            read = {k: sweep_at(r, level, tolerance) for k, r in sweeps.items()}
            ref_values = {k[1]: v.values for k, v in read.items() if k[0] == cref and v.status == OK}
            block = []
            for (method, init), at in read.items():
                interval = confidence_interval(at.values, ci)
                settings = _settings(sweeps[(method, init)])
                row = {
                    **base,
                    "level": level,
                    "method": method,
                    "initialization": init,
                    "status": at.status,
                    "source": at.source,
                    "n": interval.n,
                    "acc_mean": interval.mean,
                    "acc_std": float(at.values.std(ddof=1)) if len(at.values) > 1 else math.nan,
                    "acc_ci95": interval.half,
                    "acc_ci_low": interval.low,
                    "acc_ci_high": interval.high,
                    "cref": "",
                    "delta_vs_cref": math.nan,
                    "n_pairs": 0,
                    "p_raw": math.nan,
                    "pair_note": "",
                    "sweep_low": settings["compression"].iloc[0],
                    "sweep_high": settings["compression"].iloc[-1],
                    "settings": len(settings),
                }
                theirs, what = _matched(ref_values, init, cref)
                if method != cref and at.status == OK and theirs is not None:
                    common = sorted(set(at.values.index) & set(theirs.index))
                    result = paired_test(at.values.loc[common], theirs.loc[common], test)
                    row.update(
                        cref=what,
                        delta_vs_cref=result.diff,
                        n_pairs=result.n_pairs,
                        p_raw=result.p,
                        pair_note=result.note,
                    )
                block.append(row)
            ranked = sorted(
                (r for r in block if r["status"] == OK),
                key=lambda r: (-r["acc_mean"], r["method"], r["initialization"]),
            )
            if not ranked:
                missed.setdefault(gvalues, []).append(level)
                continue
            for i, r in enumerate(ranked):
                r["rank"] = i + 1
            rest = [r for r in block if r["status"] != OK]
            for r in rest:
                r["rank"] = math.nan
            rows += ranked + rest
    notes += [
        f"Equal compression, {group_text(keys, gvalues)}: no method reaches {' or '.join(f'{v:g}%' for v in lv)} "
        f"({'; '.join(_ranges(done, keys, gvalues))}), so the table has no row for it."
        for gvalues, lv in missed.items()
    ]
    out = pd.DataFrame(rows, columns=[*keys, *COLUMNS])
    out = out.sort_values([*keys, "level"], kind="stable").reset_index(drop=True) if len(out) else out
    out["p_vs_cref"] = holm(out["p_raw"]) if len(out) else []
    out["significant"] = [significant(p) for p in out["p_vs_cref"]]
    out["n"] = out["n"].astype(int)
    out["n_pairs"] = out["n_pairs"].astype(int)
    return out, notes


def group_text(keys: Sequence[str], values: Sequence) -> str:
    """A group as ``mnist / lenet5 (budget ...; lr=0.05)`` for notes."""
    d = dict(zip(keys, values, strict=True))
    extra = [] if d.get("budget", "none") == "none" else [f"budget {d['budget']}"]
    extra += [f"{k.removeprefix('training.')}={plain(v)}" for k, v in d.items() if k.startswith("training.")]
    return f"{d['dataset']} / {d['model']}" + (f" ({'; '.join(extra)})" if extra else "")


def _ranges(done: pd.DataFrame, keys: Sequence[str], values: Sequence) -> list[str]:
    """Each sweep of a group with the range of its settings' mean compressions."""
    g = done[row_key(done, keys) == values_key(values)]
    out = []
    for (method, _init), r in g.groupby(["method", "initialization"], sort=True):
        s = _settings(r)["compression"]
        out.append(f"{method} {s.iloc[0]:.1f}%" if len(s) == 1 else f"{method} {s.iloc[0]:.1f}–{s.iloc[-1]:.1f}%")
    return list(dict.fromkeys(out))


def _matched(ref_values: dict[str, pd.Series], init: str, cref: str) -> tuple[pd.Series | None, str]:
    """The compression reference's per-seed values for a row of initialization ``init``: its sweep of the same
    initialization where it has one, else the per-seed mean over its sweeps; None where it has none here."""
    if not ref_values:
        return None, ""
    if init in ref_values:
        return ref_values[init], f"{cref} / {init}"
    pooled = pd.concat(list(ref_values.values()))
    return pooled.groupby(level=0).mean(), f"{cref}, all initializations"
