"""Tuning in the report: trials kept out of the comparison, tuned settings compared as one, and the table of
what each method was tried at and what was chosen.

A tuning's trials are runs in the store (:mod:`harness.tuning`); they compete only with each other, so the
report's summary leaves them out. The runs of a chosen setting differ between methods in what tuning set (a
learning rate, say); in the summary those settings read ``tuned`` so that every method of a group is compared
with the same reference, and the chosen values are named in the row (``params``) and in this table.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from harness.config import RunStatus, plain
from harness.tuning import choose

from .cells import missing

TUNED = "tuned"


def without_trials(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs that are not tuning trials, the trials) of a runs frame (:func:`harness.report.frames.runs_frame`)."""
    if "role" not in runs.columns:
        return runs, runs.iloc[0:0]
    trial = runs["role"] == "trial"
    return runs[~trial], runs[trial]


def _keys(row: pd.Series) -> list[str]:
    keys = row.get("tuned_keys")
    return [] if missing(keys) else list(json.loads(keys))


def _column(key: str) -> str:
    """``training.lr`` -> ``training.lr``; ``params.tau`` -> ``param.tau`` (the runs frame's column names)."""
    section, _, name = key.partition(".")
    return f"param.{name}" if section == "params" else key


def setting_text(row: pd.Series) -> str:
    """``lr=0.0639, tau=0.15``: the values tuning set in a trial or tuned run."""
    return ", ".join(f"{k.partition('.')[2]}={plain(row.get(_column(k)))}" for k in _keys(row))


def mask_tuned(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of chosen settings with the training settings tuning set read ``tuned`` (so that methods tuned to
    different values stay in one group) and a ``tuned_setting`` column naming the chosen values."""
    out = runs.copy()
    out["tuned_setting"] = ""
    if "role" not in out.columns:
        return out
    for idx, row in out[out["role"] == TUNED].iterrows():
        out.at[idx, "tuned_setting"] = setting_text(row)
        for key in _keys(row):
            if key.startswith("training.") and key in out.columns:
                out[key] = out[key].astype(object)
                out.at[idx, key] = TUNED
    return out


def _score(row: pd.Series, metric: str) -> float | None:
    if row["status"] != RunStatus.DONE.value:
        return None
    v = row.get(metric)
    return None if missing(v) or not math.isfinite(float(v)) else float(v)


def _base_params(row: pd.Series) -> str:
    """The trial's distinguishing parameters (``params_label``) without those tuning set."""
    label = row.get("params_label")
    if missing(label) or not label:
        return ""
    tuned = {k.partition(".")[2] for k in _keys(row) if k.startswith("params.")}
    return ", ".join(p for p in str(label).split(", ") if p.split("=", 1)[0] not in tuned)


def tuning_table(trials: pd.DataFrame, tuned: pd.DataFrame) -> pd.DataFrame:
    """One row per tuned setting: its space, the trials (setting and validation score, in trial order), the chosen
    trial and its score, and how many runs of the chosen setting are finished (accuracies in percent)."""
    rows: list[dict[str, Any]] = []
    if trials.empty:
        return pd.DataFrame(rows)
    for (_, _), g in trials.groupby(["tuning", "tuned_setting_id"], sort=False):
        g = g.sort_values("trial")
        first = g.iloc[0]
        metric = str(first["tuning_metric"])
        scores = [_score(r, metric) for _, r in g.iterrows()]
        settled = g["status"].isin([RunStatus.DONE.value, RunStatus.FAILED.value]).all()
        best = choose(scores)  # the rule harness run chose by
        tried = "; ".join(
            f"{setting_text(r)}: " + (f"{s:.2f}" if s is not None else r["status"])
            for (_, r), s in zip(g.iterrows(), scores, strict=True)
        )
        chosen = g.iloc[best] if best is not None and settled else None
        runs_of = (
            tuned[(tuned["tuning"] == first["tuning"]) & (tuned["tuned_setting_id"] == first["tuned_setting_id"])]
            if "tuning" in tuned.columns
            else tuned.iloc[0:0]
        )
        rows.append(
            {
                "dataset": first["dataset"],
                "model": first["model"],
                "method": first["method"],
                "params": _base_params(first),
                "initialization": first["initialization"],
                "space": first["tuning_space"],
                "metric": metric,
                "trials": len(g),
                "failed": int((g["status"] == RunStatus.FAILED.value).sum()),
                "tried": tried,
                "chosen": setting_text(chosen) if chosen is not None else ("—" if settled else "trials unfinished"),
                "chosen_score": scores[best] if chosen is not None and best is not None else math.nan,
                "seeds_done": int((runs_of["status"] == RunStatus.DONE.value).sum()) if len(runs_of) else 0,
            }
        )
    return pd.DataFrame(rows)


TUNING_NOTE = (
    "Every method had the same number of trials over the space shown, scored on the validation split (a failed "
    "trial scores nothing); the chosen setting (the best score, the earlier of equals) was then trained with every "
    "seed. Scores are validation accuracies in percent; the test set chose nothing."
)


def tuning_frame(table: pd.DataFrame) -> tuple[pd.DataFrame, list[bool]]:
    """The tuning table as shown: (frame, left-aligned per column)."""
    df = pd.DataFrame(
        {
            "dataset": table["dataset"],
            "model": table["model"],
            "method": table["method"],
            "params": [p or "—" for p in table["params"]],
            "space": table["space"],
            "trials": [
                f"{t} ({f} failed)" if f else str(t) for t, f in zip(table["trials"], table["failed"], strict=True)
            ],
            "tried (val acc %)": table["tried"],
            "chosen": table["chosen"],
            "val acc (%)": [("—" if missing(v) else f"{v:.2f}") for v in table["chosen_score"]],
            "seeds done": table["seeds_done"],
        }
    )
    return df, [True, True, True, True, True, False, True, True, False, False]
