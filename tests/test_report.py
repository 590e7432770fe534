"""The report: aggregation on a hand-made store, every output format, the CLI, and the HTML page in a real
headless browser."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import RunSpec, run_id
from harness.report import (
    NoFinishedRuns,
    ReportError,
    build_report,
    load_references,
    parse_formats,
    render_markdown,
    summarize_ranks,
    write_report,
)
from harness.store import Store

SUITE = "hand"
TRAINING = {"epochs": 3, "batch_size": 64, "lr": 0.05}
NO_BUDGET = {"train_subset": None, "test_subset": None, "epochs": None}
BUDGET = {"train_subset": 1000, "test_subset": 500, "epochs": None}
FULL_PARAMS = 431_080


def spec(
    method: str, params: dict | None = None, init: str = "pytorch", seed: int = 0, budget: dict | None = None
) -> RunSpec:
    config = {
        "dataset": "mnist_subset",
        "model": "lenet5",
        "method": method,
        "params": params or {},
        "initialization": init,
        "seed": seed,
        "training": TRAINING,
        "budget": budget or NO_BUDGET,
    }
    return RunSpec(run_id(config), config)


def metrics(
    acc: float, compression: float = 0.0, ranks: dict | None = None, seconds: float = 1.0, memory: float = 100.0
) -> dict:
    params = round(FULL_PARAMS * (1 - compression))
    return {
        "final_acc": acc,
        "best_acc": acc + 0.005,
        "final_train_loss": 0.1,
        "final_test_loss": 0.2,
        "epoch_seconds": seconds,
        "train_seconds": 3 * seconds,
        "epochs": 3,
        "flops": 4_586_000,
        "peak_memory_mb": memory,
        "device": "cpu",
        "train_size": 1000,
        "test_size": 500,
        "ranks": ranks or {},
        "params_inference": params,
        "params_train": params,
        "params_full": FULL_PARAMS,
        "compression": compression,
        "compression_train": compression,
        "compression_conv": compression,
        "compression_conv_train": compression,
    }


def layers(ranks: dict[str, list[int]] | None) -> list[dict]:
    names = ["0", "3", "7", "9"]
    out = []
    for name in names:
        r = (ranks or {}).get(name)
        out.append(
            {
                "name": name,
                "kind": "conv" if name in "03" else "linear",
                "shape": [20, 1, 5, 5],
                "dense_params": 520,
                "params": 520,
                "train_params": 520,
                "ranks": r,
                "format": "tucker" if r else "dense",
                "extra": {},
            }
        )
    return out


def finish(
    store: Store,
    s: RunSpec,
    acc: float,
    compression: float = 0.0,
    ranks: dict | None = None,
    epoch_ranks: list[dict] | None = None,
    **kw,
) -> None:
    assert store.claim(s.id)
    for e in range(3):
        er = epoch_ranks[e] if epoch_ranks else ranks
        store.add_epoch(
            s.id,
            {
                "epoch": e,
                "train_loss": 1.0 / (e + 1) + acc / 10,
                "test_acc": acc - 0.02 * (2 - e),
                "test_loss": 0.5 / (e + 1),
                "seconds": 1.0,
                "lr": 0.05,
                "layers": layers(er),
            },
        )
    store.finish(s.id, "done", metrics(acc, compression, ranks, **kw))


# The hand-made grid: expected numbers are worked out in the comments.
FULL = [spec("full", seed=i) for i in range(3)]  # 90, 92, 94 -> 92.0 ± 2.0
FULL_ORTHO = spec("full", init="orthogonal")  # 96 -> 96.0, no std (n=1)
SVD8 = [spec("svd", {"rank": 8}, init="svd", seed=i) for i in range(4)]  # 85, 87 done; 3rd failed; 4th pending
SVD16 = spec("svd", {"rank": 16}, init="svd")  # 89, running forever (a second one) below
SVD16_RUNNING = spec("svd", {"rank": 16}, init="svd", seed=1)
DLRT = [spec("dlrt", {"tau": 0.1}, seed=i) for i in range(2)]  # 91, 93 -> 92.0, compression 60/70 -> 65
FULL_B = spec("full", budget=BUDGET)  # budget baseline 80
SVD8_B = spec("svd", {"rank": 8}, init="svd", budget=BUDGET)  # 70 -> delta -10 against the budget baseline
ALL = [*FULL, FULL_ORTHO, *SVD8, SVD16, SVD16_RUNNING, *DLRT, FULL_B, SVD8_B]


def make_store(directory: Path) -> Store:
    store = Store(directory)
    store.add_runs(SUITE, ALL)
    for s, acc in zip(FULL, (0.90, 0.92, 0.94), strict=True):
        finish(store, s, acc, seconds=2.0, memory=150.0)
    finish(store, FULL_ORTHO, 0.96, seconds=2.0, memory=150.0)
    for s, acc in zip(SVD8[:2], (0.85, 0.87), strict=True):
        finish(store, s, acc, 0.5, ranks={"3": [8], "7": [8]})
    assert store.claim(SVD8[2].id)
    # a failed run with (wrong) metrics: they must not be averaged in
    store.finish(SVD8[2].id, "failed", metrics(0.10, 0.5), error="RuntimeError: boom\n\nTraceback ...")
    finish(store, SVD16, 0.89, 0.3, ranks={"3": [16], "7": [16]})
    assert store.claim(SVD16_RUNNING.id)
    dlrt_epochs = [
        [{"3": [20, 20], "7": [30]}, {"3": [14, 16], "7": [24]}, {"3": [10, 12], "7": [20]}],
        [{"3": [20, 20], "7": [30]}, {"3": [15, 16], "7": [22]}, {"3": [11, 12], "7": [20]}],
    ]
    for s, acc, comp, er in zip(DLRT, (0.91, 0.93), (0.6, 0.7), dlrt_epochs, strict=True):
        finish(store, s, acc, comp, ranks=er[-1], epoch_ranks=er)
    finish(store, FULL_B, 0.80)
    finish(store, SVD8_B, 0.70, 0.5, ranks={"3": [8], "7": [8]})
    return store


REFERENCES_YAML = """\
references:
  - dataset: mnist_subset
    model: lenet5
    method: svd
    params: {rank: 8}
    setting: "rank 8"
    acc_mean: 88.5
    acc_std: 0.5
    compression: 55
    citation: "Doe et al., ICML 2023"
    note: "Table 2"
  - dataset: mnist_subset
    model: lenet5
    method: ttnet
    acc_mean: 90.0
    citation: "Roe et al., 2021"
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("refs") / "refs.yaml"
    p.write_text(REFERENCES_YAML)
    return p


