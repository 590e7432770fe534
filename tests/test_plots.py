"""The report's figures: labels that do not overlap, layers named by their module paths, captions that describe
only what is drawn. Figures are read back from their SVG files, which keep their text as text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from harness.report import build_report, write_report
from harness.report.accuracy_plot import AccuracyFigure
from harness.report.annotate import Marker, PointLabel, overlap, place_labels
from harness.report.plots import layer_title
from harness.store import Store
from tests.test_report import SUITE, make_store, metrics, spec


def svg_texts(path: Path) -> list[str]:
    """The text elements of an SVG figure, unescaped."""
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text())
    return [t.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").strip() for t in texts]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Path:
    from tests.test_report import REFERENCES_YAML

    p = tmp_path_factory.mktemp("refs") / "refs.yaml"
    p.write_text(REFERENCES_YAML)
    return p


def figures(store: Store, out: Path, **kw) -> dict[str, tuple[str, list[str]]]:
    """Every figure of a report of ``store``: name -> (caption, texts drawn in its SVG)."""
    report = build_report(store, **kw)
    write_report(report, out, ["md"], plots=True)
    return {f.name: (f.caption, svg_texts(f.svg)) for f in report.figures}


# ------------------------------------------------------------------------------------------------------
# labels without overlaps


def test_crowded_point_labels_do_not_overlap_and_stay_inside_the_axes():
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    points = [(85 + (i % 4) * 0.6, 98 + (i // 4) * 0.1) for i in range(12)]  # a 4 x 3 cluster, like fixed-rank runs
    ax.plot(*zip(*points, strict=True), "o")
    ax.set_xlim(-10, 110)
    ax.set_ylim(90, 100)
    labels = [PointLabel(f"compression=0.{85 + i}", p) for i, p in enumerate(points)]
    place_labels(fig, ax, labels, [Marker(x, y) for x, y in points])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the text alone, not its leader line
    area = ax.get_window_extent(renderer)
    assert len(boxes) == 12
    assert all(overlap(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert all(overlap(b, area) == pytest.approx(b.width * b.height) for b in boxes)
    # and no label covers a point
    dots = [ax.transData.transform(p) for p in points]
    assert not any(b.x0 < x < b.x1 and b.y0 < y < b.y1 for b in boxes for x, y in dots)


# ------------------------------------------------------------------------------------------------------
# rank plots name layers by their module paths


def test_layer_title_names_the_module_path_kind_and_shape():
    assert layer_title("features.3", "conv", [64, 32, 3, 3]) == "features.3 (conv 32→64, 3×3)"
    assert layer_title("classifier.1", "linear", [10, 512]) == "classifier.1 (linear 512→10)"
    assert layer_title("blocks.0.mix", "other", None) == "blocks.0.mix (other)"


def _layer(name: str, kind: str, shape: list[int], ranks: list[int]) -> dict:
    return {
        "name": name,
        "kind": kind,
        "shape": shape,
        "dense_params": 1000,
        "params": 100,
        "train_params": 200,
        "ranks": ranks,
        "format": "tucker",
        "extra": {},
    }


def test_rank_plot_names_each_layer_by_its_stored_module_path(tmp_path):
    store = Store(tmp_path / "store")
    run = spec("dlrt", {"tau": 0.2})
    store.add_runs(SUITE, [run])
    assert store.claim(run.id)
    for epoch, (r_conv, r_fc) in enumerate([(12, 40), (9, 31), (7, 25)]):
        layers = [
            _layer("features.3", "conv", [64, 32, 3, 3], [r_conv, r_conv, 3, 3]),
            _layer("classifier.1", "linear", [10, 512], [r_fc]),
        ]
        row = {"epoch": epoch, "train_loss": 0.5, "test_acc": 0.9, "test_loss": 0.4, "seconds": 1.0, "lr": 0.05}
        store.add_epoch(run.id, {**row, "layers": layers})
    store.finish(run.id, "done", metrics(0.9, 0.8, {"features.3": [7, 7, 3, 3], "classifier.1": [25]}))
    drawn = figures(store, tmp_path / "out")
    (caption, texts), *_ = [v for k, v in drawn.items() if k.startswith("ranks_")]
    assert "features.3 (conv 32→64, 3×3)" in texts and "classifier.1 (linear 512→10)" in texts
    assert not [t for t in texts if t.startswith("layer ")]
    assert "module path" in caption and "band" not in caption  # one seed: no band is drawn


# ------------------------------------------------------------------------------------------------------
# captions describe only what is drawn


def test_accuracy_caption_says_what_the_figure_draws():
    bare = AccuracyFigure(reference="full").caption()
    assert "Dashed" not in bare and "Pareto" not in bare and "star" not in bare and "error bars" not in bare
    every = AccuracyFigure("full", 3, True, True, True, 2, True, True, True).caption()
    said = ("Dashed line", "band of its 95% confidence interval", "Pareto", "Hollow stars", "thin line")
    assert all(w in every for w in said)
    assert "vertical error bars: 95% confidence interval of the mean (Student t)" in every
    assert "horizontal error bars: one standard deviation of the compression" in every
    assert "(one run)" in AccuracyFigure("full", baseline_runs=1).caption()


ACC_ELEMENTS = {  # what an accuracy figure's caption says -> the legend text that shows it is drawn
    "Dashed line": "full baseline:",
    "Pareto front": "Pareto front (measured)",
    "Hollow stars": "quoted:",
}


def _check_accuracy_figure(caption: str, texts: list[str]) -> set[str]:
    said = set()
    for words, legend in ACC_ELEMENTS.items():
        drawn = any(t.startswith(legend) for t in texts)
        assert (words in caption) == drawn, (words, caption, texts)
        said |= {words} if drawn else set()
    return said


def test_captions_mention_the_pareto_front_and_quoted_stars_only_where_drawn(store, references, tmp_path):
    with_refs = figures(store, tmp_path / "all", references=[references])
    said = set()
    for name, (caption, texts) in with_refs.items():
        if name.startswith("acc_vs_compression"):
            said |= _check_accuracy_figure(caption, texts)
    assert said == set(ACC_ELEMENTS)  # every element is drawn somewhere, and said there

    # the dense runs alone, without references: one point on the front (no line), no stars
    dense = figures(store, tmp_path / "dense", where="method == 'full'")
    acc = [v for k, v in dense.items() if k.startswith("acc_vs_compression")]
    assert acc
    for caption, texts in acc:
        assert _check_accuracy_figure(caption, texts) <= {"Dashed line"}
        assert "Pareto" not in caption and "star" not in caption


def test_curve_captions_mention_a_band_only_where_runs_spread(store, tmp_path):
    one = figures(store, tmp_path / "one", where="method == 'full' and initialization == 'orthogonal'")
    caption, texts = next(v for k, v in one.items() if k.startswith("curves_"))
    assert "band" not in caption and not [t for t in texts if "band" in t]
    several = figures(store, tmp_path / "several", where="method == 'full' and budget == 'none'")
    caption, texts = next(v for k, v in several.items() if k.startswith("curves_"))
    assert "band of its 95% confidence interval" in caption and any("band: 95% t-interval" in t for t in texts)
