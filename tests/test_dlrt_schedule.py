"""The ``periodic`` (T)DLRT schedule: a full step (basis step, core step, truncation) every k batches, and between
refreshes steps that are exactly fixed-rank Tucker steps with frozen bases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness_methods.dlrt import DLRTMethod, TDLRTMethod, multi_mode_mul
from tests.test_tdlrt import SGD


def _model(method):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(12 * 6 * 6, 20), nn.ReLU(), nn.Linear(20, 4),
    ).double()  # fmt: skip
    model = method.prepare(model, torch.Generator().manual_seed(0))
    opt = method.make_optimizer(model, SimpleNamespace(**{**vars(SGD), "lr": 0.05, "momentum": 0.9}))
    return model, opt


def _reference_forward(model: nn.Module, x: torch.Tensor, cores: dict[int, torch.Tensor]) -> torch.Tensor:
    """The model as a fixed-rank Tucker network: each factorized layer's weight rebuilt from ``cores`` (leaves)
    and its bases (constants), the dense layers as they are."""
    for i, m in enumerate(model):
        if i in cores:
            w = multi_mode_mul(cores[i], {k: u.detach() for k, u in enumerate(m.factors)}).reshape(m.dense_shape)
            x = F.conv2d(x, w, m.bias, m.stride, m.padding) if w.dim() == 4 else F.linear(x, w, m.bias)
        else:
            x = m(x)
    return x


@pytest.mark.parametrize("method_cls", [DLRTMethod, TDLRTMethod])
def test_periodic_steps_between_refreshes_are_fixed_rank_steps_with_frozen_bases(method_cls):
    method = method_cls({"schedule": "periodic", "amortize_steps": 3, "tau": 0.1, "layers": ["2", "5"]})
    model, opt = _model(method)
    layers = {i: m for i, m in enumerate(model) if hasattr(m, "core")}
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(3)
    for step in range(7):
        x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
        y = torch.randint(0, 4, (6,), generator=g)
        bases = {i: [u.clone() for u in m.factors] for i, m in layers.items()}
        cores = {i: m.core.detach().clone().requires_grad_(True) for i, m in layers.items()}
        bufs = {i: opt.state[m.core].get("momentum_buffer") for i, m in layers.items()}
        bufs = {i: None if b is None else b.clone() for i, b in bufs.items()}
        # the fixed-rank step's gradient, at the state before the step
        grads = torch.autograd.grad(loss_fn(_reference_forward(model, x, cores), y), list(cores.values()))
        method.train_step(model, opt, (x, y), loss_fn)
        assert not any(m.augmented for m in layers.values())  # never left at the augmented ranks
        if step % 3 == 0:
            continue  # a refresh: basis step, core step and truncation on this batch
        for (i, m), grad in zip(layers.items(), grads, strict=True):
            assert all(torch.equal(u, u0) for u, u0 in zip(m.factors, bases[i], strict=True))  # frozen bases
            buf = grad if bufs[i] is None else bufs[i] * 0.9 + grad  # torch's heavy-ball SGD, written out
            expect = cores[i].detach() - 0.05 * buf
            assert torch.allclose(m.core.detach(), expect, atol=1e-12)


def test_periodic_changes_ranks_only_at_refreshes():
    method = TDLRTMethod({"schedule": "periodic", "amortize_steps": 4, "tau": 0.3, "layers": ["2", "5"]})
    model, opt = _model(method)
    layers = [m for m in model if hasattr(m, "core")]
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(4)
    ranks = []
    for _ in range(9):
        x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
        method.train_step(model, opt, (x, torch.randint(0, 4, (6,), generator=g)), loss_fn)
        ranks.append([m.ranks for m in layers])
        for m in layers:
            assert opt.state[m.core]["momentum_buffer"].shape == m.core.shape
    for i in range(9):
        if i % 4 != 0:
            assert ranks[i] == ranks[i - 1]
    assert ranks[0] != [[8, 12, 3, 3], [20, 20]] or ranks[4] != ranks[0]  # the refreshes do truncate
    method.end_epoch(model, opt, 0)
    assert [m.ranks for m in layers] == ranks[-1]  # nothing left open at the end of an epoch


def test_core_momentum_gives_the_cores_their_own_group_through_every_shape_change():
    method = TDLRTMethod({"core_momentum": 0.0, "tau": 0.2, "layers": ["2", "5"]})
    model, opt = _model(method)
    layers = method.tucker_layers(model)
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.0]
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
        method.train_step(model, opt, (x, torch.randint(0, 4, (6,), generator=g)), loss_fn)
        cores = opt.param_groups[1]["params"]
        assert [id(c) for c in cores] == [id(m.core) for m in layers]  # the new cores took the old ones' places
        assert all(id(m.core) not in map(id, opt.param_groups[0]["params"]) for m in layers)
    plain = TDLRTMethod({"tau": 0.2, "layers": ["2", "5"]})
    _, opt2 = _model(plain)
    assert len(opt2.param_groups) == 1  # without it: one group, the suite's momentum for everything


def test_tau_warmup_raises_the_tolerance_linearly():
    method = TDLRTMethod({"tau": 0.4, "tau_warmup": 4, "layers": ["2", "5"]})
    model, opt = _model(method)
    seen = []
    for layer in method.tucker_layers(model):
        original = layer.truncate

        def record(tau, optimizer=None, _original=original):
            seen.append(tau)
            _original(tau, optimizer)

        layer.truncate = record
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(6)
    for _ in range(6):
        x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
        method.train_step(model, opt, (x, torch.randint(0, 4, (6,), generator=g)), loss_fn)
    assert seen[::2] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