@pytest.fixture(scope="module")
def written(store, references, tmp_path_factory):
    """The report of the hand-made store in every format, with plots (made once for several tests)."""
    out = tmp_path_factory.mktemp("report")
    rep = build_report(store, references=[references])
    paths = write_report(rep, out, parse_formats("all"), plots=True)
    return rep, out, paths


def row(
    summary: pd.DataFrame, method: str, params: str = "", init: str | None = None, budget: str = "none"
) -> pd.Series:
    m = (summary["method"] == method) & (summary["params"] == params) & (summary["budget"] == budget)
    if init is not None:
        m &= summary["initialization"] == init
    hit = summary[m]
    assert len(hit) == 1, hit
    return hit.iloc[0]


# ------------------------------------------------------------------------------------------------------
# aggregation


def test_aggregation_means_std_n_and_delta(store):
    rep = build_report(store)
    s = rep.summary
    assert len(s) == 7  # full/pytorch, full/orthogonal, svd8, svd16, dlrt, budget full, budget svd8
    assert rep.counts == {"done": 11, "failed": 1, "pending": 1, "running": 1}

    full = row(s, "full", init="pytorch")
    assert full["n"] == 3
    assert full["acc_mean"] == pytest.approx(92.0)
    assert full["acc_std"] == pytest.approx(2.0)  # sample std of 90, 92, 94
    assert full["delta_acc"] == pytest.approx(0.0)
    assert full["params_inference"] == FULL_PARAMS and full["compression"] == pytest.approx(0.0)
    assert full["epoch_seconds"] == pytest.approx(2.0) and full["peak_memory_mb"] == pytest.approx(150.0)
    assert full["flops"] == 4_586_000

    ortho = row(s, "full", init="orthogonal")
    assert ortho["n"] == 1 and ortho["acc_mean"] == pytest.approx(96.0) and math.isnan(ortho["acc_std"])

    # svd has its own initialization, which full lacks: the reference is every full run (90, 92, 94, 96)
    svd8 = row(s, "svd", "rank=8")
    assert svd8["n"] == 2 and svd8["failed"] == 1 and svd8["unfinished"] == 1
    assert svd8["acc_mean"] == pytest.approx(86.0)  # the failed run's 10% is not averaged in
    assert svd8["acc_std"] == pytest.approx(math.sqrt(2))
    assert svd8["ref_acc"] == pytest.approx(93.0)
    assert svd8["delta_acc"] == pytest.approx(-7.0)
    assert svd8["compression"] == pytest.approx(50.0)
    assert svd8["ranks"] == "3: 8; 7: 8"

    svd16 = row(s, "svd", "rank=16")
    assert svd16["n"] == 1 and svd16["unfinished"] == 1 and svd16["delta_acc"] == pytest.approx(-4.0)

    # dlrt uses the pytorch initialization, which full has: its reference is full/pytorch (92); it ran with
    # one setting, so no parameter distinguishes its runs and none is shown
    dlrt = row(s, "dlrt", "")
    assert dlrt["params_json"] == json.dumps({"tau": 0.1})
    assert dlrt["acc_mean"] == pytest.approx(92.0) and dlrt["delta_acc"] == pytest.approx(0.0)
    assert dlrt["compression"] == pytest.approx(65.0)
    assert dlrt["ranks"] == "3: 10.5×12; 7: 20"  # differing seeds print their mean

    # budget runs are compared with the budget baseline only
    budget = "train_subset=1000, test_subset=500"
    assert row(s, "full", budget=budget)["acc_mean"] == pytest.approx(80.0)
    svd_b = row(s, "svd", "rank=8", budget=budget)
    assert svd_b["ref_acc"] == pytest.approx(80.0) and svd_b["delta_acc"] == pytest.approx(-10.0)

    # failed and unfinished runs are listed apart
    nd = rep.not_done.set_index("label")
    assert set(nd["status"]) == {"failed", "pending", "running"} and len(nd) == 3
    assert nd.loc[SVD8[2].label, "error"] == "RuntimeError: boom"

    # the full baseline rows come first in each (dataset, model, budget) block
    assert list(s["method"][:2]) == ["full", "full"] and s["budget"].iloc[-1] == budget
    assert "budget" in rep.columns and "failed" in rep.columns and "unfinished" in rep.columns


