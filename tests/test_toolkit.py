"""The public toolkit for methods: capture, parameters that change shape inside torch's optimizers, the
truncation schedule, the rank rule, and the names `harness` exports."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import harness
import harness.toolkit as toolkit
from harness.toolkit import (
    Capture,
    TruncationSchedule,
    moment_transport,
    rank_from_fraction,
    reshape_parameter,
    resolve_rank,
    swap_parameter,
)


def test_every_toolkit_name_is_exported_from_harness():
    for name in toolkit.__all__:
        assert getattr(harness, name) is getattr(toolkit, name), name
        assert name in harness.__all__


class Tagged(nn.Linear):
    """A layer that wants to know when it is captured."""

    capturing = False

    def forward(self, x):
        self.seen_capturing = self.capturing
        return super().forward(x)


def test_capture_gives_inputs_outputs_and_output_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), Tagged(5, 3))
    x = torch.randn(6, 4)
    layers = [model[0], model[2]]
    with Capture(layers) as cap:
        out = model(x)
    assert model[2].seen_capturing and not model[2].capturing  # set inside the block only
    assert torch.equal(cap.inputs[0], x) and not cap.inputs[1].requires_grad
    assert cap.outputs[1] is out
    loss = (out**2).sum()
    # reference gradients by autograd on the outputs
    ref = torch.autograd.grad(loss, cap.outputs, retain_graph=True)
    params = [model[2].weight]
    cap.backward(loss, params)
    for got, want in zip(cap.grad_outputs, ref, strict=True):
        assert torch.allclose(got, want)
    assert model[2].weight.grad is not None and model[0].weight.grad is None  # only the named parameters
    assert torch.allclose(model[2].weight.grad, cap.grad_outputs[1].T @ cap.inputs[1])
    # with a plain backward the output gradients come through hooks, every .grad accumulates
    with Capture(layers) as cap2:
        loss2 = (model(x) ** 2).sum()
    loss2.backward()
    for got, want in zip(cap2.grad_outputs, ref, strict=True):
        assert torch.allclose(got, want)
    assert model[0].weight.grad is not None
    # hooks are gone after the block
    with torch.no_grad():
        model(x)
    assert cap2.outputs[1] is not None and len(model[0]._forward_hooks) == 0


def test_capture_backward_refuses_a_layer_without_differentiable_output():
    layer = nn.Linear(3, 2)
    with Capture([layer]) as cap, torch.no_grad():
        layer(torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="no differentiable output"):
        cap.backward(torch.zeros((), requires_grad=True))


def _pad(t: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([t, t.new_zeros(rows, *t.shape[1:])])


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1, amsgrad=True),
    ],
)
def test_reshaped_parameter_continues_as_torch_would_from_the_transported_state(make):
    """Grow a parameter (zero rows) mid-training: its optimizer state is moved by the transport, the step
    count kept, and the following steps are exactly torch's from that state."""
    g = torch.Generator().manual_seed(0)
    module = nn.Module()
    module.w = nn.Parameter(torch.randn(3, 2, generator=g, dtype=torch.float64))
    other = nn.Parameter(torch.randn(4, dtype=torch.float64))
    opt = make([module.w, other])
    for _ in range(2):
        module.w.grad = torch.randn(3, 2, generator=g, dtype=torch.float64)
        other.grad = torch.randn(4, generator=g, dtype=torch.float64)
        opt.step()
    old_state = copy.deepcopy(opt.state[module.w])
    old = module.w
    new = reshape_parameter(module, "w", _pad(module.w.detach(), 2), opt, moment_transport(lambda t: _pad(t, 2)))
    assert module.w is new and new.shape == (5, 2) and new is not old
    assert opt.param_groups[0]["params"] == [new, other] and old not in opt.state
    state = opt.state[new]
    for k, v in old_state.items():
        if k == "step":
            assert torch.equal(state[k], v)
        else:
            assert torch.equal(state[k], _pad(v, 2)), k
    # the same as a fresh optimizer over a fresh parameter holding that state
    ref = nn.Parameter(new.detach().clone())
    ref_opt = make([ref])
    ref_opt.state[ref] = copy.deepcopy(state)
    for _ in range(3):
        grad = torch.randn(5, 2, generator=g, dtype=torch.float64)
        new.grad, ref.grad = grad.clone(), grad.clone()
        other.grad = None
        opt.step()
        ref_opt.step()
    assert torch.allclose(new.detach(), ref.detach(), atol=1e-14)


