"""Ranking methods across several datasets and models: mean ranks, the Friedman test and Demšar's critical
difference for the Nemenyi test (Demšar, JMLR 2006).

A *block* is one (dataset, model, budget). In each block every method is represented by one setting: the one
with the best mean validation accuracy where all of the method's settings there have a validation split, else
(stores of the earlier protocol) the one with the best mean judged test accuracy, which is then said to be
chosen on test (optimistic); a method with one setting there is represented by it. Methods are ranked within
each block by that setting's mean judged accuracy (rank 1: the most accurate; ties share the mean of their
ranks), and only methods present in every block are ranked. With k ≥ 3 methods over N ≥ 2 blocks the Friedman
test (scipy.stats.friedmanchisquare) says whether the mean ranks differ at all, and the Nemenyi critical
difference CD = q_α · √(k(k+1) / (6N)), q_α = studentized range quantile(1 − α; k, ∞) / √2, says which pairs do:
two methods differ where their mean ranks differ by at least CD.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .stats import ALPHA

BLOCK_KEYS = ("dataset", "model", "budget")
SELECTED_BY = {
    "only": "its only setting",
    "validation": "best validation accuracy",
    "test": "best test accuracy (no validation split: earlier protocol, optimistic)",
}


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """q_α of the Nemenyi test for k methods: the studentized range quantile (1 − α; k, ∞) divided by √2."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n_blocks: int, alpha: float = ALPHA) -> float:
    """Demšar's critical difference of mean ranks for k methods over ``n_blocks`` blocks."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_blocks))


def block_ranks(scores: pd.DataFrame) -> pd.DataFrame:
    """Ranks within each block (row) of ``scores`` (blocks × methods, higher is better): 1 for the best, ties
    sharing the mean of their ranks."""
    ranked = [stats.rankdata(-row.to_numpy(float)) for _, row in scores.iterrows()]
    return pd.DataFrame(ranked, index=scores.index, columns=scores.columns)


def cliques(mean_ranks: pd.Series, cd: float) -> list[list[str]]:
    """Groups of methods whose mean ranks all lie within less than ``cd`` of each other (no pair of them differs
    significantly), maximal and of two or more, by increasing mean rank."""
    ordered = mean_ranks.sort_values(kind="stable")
    names, values = list(ordered.index), ordered.to_numpy(float)
    out: list[list[str]] = []
    last_end = -1
    for i in range(len(values)):
        j = i
        while j + 1 < len(values) and values[j + 1] - values[i] < cd:
            j += 1
        if j > i and j > last_end:
            out.append(names[i : j + 1])
            last_end = j
    return out


@dataclass
class Ranking:
    """The ranking of methods over blocks, with the tests where they apply."""

    blocks: list[str]  # block labels, in the order of the columns of ``scores``
    choices: pd.DataFrame  # per block and method: the setting chosen, how, its accuracy and rank
    scores: pd.DataFrame  # methods × blocks: mean judged accuracy of the chosen setting (ranked methods only)
    ranks: pd.DataFrame  # methods × blocks: rank within the block
    mean_rank: pd.Series  # method -> mean rank, ascending
    friedman_stat: float = math.nan
    friedman_p: float = math.nan
    cd: float = math.nan
    q_alpha: float = math.nan
    groups: list[list[str]] = field(default_factory=list)  # cliques: not significantly different
    notes: list[str] = field(default_factory=list)

    @property
    def k(self) -> int:
        return len(self.mean_rank)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)


def block_label(values: Sequence) -> str:
    dataset, model, budget = values
    return f"{dataset} / {model}" + ("" if budget == "none" else f" ({budget})")


def _setting_text(row: pd.Series, training_cols: Sequence[str]) -> str:
    parts = [str(row["params"]) if row["params"] else "", str(row["initialization"])]
    parts += [f"{c.removeprefix('training.')}={row[c]}" for c in training_cols]
    return ", ".join(p for p in parts if p)


def choose_settings(summary: pd.DataFrame, training_cols: Sequence[str] = ()) -> pd.DataFrame:
    """Per block and method the setting that represents the method there (see the module's docstring)."""
    rows = []
    done = summary[(summary["n"] > 0) & summary["acc_mean"].notna()]
    for values, g in done.groupby(list(BLOCK_KEYS), sort=False, dropna=False):
        for method, m in g.groupby("method", sort=True):
            if len(m) == 1:
                pick, how = m.iloc[0], "only"
            elif m["best_val_acc_mean"].notna().all():
                pick, how = m.loc[m["best_val_acc_mean"].idxmax()], "validation"
            else:
                pick, how = m.loc[m["acc_mean"].idxmax()], "test"
            rows.append(
                {
                    "block": block_label(values),
                    "method": method,
                    "setting": _setting_text(pick, training_cols),
                    "selected_by": how,
                    "candidates": len(m),
                    "acc_mean": pick["acc_mean"],
                    "n": int(pick["n"]),
                }
            )
    return pd.DataFrame(rows, columns=["block", "method", "setting", "selected_by", "candidates", "acc_mean", "n"])


def rank_methods(summary: pd.DataFrame, training_cols: Sequence[str] = (), alpha: float = ALPHA) -> Ranking | None:
    """The ranking of the summary's methods over its blocks; None where the summary holds a single dataset and
    model (budgets of one dataset and model alone are not ranked across)."""
    done = summary[summary["n"] > 0]
    if len(done[["dataset", "model"]].drop_duplicates()) < 2:
        return None
    choices = choose_settings(summary, training_cols)
    blocks = list(dict.fromkeys(choices["block"]))
    wide = choices.pivot(index="method", columns="block", values="acc_mean")[blocks]
    complete = wide.dropna()
    notes = []
    partial = sorted(set(wide.index) - set(complete.index))
    if partial:
        notes.append(
            f"Ranking: {', '.join(partial)} did not run in every block (dataset, model, budget) and are not "
            "ranked; only methods present in all blocks are."
        )
    chosen_on_test = sorted(set(choices.loc[choices["selected_by"] == "test", "method"]))
    if chosen_on_test:
        notes.append(
            f"Ranking: {', '.join(chosen_on_test)} had several settings in a block and no validation split, so the "
            "setting shown was chosen by its test accuracy (earlier protocol): their ranks are optimistic."
        )
    if len(complete) < 2:
        notes.append("Ranking: fewer than two methods ran in every block; nothing is ranked.")
        empty = pd.DataFrame(columns=blocks)
        return Ranking(blocks, choices, empty, empty, pd.Series(dtype=float), notes=notes)
    ranks = block_ranks(complete.T).T
    mean_rank = ranks.mean(axis=1).sort_values(kind="stable")
    order = list(mean_rank.index)
    ranking = Ranking(blocks, choices, complete.loc[order], ranks.loc[order], mean_rank, notes=notes)
    k, n = ranking.k, ranking.n_blocks
    if k < 3:
        notes.append(
            f"Ranking: {k} methods over {n} blocks: the Friedman test and the Nemenyi critical difference need at "
            "least 3 methods (and 2 blocks); the mean ranks are shown without a test."
        )
        return ranking
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every block tied: NaN
        result = stats.friedmanchisquare(*[complete.loc[m].to_numpy(float) for m in order])
    ranking.friedman_stat, ranking.friedman_p = float(result.statistic), float(result.pvalue)
    ranking.q_alpha = nemenyi_q(k, alpha)
    ranking.cd = critical_difference(k, n, alpha)
    ranking.groups = cliques(mean_rank, ranking.cd)
    if n < 10:
        notes.append(
            f"Ranking: with {n} blocks the Friedman statistic's chi-square approximation is rough and the "
            "Nemenyi test has little power; read the ranks as descriptive."
        )
    if not (ranking.friedman_p < alpha):
        notes.append(
            f"Ranking: the Friedman test does not reject equal mean ranks (p = {ranking.friedman_p:.3g}), so no "
            "pair of methods is called different; the critical difference is shown for reference."
        )
    return ranking


def ranking_table(ranking: Ranking) -> pd.DataFrame:
    """The ranking in long form (one row per block and method, ranked or not): the chosen setting, how it was
    chosen, its accuracy, its rank in the block and the method's mean rank; the tests' results in every row."""
    out = ranking.choices.copy()
    ranks = ranking.ranks.stack().rename("rank").reset_index() if ranking.k else None
    if ranks is not None:
        ranks.columns = ["method", "block", "rank"]
        out = out.merge(ranks, on=["block", "method"], how="left")
    else:
        out["rank"] = math.nan
    out["mean_rank"] = out["method"].map(ranking.mean_rank)
    out["friedman_stat"], out["friedman_p"] = ranking.friedman_stat, ranking.friedman_p
    out["critical_difference"] = ranking.cd
    return out
