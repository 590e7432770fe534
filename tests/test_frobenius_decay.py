"""Frobenius decay (Khodak et al., ICLR 2021): weight decay on the product of the factors, for the fixed-rank
formats (a penalty on ||W||_F^2, factors out of the suite's weight decay) and for DLRT/TDLRT (whose orthonormal
bases make ||W||_F = ||C||_F: weight decay of the cores)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness import METHODS
from harness.config import Training, identity_dump
from harness_methods.dlrt import DLRTMethod, TDLRTMethod

SGD = Training(lr=0.1, momentum=0.0, weight_decay=0.05)


def _rebuilt(layer) -> torch.Tensor:
    """The dense weight of a factorized layer, contracted here by einsum from its factors, in (out, in, ...) order."""
    if hasattr(layer, "u"):  # matrix: U V^T
        return (layer.u.weight.flatten(1) @ layer.v.weight.flatten(1)).reshape(layer.dense_shape)
    w = layer.weight
    letters = "abcd"[: len(w.factors)]
    if type(w).__name__ == "TuckerTensor":
        spec = f"{letters.upper()}," + ",".join(f"{x}{x.upper()}" for x in letters) + f"->{letters}"
        return torch.einsum(spec, w.core, *w.factors)
    if type(w).__name__ == "CPTensor":
        spec = "r," + ",".join(f"{x}r" for x in letters) + f"->{letters}"
        return torch.einsum(spec, w.weights, *w.factors)
    out = w.factors[0]  # tensor train: cores (1, n1, r1), (r1, n2, r2), ...; conv modes (in, kh, kw, out)
    for core in w.factors[1:]:
        out = torch.tensordot(out, core, dims=([out.dim() - 1], [0]))
    out = out.squeeze(0).squeeze(-1)
    return out.permute(3, 0, 1, 2) if out.dim() == 4 else out


@pytest.mark.parametrize("fmt", ["tucker", "cp", "tt", "matrix"])
@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_frobenius_norm_is_that_of_the_weight_the_layer_applies(fmt, kind):
    torch.manual_seed(0)
    dense = nn.Conv2d(4, 6, 3, padding=1) if kind == "conv" else nn.Linear(7, 5)
    layer = METHODS.get(fmt)({"rank": 0.5, "frobenius_decay": 1e-3}).factorize(dense, 0)
    w = _rebuilt(layer)
    bias = layer.u.bias if fmt == "matrix" else layer.bias
    x = torch.randn(2, 4, 5, 5) if kind == "conv" else torch.randn(3, 7)
    applied = F.conv2d(x, w, bias, padding=1) if kind == "conv" else F.linear(x, w, bias)
    assert torch.allclose(layer(x), applied, atol=1e-5)  # the rebuilt weight is the one the layer applies
    assert torch.allclose(layer.frobenius_sq(), w.square().sum(), rtol=1e-5)
    factors = layer.factor_parameters()
    assert {id(p) for p in factors} == {id(p) for p in layer.parameters()} - {id(bias)}


def test_the_penalty_gradient_of_u_v_is_khodaks():
    torch.manual_seed(1)
    method = METHODS.get("matrix")({"rank": 3, "frobenius_decay": 0.2, "layers": ["1"]})
    model = method.prepare(nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 5)), torch.Generator().manual_seed(0))
    layer = model[1]
    u, vt = layer.u.weight, layer.v.weight  # U (5, 3), V^T (3, 8)
    gu, gv = torch.autograd.grad(method.frobenius_penalty(model), [u, vt])
    # d/dU (lambda / 2) ||U V^T||^2 = lambda U V^T V; d/dV^T = lambda U^T U V^T
    assert torch.allclose(gu, 0.2 * u @ vt @ vt.T, atol=1e-6)
    assert torch.allclose(gv, 0.2 * u.T @ u @ vt, atol=1e-6)


def test_one_sgd_step_decays_the_product_and_leaves_the_factors_out_of_weight_decay():
    torch.manual_seed(2)
    method = METHODS.get("matrix")({"rank": 3, "frobenius_decay": 0.2, "layers": ["2"]})
    model = method.prepare(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5)), torch.Generator())
    model = model.double()
    opt = method.make_optimizer(model, SGD)
    layer = model[2]
    factors = [layer.u.weight, layer.v.weight]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert [id(p) for p in opt.param_groups[1]["params"]] == [id(p) for p in factors]
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data_grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    grads = dict(zip([n for n, _ in model.named_parameters()], data_grads, strict=True))
    loss = method.train_step(model, opt, (x, y), F.cross_entropy)
    assert torch.isclose(loss, F.cross_entropy(_forward(before, x), y))  # the data loss is what is recorded
    u, vt = before["2.u.weight"], before["2.v.weight"]
    assert torch.allclose(layer.u.weight, u - 0.1 * (grads["2.u.weight"] + 0.2 * u @ vt @ vt.T))
    assert torch.allclose(layer.v.weight, vt - 0.1 * (grads["2.v.weight"] + 0.2 * u.T @ u @ vt))
    for name in ("0.weight", "0.bias", "2.u.bias"):  # the rest: the suite's weight decay
        assert torch.allclose(
            dict(model.named_parameters())[name], before[name] - 0.1 * (grads[name] + 0.05 * before[name])
        )


def _forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    h = torch.tanh(F.linear(x, p["0.weight"], p["0.bias"]))
    return F.linear(F.linear(h, p["2.v.weight"]), p["2.u.weight"], p["2.u.bias"])


def test_without_frobenius_decay_nothing_changes():
    method = METHODS.get("tucker")({"rank": 0.5})
    model = method.prepare(nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 5)), torch.Generator())
    assert len(method.make_optimizer(model, SGD).param_groups) == 1
    assert "frobenius_decay" not in identity_dump(method.params)  # stored runs keep their ids
    assert "frobenius_decay" not in identity_dump(DLRTMethod.Params())


@pytest.mark.parametrize("cls", [DLRTMethod, TDLRTMethod])
def test_dlrt_frobenius_decay_is_weight_decay_of_the_cores_through_shape_changes(cls):
    method = cls({"frobenius_decay": 0.01, "tau": 0.2, "layers": ["2", "5"]})
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(12 * 6 * 6, 20), nn.ReLU(), nn.Linear(20, 4),
    ).double()  # fmt: skip
    model = method.prepare(model, torch.Generator().manual_seed(0))
    training = SimpleNamespace(**{**SGD.model_dump(), "momentum": 0.9, "weight_decay": 0.3})
    opt = method.make_optimizer(model, training)
    assert [(g["weight_decay"], g["momentum"]) for g in opt.param_groups] == [(0.3, 0.9), (0.01, 0.9)]
    layers = method.tucker_layers(model)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
        method.train_step(model, opt, (x, torch.randint(0, 4, (6,), generator=g)), nn.CrossEntropyLoss())
        assert [id(c) for c in opt.param_groups[1]["params"]] == [id(m.core) for m in layers]
        for layer in layers:  # orthonormal bases: the decay of the core is the decay of W
            assert torch.isclose(layer.dense_weight().norm(), layer.core.norm(), rtol=1e-10)
