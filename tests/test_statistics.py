"""The report's statistics: confidence intervals and paired tests equal scipy's, Holm equals a hand computation,
pairing is by seed, the accuracy a run is judged by, accuracy at equal compression on a hand-made store, the
ranking with the Friedman test and Demšar's critical difference, and all of it in the report's outputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.config import RunSpec
from harness.report import build_report, parse_formats, render_markdown, write_report
from harness.report.equal_compression import interpolate_at, parse_levels
from harness.report.errors import ReportError
from harness.report.judged import judged_accuracy
from harness.report.ranking import cliques, critical_difference, nemenyi_q, rank_methods
from harness.report.stats import confidence_interval, holm, paired_test, t_half_width
from harness.store import Store
from tests.conftest import cli
from tests.test_report import metrics as report_metrics

TRAINING = {"epochs": 1, "batch_size": 64, "lr": 0.05}


def spec(method: str, params: dict | None = None, seed: int = 0, dataset: str = "mnist_subset") -> RunSpec:
    return RunSpec.of(
        {
            "dataset": dataset,
            "model": "lenet5",
            "method": method,
            "params": params or {},
            "initialization": "pytorch",
            "seed": seed,
            "training": TRAINING,
            "budget": {"train_subset": None, "test_subset": None, "epochs": None},
        }
    )


def finish(store: Store, run: RunSpec, acc: float, compression: float = 0.0, **extra) -> None:
    """A finished run: accuracies and compression as fractions, as training stores them."""
    assert store.claim(run.id)
    row = {"epoch": 0, "train_loss": 0.5, "test_acc": acc, "test_loss": 0.3, "seconds": 1.0, "lr": 0.05, "layers": []}
    store.add_epoch(run.id, row)
    store.finish(run.id, "done", {**report_metrics(acc, compression), **extra})


# ------------------------------------------------------------------------------------------------------
# confidence intervals, paired tests, Holm


def test_t_interval_equals_scipy_and_a_hand_value():
    values = [90.0, 92.0, 94.0]
    ci = confidence_interval(values)
    low, high = stats.t.interval(0.95, df=2, loc=92.0, scale=stats.sem(values))
    assert (ci.mean, ci.n) == (92.0, 3)
    assert ci.low == pytest.approx(low) and ci.high == pytest.approx(high)
    assert ci.half == pytest.approx(4.302652729749464 * 2.0 / math.sqrt(3))  # t_{0.975, 2} · s / √n, s = 2
    assert t_half_width([85.0, 87.0]) == pytest.approx(12.706204736174707)  # t_{0.975, 1} · √2 / √2
    one = confidence_interval([91.0])
    assert one.mean == 91.0 and one.n == 1 and math.isnan(one.half)
    assert confidence_interval([]).n == 0 and math.isnan(confidence_interval([float("nan")]).mean)


def test_bootstrap_interval_equals_scipy_with_the_same_seed():
    values = [90.5, 91.0, 92.5, 93.0, 95.5, 91.5]
    ci = confidence_interval(values, "bootstrap")
    ref = stats.bootstrap((np.array(values),), np.mean, n_resamples=9999, method="BCa", rng=np.random.default_rng(0))
    assert ci.low == pytest.approx(ref.confidence_interval.low) and ci.high == pytest.approx(
        ref.confidence_interval.high
    )
    assert ci.half == pytest.approx((ci.high - ci.low) / 2) and ci.low < ci.mean < ci.high
    assert confidence_interval(values, "bootstrap") == ci  # seeded: the same interval every time
    flat = confidence_interval([97.0, 97.0, 97.0], "bootstrap")
    assert flat.half == 0.0 and flat.low == flat.high == 97.0
    with pytest.raises(ValueError, match="unknown interval method"):
        confidence_interval(values, "jackknife")


def test_paired_tests_equal_scipy():
    a = [98.1, 97.6, 98.4, 97.9, 98.8, 97.2, 98.0]
    b = [98.5, 98.0, 98.3, 98.6, 99.1, 97.9, 98.2]
    t = paired_test(a, b, "ttest")
    assert t.n_pairs == 7 and t.p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert t.diff == pytest.approx(np.mean(np.subtract(a, b)))
    w = paired_test(a, b, "wilcoxon")
    assert w.p == pytest.approx(stats.wilcoxon(a, b).pvalue) and w.p != t.p


def test_paired_tests_without_a_p_value_say_why():
    assert math.isnan(paired_test([1.0], [2.0]).p) and "at least 2" in paired_test([1.0], [2.0]).note
    same = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert math.isnan(same.p) and "identical" in same.note
    shifted = paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], "ttest")
    assert math.isnan(shifted.p) and "no spread" in shifted.note and shifted.diff == 1.0
    assert paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], "wilcoxon").p == pytest.approx(0.25)  # exact, n = 3


def test_holm_equals_a_hand_computation():
    # sorted: 0.005·4 = 0.02; 0.01·3 = 0.03; 0.03·2 = 0.06; 0.04·1 = 0.04 -> 0.06 (never below the one before)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaNs stay NaN and do not count: m = 2; 0.02·2 = 0.04, 0.6·1 = 0.6; capped at 1
    out = holm([float("nan"), 0.6, 0.02, float("nan")])
    assert np.isnan(out[[0, 3]]).all() and list(out[[1, 2]]) == pytest.approx([0.6, 0.04])
    assert list(holm([0.5, 0.6])) == [1.0, 1.0]
    assert len(holm([])) == 0


# ------------------------------------------------------------------------------------------------------
# the accuracy a run is judged by


def test_judged_accuracy_is_the_test_accuracy_at_the_best_validation_epoch_else_the_final_one(tmp_path):
    store = Store(tmp_path / "s")
    with_val, without = spec("full", seed=0), spec("full", seed=1)
    store.add_runs("s", [with_val, without])
    # best_acc (the best test accuracy) is high on purpose: it must never be what a run is judged by
    finish(store, with_val, 0.95, best_val_acc=0.97, test_acc_at_best_val=0.93, best_epoch=0)
    finish(store, without, 0.91)
    rep = build_report(store)
    runs = rep.runs.set_index("seed")
    assert runs.loc[0, "judged_acc"] == pytest.approx(93.0) and runs.loc[0, "judged_by"] == "test_acc_at_best_val"
    assert runs.loc[1, "judged_acc"] == pytest.approx(91.0) and runs.loc[1, "judged_by"] == "final_acc"
    assert runs.loc[0, "best_val_acc"] == pytest.approx(97.0) and runs.loc[0, "best_epoch"] == 1  # shown from 1
    row = rep.summary.iloc[0]
    assert row["acc_mean"] == pytest.approx(92.0) and row["final_acc_mean"] == pytest.approx(93.0)
    assert row["judged_by"] == "mixed" and row["best_acc_mean"] == pytest.approx(93.5)
    frame = pd.DataFrame({"final_acc": [90.0, 91.0, None], "test_acc_at_best_val": [None, 92.0, None]})
    assert list(judged_accuracy(frame).fillna(-1)) == [90.0, 92.0, -1]

    out = tmp_path / "runs.csv"
    assert cli("export", str(store.dir), "-o", str(out)).returncode == 0
    exported = pd.read_csv(out).set_index("seed")
    assert exported.loc[0, "judged_acc"] == pytest.approx(93.0) and exported.loc[1, "judged_by"] == "final_acc"


# ------------------------------------------------------------------------------------------------------
# pairing by seed


def test_pairing_is_by_seed_whatever_the_run_order(tmp_path):
    store = Store(tmp_path / "s")
    full = {0: 0.90, 1: 0.91, 2: 0.95, 3: 0.93}
    svd = {2: 0.91, 0: 0.88, 1: 0.905}  # stored in another order, no seed 3
    lone = {5: 0.89, 0: 0.87}  # one seed in common with full
    runs = [spec("full", seed=s) for s in full] + [spec("svd", {"rank": 8}, s) for s in svd]
    runs += [spec("cp", {"rank": 4}, s) for s in lone]
    store.add_runs("s", runs[::-1])
    for s, acc in reversed(list(svd.items())):
        finish(store, spec("svd", {"rank": 8}, s), acc, 0.5)
    for s, acc in full.items():
        finish(store, spec("full", seed=s), acc)
    for s, acc in lone.items():
        finish(store, spec("cp", {"rank": 4}, s), acc, 0.5)
    mine, theirs = [88.0, 90.5, 91.0], [90.0, 91.0, 95.0]  # seeds 0, 1, 2
    for test, fn in (("ttest", stats.ttest_rel), ("wilcoxon", stats.wilcoxon)):
        s = build_report(store, test=test).summary.set_index("method")
        assert s.loc["svd", "n_pairs"] == 3 and s.loc["svd", "p_raw"] == pytest.approx(fn(mine, theirs).pvalue)
        assert (
            s.loc["cp", "n_pairs"] == 1
            and math.isnan(s.loc["cp", "p_raw"])
            and "at least 2" in s.loc["cp", "pair_note"]
        )
        assert s.loc["full", "n_pairs"] == 0 and math.isnan(s.loc["full", "p_vs_ref"])
        assert s.loc["svd", "p_vs_ref"] == pytest.approx(s.loc["svd", "p_raw"])  # a family of one
    rep = build_report(store)
    assert any("No p vs full for 1 row(s), 1 seed(s) in common" in n for n in rep.notes)
    assert any("cp (mnist_subset / lenet5)" in n for n in rep.notes)


# ------------------------------------------------------------------------------------------------------
# equal compression

# seeds 0, 1, 2; accuracies and compressions as fractions (stored), in % in the comments
SWEEPS = {
    # tdlrt: seeds' own compressions differ. At 90: 97 + 4/8·(93 − 97) = 95; 96 + 2/8·(94 − 96) = 95.5;
    # 98 + 3/8·(92 − 98) = 95.75. At 95: seed 0 tops out at 94 (no value); 96 + 7/8·(−2) = 94.25; 92 (at a point)
    ("tdlrt", "tau", 0.1): ([0.86, 0.88, 0.87], [0.97, 0.96, 0.98]),
    ("tdlrt", "tau", 0.2): ([0.94, 0.96, 0.95], [0.93, 0.94, 0.92]),
    # svd: at 90: 96 + 5/8·(92 − 96) = 93.5; 97 + 5/8·(93 − 97) = 94.5; 95 + 5/8·(94 − 95) = 94.375; 95 is out
    ("svd", "rank", 16): ([0.85] * 3, [0.96, 0.97, 0.95]),
    ("svd", "rank", 8): ([0.93] * 3, [0.92, 0.93, 0.94]),
    ("cp", "rank", 4): ([0.904] * 3, [0.955, 0.951, 0.96]),  # one setting at 90.4%: within ±0.5 of 90
    ("tt", "rank", 4): ([0.91] * 3, [0.97, 0.97, 0.97]),  # one setting at 91%: 1 pt from 90, out
}
AT_90 = {"tdlrt": [95.0, 95.5, 95.75], "svd": [93.5, 94.5, 94.375], "cp": [95.5, 95.1, 96.0]}


def equal_store(directory) -> Store:
    store = Store(directory)
    runs = {(m, k, v, s): spec(m, {k: v}, s) for (m, k, v) in SWEEPS for s in range(3)}
    fulls = [spec("full", seed=s) for s in range(3)]
    store.add_runs("eq", [*runs.values(), *fulls])
    for (m, k, v), (comps, accs) in SWEEPS.items():
        for s in (2, 0, 1):
            finish(store, runs[(m, k, v, s)], accs[s], comps[s])
    for s, run in enumerate(fulls):
        finish(store, run, 0.97 + 0.005 * s)
    return store


def test_interpolation_is_linear_between_bracketing_points_and_never_extrapolates():
    assert interpolate_at([86.0, 94.0], [97.0, 93.0], 90.0) == pytest.approx(95.0)
    assert interpolate_at([94.0, 86.0], [93.0, 97.0], 90.0) == pytest.approx(95.0)  # order of the points: any
    assert interpolate_at([86.0, 94.0], [97.0, 93.0], 94.0) == pytest.approx(93.0)
    assert math.isnan(interpolate_at([86.0, 94.0], [97.0, 93.0], 95.0))
    assert math.isnan(interpolate_at([86.0, 94.0], [97.0, 93.0], 85.9))
    assert interpolate_at([90.0, 90.0, 80.0], [96.0, 94.0, 99.0], 90.0) == pytest.approx(95.0)  # ties: their mean


def test_equal_compression_table_equals_hand_values(tmp_path):
    rep = build_report(equal_store(tmp_path / "s"))
    eq = rep.equal
    at90 = eq[eq["level"] == 90].set_index("method")
    assert list(eq.loc[eq["level"] == 90, "method"]) == ["cp", "tdlrt", "svd", "tt"]  # by accuracy, out last
    for method, values in AT_90.items():
        assert at90.loc[method, "acc_mean"] == pytest.approx(np.mean(values)), method
        assert at90.loc[method, "acc_ci95"] == pytest.approx(t_half_width(values)), method
        assert at90.loc[method, "n"] == 3
    assert list(at90.loc[["cp", "tdlrt", "svd"], "rank"]) == [1, 2, 3] and math.isnan(at90.loc["tt", "rank"])
    assert at90.loc["tt", "status"] == "out of range" and "more than ±0.5 pt away" in at90.loc["tt", "source"]
    assert at90.loc["cp", "source"] == "single setting at 90.4%"
    assert at90.loc["svd", "source"] == "between rank=16 (85.0%) and rank=8 (93.0%)"
    # paired against tdlrt by seed; Holm over the two p-values of the table
    p_svd = stats.ttest_rel(AT_90["svd"], AT_90["tdlrt"]).pvalue
    p_cp = stats.ttest_rel(AT_90["cp"], AT_90["tdlrt"]).pvalue
    assert at90.loc["svd", "p_raw"] == pytest.approx(p_svd) and at90.loc["cp", "p_raw"] == pytest.approx(p_cp)
    assert at90.loc["svd", "delta_vs_cref"] == pytest.approx(np.mean(AT_90["svd"]) - np.mean(AT_90["tdlrt"]))
    low, high = sorted([p_svd, p_cp])  # Holm, m = 2: 2·p_(1), then max(that, p_(2))
    adjusted = {low: min(1.0, 2 * low), high: max(min(1.0, 2 * low), high)}
    assert at90.loc["svd", "p_vs_cref"] == pytest.approx(adjusted[p_svd])
    assert at90.loc["cp", "p_vs_cref"] == pytest.approx(adjusted[p_cp])
    assert math.isnan(at90.loc["tdlrt", "p_raw"]) and at90.loc["tdlrt", "cref"] == ""

    at95 = eq[eq["level"] == 95].set_index("method")
    assert at95.loc["tdlrt", "n"] == 2 and at95.loc["tdlrt", "acc_mean"] == pytest.approx((94.25 + 92.0) / 2)
    assert at95.loc["svd", "status"] == "out of range" and at95.loc["svd", "source"] == "sweep covers 85.0–93.0%"
    assert at95.loc["cp", "status"] == "out of range"
    assert "full" not in set(eq["method"]) and any("full (0% compression)" in n for n in rep.notes)

    md = render_markdown(rep)
    assert "## Accuracy at equal compression" in md
    assert "| 90 | cp | 1 | 95.53 ± " in md and "| 95 | svd | — | out of range |" in md
    assert "p vs tdlrt (Holm)" in md and "within ±0.5 pt" in md and "no extrapolation" in md


def test_equal_compression_options_and_their_errors(tmp_path):
    store = equal_store(tmp_path / "s")
    rep = build_report(store, levels=(88.0,), compression_reference="svd")
    eq = rep.equal.set_index("method")
    svd, tdlrt = [94.5, 95.5, 94.625], [96.0, 96.0, 97.25]  # e.g. svd seed 0: 96 + 3/8·(92 − 96); tdlrt seed 1: at 88
    assert set(rep.equal["level"]) == {88.0} and eq.loc["svd", "acc_mean"] == pytest.approx(np.mean(svd))
    assert math.isnan(eq.loc["svd", "p_raw"]) and eq.loc["tdlrt", "cref"] == "svd / pytorch"
    assert eq.loc["tdlrt", "p_raw"] == pytest.approx(stats.ttest_rel(tdlrt, svd).pvalue)
    assert eq.loc["cp", "status"] == "out of range" and "Δ vs svd (pp)" in render_markdown(rep)
    far = build_report(store, levels=(50.0,))
    assert not far.has_equal and any("no method reaches 50%" in n for n in far.notes)
    assert "## Accuracy at equal compression" not in render_markdown(far)
    assert parse_levels("90, 95%,90") == (90.0, 95.0)
    for bad, message in (("abc", "not a number"), ("120", "between 0 and 100"), ("", "no compression level")):
        with pytest.raises(ReportError, match=f"--at: .*{message}"):
            parse_levels(bad)
    with pytest.raises(ReportError, match=r"--compression-reference: no run of method 'tdlr' \(did you mean"):
        build_report(store, compression_reference="tdlr")
    # a reference in the store but not among the selected runs: no tests, a note (like --reference)
    without = build_report(store, where="method != 'tdlrt'", compression_reference="tdlrt")
    assert without.equal["p_raw"].isna().all() and any("no finished tdlrt runs" in n for n in without.notes)
    for option, value in (("--ci", "jackknife"), ("--test", "mannwhitney"), ("--at", "95,x")):
        res = cli("report", str(store.dir), "--no-plots", "-o", str(tmp_path / "out"), option, value)
        assert res.returncode == 2 and option in res.stderr and "Traceback" not in res.stderr, res.stderr


# ------------------------------------------------------------------------------------------------------
# ranking across datasets and models


def summary_frame(scores: dict[str, dict[str, float]], val: dict | None = None) -> pd.DataFrame:
    """A summary as aggregate() gives it, as much as the ranking reads: one setting per method and block."""
    rows = []
    for block, accs in scores.items():
        for method, acc in accs.items():
            v = (val or {}).get((block, method), math.nan)
            rows.append(
                {
                    "dataset": block,
                    "model": "lenet5",
                    "budget": "none",
                    "method": method,
                    "params": "",
                    "initialization": "pytorch",
                    "n": 3,
                    "acc_mean": acc,
                    "best_val_acc_mean": v,
                }  # fmt: skip
            )
    return pd.DataFrame(rows)


SCORES = {  # hand ranks in the comments
    "d1": {"A": 95, "B": 94, "C": 93, "D": 92},  # 1, 2, 3, 4
    "d2": {"A": 90, "B": 91, "C": 89, "D": 88},  # 2, 1, 3, 4
    "d3": {"A": 80, "B": 79, "C": 79, "D": 70},  # 1, 2.5, 2.5, 4
    "d4": {"A": 85, "B": 83, "C": 84, "D": 82},  # 1, 3, 2, 4
}


def test_ranking_mean_ranks_friedman_and_critical_difference():
    r = rank_methods(summary_frame(SCORES))
    assert r is not None and r.k == 4 and r.n_blocks == 4
    assert dict(r.mean_rank) == pytest.approx({"A": 1.25, "B": 2.125, "C": 2.625, "D": 4.0})
    assert list(r.ranks.loc["C"]) == [3, 3, 2.5, 2]
    columns = [[SCORES[b][m] for b in SCORES] for m in "ABCD"]
    scipy_result = stats.friedmanchisquare(*columns)
    assert r.friedman_stat == pytest.approx(scipy_result.statistic) and r.friedman_p == pytest.approx(
        scipy_result.pvalue
    )
    # Demšar (2006), Table 5(a): q_0.05 = 2.343, 2.569, 2.728 for k = 3, 4, 5
    assert [nemenyi_q(k) for k in (3, 4, 5)] == pytest.approx([2.343, 2.569, 2.728], abs=1e-3)
    assert r.cd == pytest.approx(nemenyi_q(4) * math.sqrt(4 * 5 / (6 * 4))) and r.cd == pytest.approx(2.345, abs=1e-3)
    assert critical_difference(4, 4) == r.cd
    # mean ranks within less than CD: {A, B, C} (A–D is 2.75 ≥ CD), {B, C, D}
    assert r.groups == [["A", "B", "C"], ["B", "C", "D"]]


def test_friedman_statistic_equals_the_hand_formula_without_ties():
    # two blocks, ranks 1, 2, 3 in both: χ² = 12N/(k(k+1)) · (ΣR_j² − k(k+1)²/4) = 2 · (1 + 4 + 9 − 12) = 4
    r = rank_methods(summary_frame({"d1": {"A": 3, "B": 2, "C": 1}, "d2": {"A": 4, "B": 3, "C": 2}}))
    assert r is not None and r.friedman_stat == pytest.approx(4.0) and r.friedman_p == pytest.approx(math.exp(-2))


def test_cliques_by_hand():
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.2, "e": 5.0})
    assert cliques(ranks, 1.0) == [["a", "b"], ["c", "d"]]
    # from a: c is 2.0 away (< 2.05), d 2.2; from b: d is 1.7 away, e 3.5; from c: e is 2.0 away
    assert cliques(ranks, 2.05) == [["a", "b", "c"], ["b", "c", "d"], ["c", "d", "e"]]
    assert cliques(ranks, 0.1) == []


def test_ranking_chooses_settings_on_validation_and_says_what_it_cannot_do():
    scores = {b: dict(v) for b, v in SCORES.items()}
    frame = summary_frame(scores, val={(b, m): 50.0 for b in scores for m in scores[b]})
    better_on_test = frame.iloc[[0]].assign(params="rank=2", acc_mean=99.0, best_val_acc_mean=40.0)
    r = rank_methods(pd.concat([frame, better_on_test], ignore_index=True))
    chosen = r.choices.set_index(["block", "method"]).loc[("d1 / lenet5", "A")]
    assert chosen["selected_by"] == "validation" and chosen["acc_mean"] == 95 and chosen["candidates"] == 2
    no_val = rank_methods(pd.concat([summary_frame(SCORES), better_on_test], ignore_index=True))
    assert no_val.choices.set_index(["block", "method"]).loc[("d1 / lenet5", "A"), "selected_by"] == "test"
    assert any("chosen by its test accuracy" in n for n in no_val.notes)

    partial = summary_frame({**SCORES, "d5": {"A": 90, "B": 80, "C": 70, "E": 60}})
    r = rank_methods(partial)
    assert set(r.mean_rank.index) == set("ABC") and any("D, E did not run in every block" in n for n in r.notes)
    two = rank_methods(summary_frame({"d1": {"A": 1, "B": 2}, "d2": {"A": 2, "B": 1}}))
    assert two is not None and two.k == 2 and math.isnan(two.friedman_p) and any("at least 3" in n for n in two.notes)
    assert rank_methods(summary_frame({"d1": SCORES["d1"]})) is None  # one dataset and model: nothing to rank


# ------------------------------------------------------------------------------------------------------
# the report


def ranked_store(directory) -> Store:
    """Two datasets, four methods, three seeds: a ranking, paired tests and an equal-compression table."""
    store = Store(directory)
    accs = {"full": 0.97, "svd": 0.95, "tdlrt": 0.96, "cp": 0.94}
    comps = {"full": 0.0, "svd": 0.9, "tdlrt": 0.9, "cp": 0.9}
    runs = []
    for dataset, shift in (("mnist_subset", 0.0), ("fashion_mnist", -0.08)):
        for m in accs:
            for s in range(3):
                run = spec(m, {} if m == "full" else {"rank": 4}, s, dataset)
                runs.append((run, accs[m] + shift + 0.002 * s * (1 + len(m)), comps[m]))
    store.add_runs("ranked", [r for r, _, _ in runs])
    for run, acc, comp in runs:
        finish(store, run, acc, comp)
    return store


def test_report_shows_intervals_tests_equal_compression_and_ranking(tmp_path):
    store = ranked_store(tmp_path / "s")
    rep = build_report(store)
    out = tmp_path / "out"
    paths = write_report(rep, out, parse_formats("all"), plots=True)
    names = {p.name for p in paths}
    assert {"equal_compression.csv", "ranking.csv", "critical_difference_all.png"} <= names

    s = rep.summary.set_index(["dataset", "method"])
    svd = s.loc[("mnist_subset", "svd")]
    values = [95.0 + 0.8 * i for i in range(3)]  # 0.95 + 0.002·s·4, in %
    assert svd["acc_ci95"] == pytest.approx(t_half_width(values)) and svd["n_pairs"] == 3
    md = (out / "report.md").read_text()
    assert f"| {np.mean(values):.2f} ± {t_half_width(values):.2f} |" in md
    assert "p vs full (Holm)" in md and "| pairs |" in md and "* marks p < 0.05 after the correction" in md
    assert "± the half-width of its 95% confidence interval (Student t" in md
    assert "## Accuracy at equal compression" in md and "## Ranking across datasets and models" in md
    assert "Friedman test over 4 methods" in md and "critical difference" in md

    summary = pd.read_csv(out / "summary.csv")
    assert {"acc_ci95", "acc_ci_low", "acc_ci_high", "p_vs_ref", "p_raw", "n_pairs", "judged_by"} <= set(summary)
    equal = pd.read_csv(out / "equal_compression.csv")
    assert set(equal["method"]) == {"svd", "tdlrt", "cp"} and set(equal["level"]) == {90.0}  # none reaches 95
    ranking = pd.read_csv(out / "ranking.csv")
    assert len(ranking) == 8 and ranking["mean_rank"].notna().all()

    tex = (out / "report.tex").read_text()
    assert "tab:harness-equal-compression" in tex and "tab:harness-ranking" in tex
    page = (out / "report.html").read_text()
    assert 'class="equal-compression"' in page and 'class="ranking"' in page and "Critical difference" in page


def test_report_with_bootstrap_intervals_and_wilcoxon(tmp_path):
    store = ranked_store(tmp_path / "s")
    res = cli(
        "report", str(store.dir), "--no-plots", "--ci", "bootstrap", "--test", "wilcoxon", "-o", str(tmp_path / "o")
    )
    assert res.returncode == 0, res.stderr
    rep = build_report(store, ci="bootstrap", test="wilcoxon")
    row = rep.summary.set_index(["dataset", "method"]).loc[("mnist_subset", "svd")]
    assert f"{row['acc_mean']:.2f} [{row['acc_ci_low']:.2f}, {row['acc_ci_high']:.2f}]" in res.stdout
    assert "95% bootstrap confidence interval [low, high]" in res.stdout and "Wilcoxon signed-rank test" in res.stdout
    assert "cannot reach p < 0.05" in res.stdout
    assert row["p_raw"] == pytest.approx(0.25)  # three pairs, all the same sign: the exact two-sided minimum


def test_a_store_of_the_earlier_protocol_is_judged_by_its_final_accuracy(tmp_path):
    """No validation metrics: every accuracy is the final one, and the legend says so."""
    rep = build_report(equal_store(tmp_path / "s"))
    s = rep.summary.set_index("method")
    assert s.loc["full", "acc_mean"] == pytest.approx(97.5) and s.loc["full", "judged_by"] == "final_acc"
    assert s.loc["full", "final_acc_mean"] == s.loc["full", "acc_mean"] and math.isnan(
        s.loc["full", "best_val_acc_mean"]
    )
    assert "final-epoch test accuracy (no validation split: earlier protocol)" in render_markdown(rep)
