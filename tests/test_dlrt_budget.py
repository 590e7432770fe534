"""The (T)DLRT training-memory bound (``memory_budget``): caps that hold at every point of a step, never above
the dense layer, and steps that still equal the algorithm's literal step with the smaller caps."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from harness import Capture
from harness.models import create_model
from harness_methods.dlrt import DLRTLayer, DLRTMethod, TDLRTMethod
from harness_methods.dlrt.budget import augmentation_caps, training_parameters
from tests.test_tdlrt import SGD, matrix_dlrt_step, sq_loss


def _held(layer: DLRTLayer) -> int:
    """Parameters the layer holds right now: bases, core and bias."""
    bias = layer.bias.numel() if layer.bias is not None else 0
    return sum(u.numel() for u in layer.factors) + layer.core.numel() + bias


CASES = [
    # n, adaptive, r_min, r_max, tied
    ([50, 20, 5, 5], [True, True, False, False], [2, 2, 5, 5], [25, 10, 5, 5], False),
    ([128, 64, 3, 3], [True, True, False, False], [2, 2, 3, 3], [64, 32, 3, 3], False),
    ([16, 12, 3, 3], [True, True, True, True], [1, 1, 1, 1], [8, 6, 2, 2], False),
    ([500, 800], [True, True], [2, 2], [250, 250], True),
    ([10, 12], [True, True], [1, 1], [8, 8], True),
]


@pytest.mark.parametrize("n,adaptive,r_min,r_max,tied", CASES)
@pytest.mark.parametrize("budget", [1.0, 0.5])
def test_caps_hold_the_budget_leave_room_to_move_and_shrink_only_while_over_it(n, adaptive, r_min, r_max, tied, budget):
    dense = 1
    for s in n:
        dense *= s
    a, r = augmentation_caps(n, adaptive, r_min, r_max, dense, budget, tied=tied)
    floor = [min(2 * rn, nk) if ad else nk for rn, nk, ad in zip(r_min, n, adaptive, strict=True)]
    assert training_parameters(n, a, r, adaptive, 0) <= budget * dense or a == floor  # or it cannot be met
    for k in range(len(n)):
        if not adaptive[k]:
            assert a[k] == r[k] == n[k]
            continue
        assert r_min[k] <= r[k] <= min(r_max[k], a[k] // 2) and a[k] <= min(2 * r_max[k], n[k])
    if tied:
        assert r[0] == r[1]
    unbounded, _ = augmentation_caps(n, adaptive, r_min, r_max, 10**12, tied=tied)
    assert unbounded == [min(2 * rm, nk) if ad else nk for rm, nk, ad in zip(r_max, n, adaptive, strict=True)]
    if a != unbounded:  # shrunk only while over budget: one column back in some mode breaks it
        backs = []
        for k in range(len(n)):
            if a[k] < unbounded[k]:
                a2 = [x + 1 if (j == k or tied) and x < unbounded[j] else x for j, x in enumerate(a)]
                r2 = [
                    min(rm, max(x // 2, rn)) if ad else x
                    for x, rm, rn, ad in zip(a2, r_max, r_min, adaptive, strict=True)
                ]
                backs.append(training_parameters(n, a2, r2, adaptive, 0) > budget * dense)
        assert any(backs)


@pytest.mark.parametrize("method_cls", [DLRTMethod, TDLRTMethod])
@pytest.mark.parametrize(
    "model,kw",
    [
        ("lenet5", {}),
        ("vgg16", {"in_channels": 3, "image_size": 32}),
        ("resnet18", {"in_channels": 3, "image_size": 32}),
    ],
)
def test_with_the_default_budget_no_layer_of_a_built_in_model_trains_above_its_dense_size(method_cls, model, kw):
    assert method_cls().params.memory_budget == 1.0  # the default (issue 16): compression_train >= 0
    net = method_cls().prepare(create_model(model, **kw), torch.Generator().manual_seed(0))
    stats = [s for s in method_cls().layer_stats(net) if s.ranks is not None]
    assert stats
    for s in stats:
        assert s.train_params <= s.dense_params, s.name  # compression_train >= 0
        assert all(r <= a for r, a in zip(s.ranks, s.extra["a_max"], strict=True))
    unbounded = method_cls({"memory_budget": None}).prepare(create_model(model, **kw), torch.Generator().manual_seed(0))
    over = [s for s in method_cls().layer_stats(unbounded) if s.ranks is not None and s.train_params > s.dense_params]
    assert over or model != "lenet5"  # without the bound LeNet5 trains above its dense size (issue 16)


@pytest.mark.parametrize("method_cls", [DLRTMethod, TDLRTMethod])
def test_the_bound_holds_at_every_point_of_every_step(method_cls):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 24, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(24 * 6 * 6, 40), nn.ReLU(), nn.Linear(40, 4),
    )  # fmt: skip
    method = method_cls({"tau": 0.0, "memory_budget": 1.0, "layers": ["2", "5"], "r_min": 1})
    model = method.prepare(model, torch.Generator().manual_seed(0))
    opt = method.make_optimizer(model, SimpleNamespace(**{**vars(SGD), "lr": 0.05, "momentum": 0.9}))
    layers = method.tucker_layers(model)
    dense = {id(m): m.layer_stats("x").dense_params for m in layers}
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    grew = False
    for _ in range(4):
        x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)
        before = {id(m): m.ranks for m in layers}
        with Capture(layers) as cap:
            loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, cap.outputs)
        for layer, x_in, gout in zip(layers, cap.inputs, grads, strict=True):
            layer.basis_step(x_in, gout, 0.05, opt)
            assert _held(layer) <= dense[id(layer)]  # augmented bases and core
            assert all(r <= a for r, a in zip(layer.ranks, layer.a_max, strict=True))
            for k, (r0, r1) in enumerate(zip(before[id(layer)], layer.ranks, strict=True)):
                if layer.adaptive[k] and r0 < layer.n[k]:
                    assert r1 == min(2 * r0, layer.a_max[k]) > r0  # at the truncation cap the basis still moves
                    grew = True
        opt.step()
        method.truncate(layers, opt)
        for layer in layers:
            assert all(r <= c for r, c in zip(layer.ranks, layer.r_max, strict=True))
            assert layer.layer_stats("x").train_params <= dense[id(layer)]
            assert opt.state[layer.core]["momentum_buffer"].shape == layer.core.shape
    assert grew


def widen(u: torch.Tensor, k: torch.Tensor, m: int) -> torch.Tensor:
    """[U | the m - r leading left singular vectors of (I - U U^T) K]."""
    rest = k - u @ (u.T @ k)
    return torch.cat([u, torch.linalg.svd(rest)[0][:, : m - u.shape[1]]], 1)


def test_capped_d2_step_equals_the_literal_capped_matrix_dlrt_step():
    """With caps (augment to min(2r, a), truncate to at most r_cap) a step is plain matrix DLRT with those caps."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(7)
    n, m, r, lr, tau, a_cap, r_cap = 10, 12, 3, 0.2, 0.01, 5, 2
    target = torch.randn(n, 4, generator=g, dtype=torch.float64) @ torch.randn(4, m, generator=g, dtype=torch.float64)
    layer = DLRTLayer.from_module(
        nn.Linear(m, n, bias=False).double(), False, [r, r], [True, True], [1, 1], [r_cap, r_cap], "random", g,
        a_max=[a_cap, a_cap],
    )  # fmt: skip
    U, V = layer.factors[0].clone(), layer.factors[1].clone()
    S = layer.core.detach().clone()
    method = DLRTMethod({"tau": tau})
    model = nn.Sequential(layer)
    opt = method.make_optimizer(model, SimpleNamespace(**{**vars(SGD), "lr": lr}))
    x = torch.eye(m, dtype=torch.float64)
    seen = set()
    for _ in range(8):
        method.train_step(model, opt, (x, target.T), sq_loss)
        seen.add(min(2 * U.shape[1], a_cap))  # the augmented rank of this step
        U, S, V = matrix_dlrt_step(U, S, V, target, lr, tau, (a_cap, a_cap), r_cap, widen)
        k = S.shape[0]
        assert layer.ranks == [k, k]
        assert torch.allclose(layer.dense_weight().detach(), U @ S @ V.T, atol=1e-10)
    assert max(seen) == a_cap  # the cap binds, and bounds the augmented rank