def test_where_keeps_the_baseline_and_sort_and_columns(store):
    rep = build_report(
        store, where="method == 'svd' and `param.rank` == 8", sort="-acc_mean", columns="method,budget,acc,delta_acc"
    )
    s = rep.summary
    assert list(s["method"]) == ["svd", "svd"]
    assert list(s["acc_mean"]) == pytest.approx([86.0, 70.0])  # sorted descending
    assert list(s["delta_acc"]) == pytest.approx([-7.0, -10.0])  # baseline still from the full runs
    assert rep.columns == ["method", "budget", "acc", "delta_acc"]
    acc = ["acc_mean", "acc_std", "acc_ci95", "acc_ci_low", "acc_ci_high"]  # the acc column: mean, spread and CI
    assert rep.csv_columns == ["method", "budget", *acc, "delta_acc"]
    assert rep.counts["failed"] == 1 and rep.counts["pending"] == 1


@pytest.mark.parametrize("where", ["method ==", "no_such_column > 1", "method"])
def test_bad_where_is_a_report_error(store, where):
    with pytest.raises(ReportError, match="--where"):
        build_report(store, where=where)


def test_bad_columns_and_sort(store):
    with pytest.raises(ReportError, match="unknown column.*'nope'"):
        build_report(store, columns="method,nope")
    with pytest.raises(ReportError, match="--sort: no column 'nope'"):
        build_report(store, sort="nope")
    with pytest.raises(ReportError, match="--format"):
        parse_formats("pdf")


def test_where_without_finished_runs(store):
    with pytest.raises(NoFinishedRuns, match="no finished runs"):
        build_report(store, where="status != 'done'")


