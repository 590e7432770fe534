"""The report's statistics: confidence intervals over seeds, paired tests over matched seeds, Holm's correction.

Pure functions of numbers (no store, no report): every one is checked against scipy or a hand computation in
``tests/test_statistics.py``.

* :func:`confidence_interval`: the 95% interval of a mean over seeds, Student t (default) or bootstrap;
* :func:`pair_by_seed` and :func:`paired_test`: two settings' values on the seeds both ran, compared by a
  two-sided paired t-test (default) or a Wilcoxon signed-rank test;
* :func:`holm`: Holm's step-down adjustment of a family of p-values.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: Interval methods (``harness report --ci``) and paired tests (``--test``).
CI_METHODS = ("t", "bootstrap")
TESTS = ("ttest", "wilcoxon")
CONFIDENCE = 0.95
ALPHA = 0.05  # significance level after Holm's correction
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
TEST_NAMES = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its 95% confidence interval (``half``: half its width; NaN for fewer than 2)."""

    mean: float
    half: float
    low: float
    high: float
    n: int


def _values(values: Iterable[float]) -> np.ndarray:
    a = np.asarray([float(v) for v in values], dtype=float)
    return a[~np.isnan(a)]


def t_half_width(values: Iterable[float], confidence: float = CONFIDENCE) -> float:
    """Half the width of the Student-t interval of the mean: t_{(1+c)/2, n-1} · s / √n (NaN for n < 2)."""
    a = _values(values)
    if len(a) < 2:
        return math.nan
    return float(stats.t.ppf((1 + confidence) / 2, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))


def _bootstrap_once(a: np.ndarray, confidence: float, seed: int, method: str) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    name = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"  # scipy < 1.15
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample distribution gives NaN, handled by the caller
        res = stats.bootstrap(
            (a,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES, method=method, **{name: rng}
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _bootstrap(a: np.ndarray, confidence: float, seed: int) -> tuple[float, float]:
    """The BCa interval; the percentile interval where BCa degenerates (NaN)."""
    low, high = _bootstrap_once(a, confidence, seed, "BCa")
    if math.isnan(low) or math.isnan(high):
        low, high = _bootstrap_once(a, confidence, seed, "percentile")
    return low, high


def confidence_interval(
    values: Iterable[float], method: str = "t", confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED
) -> Interval:
    """The mean of ``values`` (NaNs dropped) and its confidence interval.

    ``t``: mean ± t_{(1+c)/2, n-1} · s / √n. ``bootstrap``: scipy's BCa bootstrap of the mean (9,999 resamples,
    seeded; percentile where BCa degenerates), whose half width is half the interval's width; all values equal
    give a zero-width interval. Fewer than 2 values: no interval (NaN)."""
    if method not in CI_METHODS:
        raise ValueError(f"unknown interval method {method!r}; choose from {', '.join(CI_METHODS)}")
    a = _values(values)
    n = len(a)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(a.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, n)
    if method == "t" or bool(np.all(a == a[0])):
        half = t_half_width(a, confidence)
        return Interval(mean, half, mean - half, mean + half, n)
    low, high = _bootstrap(a, confidence, seed)
    return Interval(mean, (high - low) / 2, low, high, n)


# ------------------------------------------------------------------------------------------------------
# paired tests


def per_seed(seeds: Sequence[int], values: Sequence[float]) -> pd.Series:
    """Values indexed by seed (NaNs dropped); several values of one seed give their mean."""
    s = pd.Series(list(values), index=list(seeds), dtype=float).dropna()
    return s.groupby(level=0).mean()


def pair_by_seed(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The values of ``a`` and ``b`` (indexed by seed) on the seeds both have, in seed order."""
    seeds = sorted(set(a.dropna().index) & set(b.dropna().index))
    return a.loc[seeds].to_numpy(float), b.loc[seeds].to_numpy(float), seeds


@dataclass(frozen=True)
class Paired:
    """A paired comparison of a setting with a reference over matched seeds: mean difference (a − b) and the
    raw (uncorrected) p-value; ``note`` says why there is none."""

    n_pairs: int
    diff: float
    p: float
    note: str = ""


def paired_test(a: Sequence[float], b: Sequence[float], test: str = "ttest") -> Paired:
    """Two-sided paired test of ``a`` against ``b`` (same length, pair i = one seed).

    ``ttest``: scipy.stats.ttest_rel; ``wilcoxon``: scipy.stats.wilcoxon (signed-rank, zero differences
    dropped, exact distribution for small samples). No p-value (NaN, with a note) for fewer than 2 pairs, for
    differences that are all zero, and, for the t-test, for differences that are all equal (no spread)."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose from {', '.join(TESTS)}")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"paired samples differ in length: {len(x)} and {len(y)}")
    n = len(x)
    d = x - y
    diff = float(d.mean()) if n else math.nan
    if n < 2:
        return Paired(n, diff, math.nan, f"{n} seed(s) in common: a paired test needs at least 2")
    if bool(np.all(d == 0)):
        return Paired(n, diff, math.nan, "identical on every common seed: nothing to test")
    if test == "ttest":
        if bool(np.all(d == d[0])):
            return Paired(n, diff, math.nan, "the same difference on every seed: no spread, the t-test is undefined")
        return Paired(n, diff, float(stats.ttest_rel(x, y).pvalue))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(stats.wilcoxon(x, y).pvalue)
    return Paired(n, diff, p)


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given; NaNs stay NaN and do not count in the family.

    With the m p-values sorted ascending, p_(1) ≤ ... ≤ p_(m): adj_(i) = min(1, max_{j ≤ i} (m − j + 1) · p_(j)).
    Rejecting where adj < α controls the family-wise error rate at α (Holm 1979)."""
    p = np.asarray(list(pvalues), dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[i]))
        out[i] = running
    return out


def significant(p: float, alpha: float = ALPHA) -> bool:
    """Whether an adjusted p-value is below ``alpha``."""
    return not math.isnan(p) and p < alpha


def format_p(p: float) -> str:
    """A p-value as a table prints it: 3 decimals, ``<0.001`` below that, ``*`` where significant."""
    if math.isnan(p):
        return "—"
    text = "<0.001" if p < 0.001 else f"{p:.3f}"
    return text + (" *" if significant(p) else "")
