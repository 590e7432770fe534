"""Every asv benchmark imports and runs once (the first preset of each method, one workload)."""

from __future__ import annotations

import pytest

from benchmarks import bench_methods as bm


def first_presets() -> list[str]:
    seen, out = set(), []
    for spec in bm.method_presets():
        name = spec.split(":")[0]
        if name not in seen:
            seen.add(name)
            out.append(spec)
    return out


def test_every_registered_method_has_benchmarks():
    names = {s.split(":")[0] for s in bm.method_presets()}
    assert {"full"} <= names and names == set(bm.METHODS.names())


@pytest.mark.parametrize("spec", first_presets())
@pytest.mark.parametrize("workload", ["vgg_block", "linear", "lenet5"])
def test_train_step_and_inference_benchmarks_run(spec, workload):
    step = bm.TrainStep()
    step.setup(spec, workload)
    before = [p.detach().clone() for p in step.model.parameters() if p.requires_grad]
    step.time_train_step(spec, workload)
    step.peakmem_train_step(spec, workload)
    after = [p for p in step.model.parameters() if p.requires_grad]
    changed = len(before) != len(after) or any(
        a.shape != b.shape or not a.detach().equal(b) for a, b in zip(after, before, strict=True)
    )
    assert changed  # the step trained something
    inf = bm.Inference()
    inf.setup(spec, workload)
    inf.time_forward(spec, workload)


def test_quality_tracks_return_numbers():
    q = bm.Quality()
    assert 0.5 < q.track_accuracy("full:dense") <= 1.0
    assert q.track_compression("full:dense") == 0.0


@pytest.mark.parametrize("spec", bm.Truncation.params[0])
def test_truncation_benchmark_runs_and_truncates(spec):
    t = bm.Truncation()
    t.setup(spec)
    before = [list(layer.ranks) for layer in t.layers]
    t.time_truncate(spec)
    after = [list(layer.ranks) for layer in t.layers]
    pairs = [(a, b) for ra, rb in zip(after, before, strict=True) for a, b in zip(ra, rb, strict=True)]
    assert all(a <= b for a, b in pairs) and any(a < b for a, b in pairs)  # the augmented ranks came down


def test_truncation_benchmark_covers_rank_adaptive_methods():
    assert {s.split(":")[0] for s in bm.Truncation.params[0]} >= {"dlrt", "tdlrt"}