def test_summarize_ranks():
    assert summarize_ranks([json.dumps({"a": [4, 5]}), json.dumps({"a": [4, 7]})]) == "a: 4×6.0"
    assert summarize_ranks(["{}", None]) == ""


# ------------------------------------------------------------------------------------------------------
# references


def test_references_beside_measured(store, references):
    rep = build_report(store, references=[references])
    c = rep.comparison
    svd = c[c["method"] == "svd"]
    assert len(svd) == 2  # matches the unbudgeted and the budget rank-8 rows
    unbudgeted = svd[~svd["measured"].str.contains("budget")].iloc[0]
    assert unbudgeted["quoted_acc_mean"] == 88.5 and unbudgeted["acc_mean"] == pytest.approx(86.0)
    assert unbudgeted["diff_acc"] == pytest.approx(-2.5)
    tt = c[c["method"] == "ttnet"].iloc[0]
    assert tt["measured"] == "(no measured run)" and math.isnan(tt["diff_acc"])
    md = render_markdown(rep)
    assert "Published results (quoted, not measured here)" in md and "Doe et al., ICML 2023 — Table 2" in md
    assert "−2.50" in md


def test_references_csv_and_validation(tmp_path, store):
    csv = tmp_path / "refs.csv"
    csv.write_text(
        "dataset,model,method,params,acc_mean,acc_std,compression,citation,note\n"
        'mnist_subset,lenet5,dlrt,"{""tau"": 0.1}",93.5,,70,"Smith 2022",Table 1\n'
    )
    refs = load_references(csv)
    assert refs.loc[0, "setting"] == "tau=0.1" and refs.loc[0, "acc_mean"] == 93.5
    rep = build_report(store, references=[csv])
    assert rep.comparison.loc[0, "diff_acc"] == pytest.approx(-1.5)

    bad = tmp_path / "bad.yaml"
    bad.write_text("- {dataset: mnist, model: lenet5, method: x, acc_mean: 140}\n")
    with pytest.raises(ReportError, match=r"row 1 acc_mean.*\n.*row 1 citation"):
        load_references(bad)
    with pytest.raises(ReportError, match="not found"):
        load_references(tmp_path / "missing.yaml")

    # a source may quote a compression only; one that quotes neither is refused
    only = tmp_path / "only.yaml"
    only.write_text("- {dataset: mnist_subset, model: lenet5, method: dlrt, compression: 95.3, citation: X}\n")
    c = build_report(store, references=[only]).comparison
    assert c.loc[0, "quoted_compression"] == 95.3 and c.loc[0, "n"] > 0 and pd.isna(c.loc[0, "diff_acc"])
    only.write_text("- {dataset: mnist_subset, model: lenet5, method: dlrt, citation: X}\n")
    with pytest.raises(ReportError, match="acc_mean.*compression"):
        load_references(only)


# ------------------------------------------------------------------------------------------------------
# outputs


def test_every_format_is_written_and_parses(written):
    rep, out, paths = written
    names = {p.name for p in paths}
    assert {"report.md", "summary.csv", "not_done.csv", "quoted.csv", "report.tex", "report.html"} <= names

    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 7 and {"acc_mean", "acc_std", "delta_acc", "n", "compression"} <= set(summary.columns)
    svd8 = summary[(summary["method"] == "svd") & (summary["params"] == "rank=8") & (summary["budget"] == "none")]
    assert svd8["acc_mean"].item() == pytest.approx(86.0) and svd8["failed"].item() == 1
    not_done = pd.read_csv(out / "not_done.csv")
    assert sorted(not_done["status"]) == ["failed", "pending", "running"]
    assert len(pd.read_csv(out / "quoted.csv")) == 3

    tex = (out / "report.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 3 and tex.count(r"\end{tabular}") == 3
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == 3
    assert r"mnist\_subset" in tex and r"$\pm$" in tex and r"$\Delta$" in tex

    md = (out / "report.md").read_text()
    assert "| dataset | model | budget | method |" in md and "−7.00" in md
    # svd rank 8 (85, 87): the results table gives mean ± the 95% t half-width t_{0.975,1}·√2/√2 = 12.71, the
    # table of quoted numbers mean ± std, as the sources quote theirs
    assert "| 86.00 ± 12.71 |" in md and "| 86.00 ± 1.41 |" in md
    assert "## Failed and unfinished runs" in md and "RuntimeError: boom" in md

    page = (out / "report.html").read_text()
    pngs = sorted(p for p in paths if p.suffix == ".png")
    assert page.count('src="data:image/png;base64,') == len(pngs) >= 5
    assert "<table" in page and 'src="http' not in page and 'href="http' not in page


def test_plots_are_real_images(written):
    from matplotlib.image import imread

    rep, out, paths = written
    pngs = {p.name: p for p in paths if p.suffix == ".png"}
    kinds = {n.split("_")[0] for n in pngs}
    assert {"acc", "ranks", "curves", "init"} <= kinds
    assert [n for n in pngs if n.startswith("ranks_")] == ["ranks_mnist_subset-lenet5-dlrt.png"]  # only dlrt moves
    assert len([n for n in pngs if n.startswith("acc_vs_compression")]) == 2  # unbudgeted and budget
    for p in pngs.values():
        assert p.stat().st_size > 20_000, p
        img = imread(p)
        assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] > 600 and img.std() > 0.01, p
        svg = p.with_suffix(".svg")
        assert svg.is_file() and "<svg" in svg.read_text()[:2000]


