"""The fixed-rank factorized baselines: tucker, cp, tt and matrix (methods/fixed_rank/)."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from harness import METHODS, create_model, layer_report, parameter_summary
from harness.suite import SuiteError, expand, parse_suite
from harness.train import train_run
from harness_methods.fixed_rank import (
    CPMethod,
    MatrixConv2d,
    MatrixLinear,
    MatrixMethod,
    TensorConv2d,
    TensorLinear,
    TTMethod,
    TuckerMethod,
    balanced_tt,
    balanced_tucker,
)

METHOD_CLASSES = {"tucker": TuckerMethod, "cp": CPMethod, "tt": TTMethod, "matrix": MatrixMethod}
NAMES = list(METHOD_CLASSES)


def _suite(method: str, params: dict, init: str = "default", **over) -> dict:
    data = {
        "name": "factorized",
        "datasets": ["mnist_subset"],
        "models": ["lenet5"],
        "methods": [{"name": method, "params": params}],
        "initializations": [init],
        "seeds": [0],
        "training": {"epochs": 2, "batch_size": 64, "lr": 0.02},
        "budget": {"train_subset": 2000, "test_subset": 500},
        "device": "cpu",
    }
    data.update(over)
    return data


def _prod(xs) -> int:
    return math.prod(int(x) for x in xs)


def closed_form(fmt: str, kind: str, shape: list[int], ranks: list[int]) -> int:
    """Weight parameters of a factorized layer, written out independently of the implementation."""
    if fmt == "tucker":
        return sum(n * r for n, r in zip(shape, ranks, strict=True)) + _prod(ranks)
    if fmt == "cp":
        return ranks[0] * sum(shape)
    if fmt == "tt":
        n = [shape[1], shape[2], shape[3], shape[0]] if kind == "conv" else shape
        return sum(ranks[k] * n[k] * ranks[k + 1] for k in range(len(n)))
    if fmt == "matrix":
        return ranks[0] * (shape[0] + _prod(shape[1:]))
    raise AssertionError(fmt)


# -- registration ------------------------------------------------------------------------------------------
def test_methods_are_registered_through_entry_points():
    for name, cls in METHOD_CLASSES.items():
        assert METHODS.get(name) is cls
        assert cls.initializations[0] == "random"
        assert {"random", "decompose", "spectral"} <= set(cls.initializations)


# -- training LeNet5 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_lenet5_trains_well_above_chance(name):
    (run,) = expand(parse_suite(_suite(name, {"rank": 0.5})))
    metrics = train_run(run.config, device="cpu")
    assert metrics["final_acc"] > 0.5
    assert metrics["ranks"], "resolved ranks are stored with the run"
    assert 0.0 < metrics["compression"] < 1.0


@pytest.mark.parametrize(
    ("name", "init", "params"),
    [
        ("tucker", "decompose", {}),
        ("tt", "spectral", {}),
        ("matrix", "spectral", {}),
        ("cp", "spectral", {"decompose_iters": 5}),  # CP from a decomposed random kernel learns slowest
    ],
)
def test_lenet5_trains_from_decomposed_inits(name, init, params):
    (run,) = expand(
        parse_suite(_suite(name, {"rank": 0.5, **params}, init, training={"epochs": 3, "batch_size": 64, "lr": 0.02}))
    )
    assert run.config["initialization"] == init
    assert train_run(run.config, device="cpu")["final_acc"] > 0.5


def test_compression_param_trains_and_reports_ranks():
    (run,) = expand(parse_suite(_suite("tt", {"compression": 0.8})))
    assert run.config["params"]["rank"] is None and run.config["params"]["compression"] == 0.8
    metrics = train_run(run.config, device="cpu")
    assert metrics["final_acc"] > 0.5
    assert set(metrics["ranks"]) == {"3", "7"}
    assert metrics["ranks"]["3"][0] == 1 and metrics["ranks"]["3"][-1] == 1


# -- VGG16 forward/backward ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_vgg16_forward_backward_at_several_ranks(name):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (4,), generator=gen)
    for params in ({"rank": 0.1}, {"rank": 0.3, "implementation": "reconstructed"}, {"compression": 0.9}, {"rank": 16}):
        torch.manual_seed(0)
        model = create_model("vgg16")
        full = sum(p.numel() for p in model.parameters())
        method = METHOD_CLASSES[name](params, "random")
        model = method.prepare(model, torch.Generator().manual_seed(0))
        out = model(x)
        assert out.shape == (4, 10)
        nn.functional.cross_entropy(out, y).backward()
        stats = method.layer_stats(model)
        factorized = [s for s in stats if s.format == name]
        assert len(factorized) >= 12  # 12 of 13 convs (the first stays dense) and the hidden linear
        for p in model.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
        summary = parameter_summary(model, stats, full)
        assert 0.3 < summary["compression"] < 1.0


# -- parameter counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("params", [{"rank": 0.3}, {"rank": 8}, {"compression": 0.7}])
def test_parameter_count_matches_closed_form(name, params):
    if name == "tucker" and "compression" in params:
        params = {**params, "modes": "all"}
    torch.manual_seed(0)
    model = create_model("lenet5")
    full = sum(p.numel() for p in model.parameters())
    method = METHOD_CLASSES[name](params, "random")
    model = method.prepare(model, torch.Generator().manual_seed(0))
    stats = method.layer_stats(model)
    modules = dict(model.named_modules())
    factorized = [s for s in stats if s.format == name]
    assert factorized
    for s in factorized:
        module = modules[s.name]
        bias = s.shape[0]  # LeNet5's layers all have a bias
        assert s.params == sum(p.numel() for p in module.parameters()) == s.train_params
        assert s.params == closed_form(name, s.kind, s.shape, s.ranks) + bias
        assert s.dense_params == _prod(s.shape) + bias
        assert s.params < s.dense_params
        if "compression" in params:
            assert s.params <= (1 - params["compression"]) * s.dense_params
    # the stored compression follows from the counts
    other = sum(s.params for s in stats if s.format == "dense")
    expected = 1 - (other + sum(s.params for s in factorized)) / full
    assert parameter_summary(model, stats, full)["compression"] == pytest.approx(expected)
    assert sum(p.numel() for p in model.parameters()) == other + sum(s.params for s in factorized)


def test_compression_target_is_met_closely_per_layer():
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False)
    for name, cls in METHOD_CLASSES.items():
        for c in (0.5, 0.9):
            plan = cls({"compression": c}).plan_layer("conv", conv)
            kept = plan.params / plan.dense_params
            assert kept <= 1 - c, (name, c, plan)
            assert kept > (1 - c) * 0.85, (name, c, plan)  # largest ranks within the budget


def test_layers_without_saving_stay_dense_and_are_reported():
    model = create_model("lenet5")
    method = TuckerMethod({"rank": 0.5}, "random")  # fc 800->500 at ranks (250, 400) would grow
    model = method.prepare(model, torch.Generator().manual_seed(0))
    assert isinstance(model[7], nn.Linear)
    assert isinstance(model[3], TensorConv2d)
    by_name = {s.name: s for s in method.layer_stats(model)}
    assert by_name["7"].extra["skipped"] == "no parameter saving"
    assert by_name["7"].format == "dense" and by_name["7"].params == by_name["7"].dense_params
    assert by_name["3"].format == "tucker" and by_name["3"].ranks == [25, 10, 5, 5]


def test_layer_patterns_select_layers():
    model = create_model("lenet5")
    method = MatrixMethod({"rank": 4, "layers": ["7"]})
    model = method.prepare(model, torch.Generator().manual_seed(0))
    assert isinstance(model[7], MatrixLinear) and isinstance(model[3], nn.Conv2d)
    with pytest.raises(ValueError, match="match no conv/linear layer"):
        MatrixMethod({"layers": ["features.*"]}).prepare(create_model("lenet5"), torch.Generator())


# -- initializations -----------------------------------------------------------------------------------------
def _layers():
    torch.manual_seed(0)
    return [(nn.Conv2d(20, 50, 5), torch.randn(4, 20, 12, 12)), (nn.Linear(80, 50), torch.randn(16, 80))]


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", ["tucker", "tt", "matrix"])
@pytest.mark.parametrize("init", ["decompose", "spectral"])
@pytest.mark.parametrize("impl", ["factorized", "reconstructed"])
def test_decomposition_at_full_rank_reproduces_the_layer(name, init, impl):
    for extra in ({}, {"modes": "all"}) if name == "tucker" else ({},):
        method = METHOD_CLASSES[name]({"rank": 1.0, "implementation": impl, **extra}, init)
        for dense, x in _layers():
            layer = method.factorize(dense, seed=0)
            with torch.no_grad():
                assert _rel(layer(x), dense(x)) < 1e-4


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("init", ["decompose", "spectral"])
def test_decomposition_error_falls_as_rank_grows(name, init):
    for dense, x in _layers():
        errors = []
        for r in (0.1, 0.3, 0.6, 0.9):
            method = METHOD_CLASSES[name]({"rank": r, "decompose_iters": 5}, init)
            with torch.no_grad():
                errors.append(_rel(method.factorize(dense, seed=0)(x), dense(x)))
        assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
        assert errors[-1] < 0.95 * errors[0]


@pytest.mark.parametrize("name", NAMES)
def test_random_init_keeps_the_output_scale(name):
    torch.manual_seed(0)
    conv, x = nn.Conv2d(128, 128, 3, padding=1, bias=False), torch.randn(8, 128, 12, 12)
    lin, xl = nn.Linear(512, 256), torch.randn(64, 512)
    for dense, inp in ((conv, x), (lin, xl)):
        with torch.no_grad():
            ref = dense(inp).std()
            ratios = [
                float(METHOD_CLASSES[name]({"rank": 0.25}, "random").factorize(dense, seed)(inp).std() / ref)
                for seed in range(4)
            ]
        assert 0.6 < sum(ratios) / len(ratios) < 1.4, ratios


def test_random_init_is_reproducible_from_the_generator():
    def params(seed):
        torch.manual_seed(0)  # the dense model; the factors come from the generator alone
        model = create_model("lenet5")
        torch.manual_seed(seed + 100)
        model = CPMethod({"rank": 0.3}).prepare(model, torch.Generator().manual_seed(seed))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(params(3), params(3))
    assert not torch.equal(params(3), params(4))


def test_spectral_factors_are_balanced():
    torch.manual_seed(0)
    w = torch.randn(30, 40)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    # Tucker of a matrix: U S^1/2, identity core, V S^1/2 (Khodak et al.'s split)
    core, (a, b) = balanced_tucker(torch.diag(s), [u, vh.t()])
    assert torch.allclose(core, torch.eye(30), atol=1e-4)
    assert torch.allclose(a, u * s.sqrt(), atol=1e-5) and torch.allclose(b, vh.t() * s.sqrt(), atol=1e-5)
    # two-core tensor train: the same split, reconstruction unchanged
    g0, g1 = balanced_tt([u[None], (torch.diag(s) @ vh)[:, :, None]])
    assert torch.allclose(g0[0] @ g1[:, :, 0], w, atol=1e-4)
    assert torch.allclose(g0[0].norm(dim=0), g1[:, :, 0].norm(dim=1), atol=1e-4)
    # matrix method, spectral: equal factor norms per component
    layer = MatrixMethod({"rank": 1.0}, "spectral").factorize(nn.Linear(40, 30), seed=0)
    assert torch.allclose(layer.u.weight.norm(dim=0), layer.v.weight.norm(dim=1), atol=1e-4)


def test_layer_modules_report_their_format():
    conv, lin = nn.Conv2d(16, 32, 3, padding=1), nn.Linear(64, 32)
    for name, conv_cls, lin_cls in (
        ("tucker", TensorConv2d, TensorLinear),
        ("cp", TensorConv2d, TensorLinear),
        ("tt", TensorConv2d, TensorLinear),
        ("matrix", MatrixConv2d, MatrixLinear),
    ):
        method = METHOD_CLASSES[name]({"rank": 0.25})
        c, fc = method.factorize(conv, 0), method.factorize(lin, 0)
        assert isinstance(c, conv_cls) and isinstance(fc, lin_cls)
        model = nn.Sequential(c, nn.Flatten(), fc)
        stats = layer_report(model)
        assert [s.name for s in stats] == ["0", "2"]
        assert [s.kind for s in stats] == ["conv", "linear"] and {s.format for s in stats} == {name}
        assert stats[0].shape == [32, 16, 3, 3] and stats[0].dense_params == 32 * 16 * 9 + 32


# -- validation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("tucker", {"rank": 0.5, "compression": 0.9}, "either rank or compression"),
        ("cp", {"compression": 1.0}, "strictly between 0 and 1"),
        ("tt", {"compression": -0.1}, "strictly between 0 and 1"),
        ("matrix", {"rank": 1.5}, "fraction of full rank must lie in (0, 1]"),
        ("tucker", {"rank": 0}, "at least 1"),
        ("cp", {"rank": [4, 4]}, "single rank"),
        ("tucker", {"rank": [4, 4, 3, 3]}, "length 2"),
        ("tucker", {"rank": [4, 4], "modes": "all"}, "length 4"),
        ("tt", {"rank": [4, 4]}, "length 3"),
        ("matrix", {"rank": "half"}, "rank must be a fraction"),
        ("matrix", {"rank": True}, "rank must be a fraction"),
        ("cp", {"ranks": 4}, "Extra inputs"),
    ],
)
def test_impossible_params_are_validation_errors(name, params, message):
    with pytest.raises(ValidationError) as err:
        METHOD_CLASSES[name].Params.model_validate(params)
    assert message in str(err.value)


def test_defaults_are_resolved_and_round_trip():
    p = TuckerMethod.Params.model_validate({})
    assert p.rank == 0.5 and p.compression is None and p.implementation == "factorized"
    assert p.layers is None and p.modes == "channels"
    dumped = CPMethod.Params.model_validate({"compression": 0.9}).model_dump(mode="json")
    assert CPMethod.Params.model_validate(dumped).model_dump(mode="json") == dumped


def test_suite_reports_impossible_specs():
    with pytest.raises(SuiteError) as err:
        parse_suite(_suite("tucker", {"rank": [0.5], "compression": [0.5, 0.9]}))
    text = str(err.value)
    assert "methods[0].params" in text and "either rank or compression" in text
    with pytest.raises(SuiteError, match="strictly between 0 and 1"):
        parse_suite(_suite("cp", {"compression": 1.5}))
    with pytest.raises(SuiteError, match="unknown initialization|has no initialization"):
        parse_suite(_suite("tt", {}, "orthogonal"))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("tucker", {"rank": 32}, "layer '3' (conv weight (50, 20, 5, 5)): rank 32 exceeds in_channels = 20"),
        ("tucker", {"rank": 8, "modes": "all"}, "rank 8 exceeds kernel_h = 5"),
        ("matrix", {"rank": 600}, "rank 600 exceeds min(out_channels, in_channels*kh*kw) = 50"),
        ("cp", {"rank": 2000, "layers": ["7"]}, "layer '7' (linear weight (500, 800)): rank 2000 exceeds"),
        ("tt", {"rank": [20, 1, 20]}, "inconsistent"),
        ("cp", {"compression": 0.99999}, "compression 0.99999 is not reachable"),
    ],
)
def test_rank_above_a_dimension_fails_in_prepare(name, params, message):
    with pytest.raises(ValueError) as err:
        METHOD_CLASSES[name](params).prepare(create_model("lenet5"), torch.Generator())
    assert message in str(err.value)


def test_train_run_fails_before_training_on_an_impossible_rank():
    (run,) = expand(parse_suite(_suite("tucker", {"rank": 64})))
    with pytest.raises(ValueError, match="rank 64 exceeds out_channels = 50"):
        train_run(run.config, device="cpu")


def test_list_params_in_a_suite_are_lists_of_lists():
    runs = expand(parse_suite(_suite("tucker", {"rank": [[16, 8]], "layers": [["3"]]})))
    assert len(runs) == 1
    assert runs[0].config["params"]["rank"] == [16, 8] and runs[0].config["params"]["layers"] == ["3"]
    sweep = expand(parse_suite(_suite("tucker", {"rank": [16, 8]})))
    assert [r.config["params"]["rank"] for r in sweep] == [16, 8]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("init", ["decompose", "spectral"])
def test_vgg16_decomposed_inits(name, init):
    """Decomposing every VGG16 conv (CP: capped ALS) at compression 0.9, then one forward/backward."""
    torch.manual_seed(0)
    model = create_model("vgg16")
    method = METHOD_CLASSES[name]({"compression": 0.9, "decompose_iters": 1}, init)
    model = method.prepare(model, torch.Generator().manual_seed(0))
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert sum(s.format == name for s in method.layer_stats(model)) == 13
