"""Every asv benchmark imports and runs once (the first preset of each method, one workload)."""

from __future__ import annotations

import pytest

from benchmarks import bench_methods as bm
from harness.suite import expand, load_suite


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


def test_gpu_epoch_quick_mode_runs_on_the_cpu_and_projects_the_cifar10_suite(capsys):
    """benchmarks/gpu_epoch.py in its CPU check mode (fp32 and bf16, one batch of 4): the dense model, a
    fixed-rank method and TDLRT (whose own step the hand loop calls), and the projection counted literally."""
    from benchmarks import gpu_epoch

    methods = ("full", "tucker", "tdlrt")
    rows = gpu_epoch.main(["--quick", "--models", "resnet18", "--methods", ",".join(methods)])
    assert [(r.model, r.method, r.precision) for r in rows] == [
        ("resnet18", m, p) for m in methods for p in ("fp32", "bf16")
    ]
    assert all(r.harness > 0 and r.hand > 0 and r.ratio == r.harness / r.hand and r.images == 4 for r in rows)
    out = capsys.readouterr().out
    assert "resnet18  tdlrt    bf16" in out and "suites/cifar10.yaml in bf16:" in out
    # of suites/cifar10.yaml's runs, ResNet18's: full in both grids (2 x 3 seeds), Tucker and TDLRT at three
    # settings each (3 x 3 seeds); every run 60 epochs of 45,000 training images (its validation split, the
    # default 10%, held out) and 5,000 validation + 10,000 test images evaluated
    hours, counted, total = gpu_epoch.projected_hours(rows, "bf16")
    assert (counted, total) == (24, len(expand(load_suite(gpu_epoch.CIFAR10_SUITE))))
    per_run = {r.method: 60 * (45_000 * r.harness / 4 + 15_000 * r.eval_seconds_per_image) for r in rows[1::2]}
    assert hours * 3600 == pytest.approx(6 * per_run["full"] + 9 * per_run["tucker"] + 9 * per_run["tdlrt"])


def test_gpu_epoch_refuses_fp16_on_a_cpu():
    from benchmarks import gpu_epoch

    with pytest.raises(SystemExit, match="fp16 needs a CUDA device"):
        gpu_epoch.main(["--quick", "--precisions", "fp16"])