def test_changed_defaults_keep_stored_runs_ids_and_read_back_as_they_ran():
    """memory_budget 1 and a 500-batch tau warm-up became the defaults after runs were stored without them
    (harness.config.changed_default): a stored run's identity does not name them, and it reads back unbounded and
    without a warm-up, as it ran; a run at the new defaults names them and so has an id of its own."""
    from harness.config import identity_dump, stored_settings
    from harness.suite import expand, parse_suite
    from harness.train import build
    from harness_methods.dlrt.method import DLRTParams
    from tests.conftest import tiny_suite

    p = TDLRTMethod().params
    assert p.memory_budget == 1.0 and p.tau_warmup == 500 and p.tau_warmup_epochs == 0
    now = identity_dump(p)
    assert now["memory_budget"] == 1.0 and now["tau_warmup"] == 500 and "tau_warmup_epochs" not in now
    pinned = identity_dump(TDLRTMethod({"memory_budget": None, "tau_warmup": 0}).params)
    assert "memory_budget" not in pinned and "tau_warmup" not in pinned
    back = stored_settings(DLRTParams, pinned)
    assert back.memory_budget is None and back.tau_warmup == 0
    assert stored_settings(DLRTParams, now) == p
    in_epochs = TDLRTMethod({"tau_warmup_epochs": 1}).params  # epochs replace the default in batches
    assert in_epochs.tau_warmup == 0 and "tau_warmup" not in identity_dump(in_epochs)
    with pytest.raises(ValueError, match="one of them"):
        TDLRTMethod({"tau_warmup": 100, "tau_warmup_epochs": 1})
    for bad in ({"memory_budget": 0}, {"memory_budget": -1.0}, {"tau_warmup_epochs": -1}):
        with pytest.raises(ValueError):
            TDLRTMethod(bad)
    entries = [{"name": "tdlrt", "params": {"memory_budget": None, "tau_warmup": 0}}, "tdlrt"]
    old, new = expand(parse_suite(tiny_suite(methods=entries)))
    assert old.id != new.id and "memory_budget" not in old.config["params"]
    for run, bounded in ((old, False), (new, True)):
        method, model, _ = build(run.config, torch.device("cpu"))
        conv2 = next(m for m in model.modules() if getattr(m, "structure", "") == "conv_tucker")
        assert (conv2.a_max[:2] != conv2.n[:2]) == bounded
        assert method.params.tau_warmup == (500 if bounded else 0)


def test_caps_of_a_layer_follow_its_method_parameters():
    for budget, r_max in itertools.product((1.0, 0.5), (0.5, 0.25)):
        ranks, adaptive, r_min, caps, a_max = TDLRTMethod({"memory_budget": budget, "r_max": r_max}).layer_config(
            nn.Conv2d(20, 50, 5)
        )
        assert ranks == caps and a_max[2:] == [5, 5] and adaptive == [True, True, False, False]
        assert training_parameters([50, 20, 5, 5], a_max, caps, adaptive, 50) <= budget * (25000 + 50)