def test_no_rank_plot_note_without_moving_ranks(store, tmp_path):
    rep = build_report(store, where="method != 'dlrt'")
    write_report(rep, tmp_path, ["md"], plots=True)
    assert not list(tmp_path.glob("plots/ranks_*"))
    assert any("No method changed a layer's rank" in n for n in rep.notes)
    assert "No method changed a layer's rank" in (tmp_path / "report.md").read_text()


# ------------------------------------------------------------------------------------------------------
# command line


def test_cli_report_default_markdown(store, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["report", str(store.dir), "--out", str(out), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "| dataset | model | budget |" in res.output and "Δ acc vs full (pp)" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]


def test_cli_report_default_out_is_beside_the_store(tmp_path):
    store = Store(tmp_path / "res")
    store.add_runs(SUITE, FULL[:1])
    finish(store, FULL[0], 0.9)
    res = CliRunner().invoke(app, ["report", str(store.dir), "--format", "csv,latex", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in (store.dir / "report").iterdir()} == {"summary.csv", "not_done.csv", "report.tex"}


def test_cli_suite_file_uses_its_references(store, tmp_path, references):
    shutil.copy(references, tmp_path / "published.yaml")
    suite = tmp_path / "hand.yaml"
    suite.write_text(
        f"name: {SUITE}\ndatasets: [mnist_subset]\nmodels: [lenet5]\nmethods: [full]\nreferences: published.yaml\n"
    )
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["report", str(suite), "--results", str(store.dir), "--out", str(out), "--format", "csv", "--no-plots"]
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out / "quoted.csv")) == 3


def test_cli_bad_where_exits_2(store, tmp_path):
    res = CliRunner().invoke(
        app, ["report", str(store.dir), "--out", str(tmp_path), "--where", "method ==", "--no-plots"]
    )
    assert res.exit_code == 2
    assert "--where 'method ==' is not a valid query" in res.output and "Traceback" not in res.output


def test_cli_no_finished_runs(tmp_path):
    store = Store(tmp_path / "res")
    store.add_runs(SUITE, [FULL[0], FULL[1]])
    assert store.claim(FULL[0].id)
    store.finish(FULL[0].id, "failed", error="DivergedError: training loss became NaN")
    res = CliRunner().invoke(app, ["report", str(store.dir)])
    assert res.exit_code == 1
    assert "no finished runs to report" in res.output
    assert "0 done, 1 failed, 1 pending" in res.output and "DivergedError" in res.output
    assert "Traceback" not in res.output and not (store.dir / "report").exists()