def test_moment_transport_and_reset_and_absent_parameters():
    p = nn.Parameter(torch.ones(2, 2))
    opt = torch.optim.Adam([p])
    p.grad = torch.ones(2, 2)
    opt.step()
    transport = moment_transport(lambda t: t * 2, lambda t: t * 4)
    assert torch.equal(transport("exp_avg", torch.ones(1)), torch.full((1,), 2.0))
    assert torch.equal(transport("exp_avg_sq", torch.ones(1)), torch.full((1,), 4.0))
    assert torch.equal(transport("max_exp_avg_sq", torch.ones(1)), torch.full((1,), 4.0))
    q = nn.Parameter(torch.zeros(3))
    assert swap_parameter(opt, p, q) and q not in opt.state  # no transport: the state starts afresh
    assert opt.param_groups[0]["params"] == [q]
    assert not swap_parameter(opt, p, q) and not swap_parameter(None, q, p)
    # a parameter in a second group
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(2))
    opt2 = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    c = nn.Parameter(torch.zeros(4))
    assert swap_parameter(opt2, b, c) and opt2.param_groups[1]["params"] == [c]
    # a frozen parameter stays frozen
    m = nn.Module()
    m.w = nn.Parameter(torch.zeros(2), requires_grad=False)
    assert not reshape_parameter(m, "w", torch.zeros(3)).requires_grad


def test_truncation_schedule():
    every = TruncationSchedule.named("every_step")
    assert [(every.basis_step, every.advance()) for _ in range(3)] == [(True, True)] * 3
    assert not every.close()
    amortized = TruncationSchedule.named("amortized", 3)
    seen = [(amortized.basis_step, amortized.advance()) for _ in range(5)]
    assert seen == [(True, False), (False, False), (False, True), (True, False), (False, False)]
    assert amortized.close() and amortized.basis_step and not amortized.close()
    periodic = TruncationSchedule.named("periodic", 3)  # truncation right after each basis step
    seen = [(periodic.basis_step, periodic.advance()) for _ in range(5)]
    assert seen == [(True, True), (False, False), (False, False), (True, True), (False, False)]
    assert not periodic.close() and periodic.basis_step  # never left open; the next epoch starts a cycle
    with pytest.raises(ValueError):
        TruncationSchedule(0)
    with pytest.raises(ValueError):
        TruncationSchedule.named("sometimes")


def test_one_rank_rule():
    assert rank_from_fraction(0.5, 25) == 13 and rank_from_fraction(0.3, 10) == 3 and rank_from_fraction(1.0, 7) == 7
    assert rank_from_fraction(0.01, 10) == 1
    assert resolve_rank(0.5, 500) == 250 and resolve_rank(8, 5) == 5 and resolve_rank(3, 10) == 3
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError):
            rank_from_fraction(bad, 10)
    with pytest.raises(ValueError):
        resolve_rank(True, 10)


def test_a_capture_frees_its_step_without_the_garbage_collector():
    """No reference cycle: once the step's names are gone, its capture, outputs and graph are freed at once
    (a cycle kept every step's activations until the collector ran, and made a VGG16 step 1.5x slower)."""
    import gc
    import weakref

    layer = nn.Linear(4, 3)
    gc.disable()
    try:
        with Capture([layer]) as cap:
            loss = layer(torch.randn(5, 4)).square().sum()
        cap.backward(loss, list(layer.parameters()))
        assert cap.grad_outputs[0] is not None
        refs = [weakref.ref(cap), weakref.ref(cap.outputs[0])]
        del cap, loss
        assert all(r() is None for r in refs)
    finally:
        gc.enable()