def test_cli_missing_store(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no results store" in res.output


# ------------------------------------------------------------------------------------------------------
# the HTML page in a real headless browser

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def test_html_renders_in_headless_chromium(written, tmp_path):
    if not CHROMIUM.exists() and not os.environ.get("CI"):
        pytest.skip("no /usr/bin/chromium (apt-get install chromium chromium-driver); required in CI")
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "CI must install chromium and chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    rep, out, paths = written
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(60)
        driver.get((out / "report.html").resolve().as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        assert driver.title == rep.title
        tables = driver.execute_script(
            "return Array.from(document.querySelectorAll('table')).map(t => t.className + ':' + "
            "t.querySelectorAll('tbody tr').length)"
        )
        assert tables == ["results:7", "quoted:3", "not-done:3"]
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        assert len(images) == len([p for p in paths if p.suffix == ".png"])
        assert all(done and w > 400 and h > 300 for done, w, h in images), images
        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_group_title_names_the_budget_and_training_once():
    from harness.report.figures import group_title

    keys = ["dataset", "model", "budget", "training.epochs", "training.lr"]
    title = group_title(keys, ("fmnist32", "vgg16", "train_subset=10000, epochs=5", 5, 0.02))
    assert title == "fmnist32 / vgg16 (budget: train_subset=10000, epochs=5; lr=0.02)"
    assert group_title(keys, ("mnist", "lenet5", "none", 20, 0.05)) == "mnist / lenet5 (epochs=20; lr=0.05)"


# ------------------------------------------------------------------------------------------------------
# the reference method, labels from the stored configurations, the HTML template


def test_another_reference_method(store, tmp_path):
    rep = build_report(store, reference="dlrt")
    s = rep.summary
    assert rep.reference == "dlrt" and list(s["method"][:1]) == ["dlrt"]  # the reference first in its block
    full = row(s, "full", init="pytorch")
    assert full["ref_acc"] == pytest.approx(92.0) and full["ref"] == "dlrt / pytorch (n=2)"
    svd8 = row(s, "svd", "rank=8")  # dlrt has no svd initialization: all its runs
    assert svd8["ref"] == "dlrt, all initializations (n=2)" and svd8["delta_acc"] == pytest.approx(-6.0)
    # dlrt has no budget runs: those rows have no reference, and a note says so
    assert math.isnan(row(s, "svd", "rank=8", budget="train_subset=1000, test_subset=500")["delta_acc"])
    assert any(n.startswith("No finished dlrt baseline") for n in rep.notes)
    md = render_markdown(rep)
    assert "Δ acc vs dlrt (pp)" in md and "`dlrt` baseline" in md and "vs full" not in md
    write_report(rep, tmp_path, ["html", "latex"], plots=False)
    assert "Δ acc vs dlrt (pp)" in (tmp_path / "report.html").read_text()
    assert "the dlrt baseline" in (tmp_path / "report.tex").read_text()


def test_unknown_reference_method_is_a_report_error(store):
    with pytest.raises(ReportError, match=r"--reference: no run of method 'dlrtt' \(did you mean 'dlrt'\?\)"):
        build_report(store, reference="dlrtt")


def test_labels_come_from_the_stored_configurations(store):
    from harness.config import distinguishing_params, setting_label

    rep = build_report(store)
    runs = rep.runs
    keys = distinguishing_params(list(runs["method"]), list(runs["params"]))
    assert keys == {"full": [], "svd": ["rank"], "dlrt": []}
    expected = [setting_label(m, p, keys[m]) for m, p in zip(runs["method"], runs["params"], strict=True)]
    assert list(runs["method_label"]) == expected
    assert set(runs["setting"]) == {"full / pytorch", "full / orthogonal", "svd[rank=8]", "svd[rank=16]", "dlrt"}
    # the per-epoch rows the plots draw carry the same labels
    assert set(rep.epochs["setting"]) <= set(runs["setting"])
    assert set(rep.epochs["method_label"]) <= set(runs["method_label"])


def test_html_comes_from_the_template_with_the_css_file(store, tmp_path):
    from importlib.resources import files

    rep = build_report(store, title="<b>a & b</b>")
    write_report(rep, tmp_path, ["html"], plots=False)
    page = (tmp_path / "report.html").read_text()
    css = (files("harness.report") / "templates" / "report.css").read_text()
    assert css.strip() in page
    assert "<title>&lt;b&gt;a &amp; b&lt;/b&gt;</title>" in page and "<b>a & b</b>" not in page
    assert page.count("<table") == 2 and '<table class="not-done">' in page  # no references given
    assert "RuntimeError: boom" in page and '<td class="num">' in page
