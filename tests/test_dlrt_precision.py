"""DLRT / TDLRT under a reduced training precision: the forward pass in bf16 or fp16 (autocast), the basis step,
the core gradient and truncation in float32 exactly as without autocast, bases orthonormal to float32 precision,
and float16's loss scaling (on the CPU, where a run cannot ask for it, through ``Precision`` directly)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from harness.models import create_model
from harness.precision import Precision
from harness_methods.dlrt import DLRTMethod, TDLRTMethod
from tests.test_tdlrt import CASES, captured, make_layer, sample_input

pytestmark = pytest.mark.usefixtures("one_thread")

SGD = SimpleNamespace(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0)
FLOAT32_ORTHO = 1e-5  # max |U^T U - I| over the entries: float32 round-off of a QR (eps 1.2e-7) times a small factor


def ortho_max(u: torch.Tensor) -> float:
    return float((u.T @ u - torch.eye(u.shape[1], dtype=u.dtype)).abs().max())


@pytest.mark.parametrize("structure,ranks,conv", CASES)
def test_basis_step_and_truncation_under_bf16_autocast_are_the_float32_computation(structure, ranks, conv):
    """The captured pass runs in bfloat16 (its output and output gradient are bf16); the basis step and the
    truncation taken inside autocast give exactly what they give outside it on the same tensors in float32, and
    augmentation leaves the layer's weight unchanged to float32 precision (a bf16 QR would move it by ~1e-3)."""
    layer, _ = make_layer(structure, ranks, dtype=torch.float32, **conv)
    x = sample_input(structure, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = captured(layer, x)
        (g,) = torch.autograd.grad((out.float() ** 2).sum(), [out])
    assert out.dtype == g.dtype == layer.contracted.dtype == torch.bfloat16
    twin = copy.deepcopy(layer)
    twin.contracted = layer.contracted.float()
    w0 = layer.dense_weight().detach().clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer.basis_step(x, g, 0.5)
    twin.basis_step(x, g.float(), 0.5)
    assert layer.ranks == twin.ranks != list(ranks)  # augmented
    assert layer.core.dtype == layer.core.grad.dtype == torch.float32
    assert all(u.dtype == torch.float32 for u in layer.factors)
    assert torch.allclose(layer.core.grad, twin.core.grad, rtol=1e-6, atol=1e-7)
    for u, v in zip(layer.factors, twin.factors, strict=True):
        assert torch.allclose(u, v, atol=1e-7) and ortho_max(u) < FLOAT32_ORTHO
    assert float((layer.dense_weight().detach() - w0).abs().max()) < 1e-6 * max(1.0, float(w0.abs().max()))

    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer.truncate(0.3)
    twin.truncate(0.3)
    assert layer.ranks == twin.ranks and layer.core.dtype == torch.float32
    assert torch.allclose(layer.dense_weight(), twin.dense_weight(), atol=1e-6)


def lenet5_method(method_cls, precision: str, **params):
    torch.manual_seed(0)
    method = method_cls({"tau": 0.1, **params})
    model = method.prepare(create_model("lenet5"), torch.Generator().manual_seed(0))
    method.precision = Precision(precision, "cpu")
    return method, model, method.make_optimizer(model, SGD)


def batch(seed: int = 1, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("method_cls", [DLRTMethod, TDLRTMethod])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_bases_stay_orthonormal_in_float32_and_steps_match_fp32(method_cls, precision):
    """Eight steps of LeNet5 under bf16 / fp16 autocast (fp16 with its gradient scaler): the bases and cores stay
    float32, orthonormal to float32 precision; ranks and losses follow the fp32 run closely."""
    runs = {}
    for p in ("fp32", precision):
        method, model, opt = lenet5_method(method_cls, p)
        x, y = batch()
        losses = []
        for _ in range(8):
            with method.precision.autocast():
                losses.append(float(method.train_step(model, opt, (x, y), nn.CrossEntropyLoss())))
        layers = method.tucker_layers(model)
        for layer in layers:
            assert layer.core.dtype == torch.float32
            for u in layer.factors:
                assert u.dtype == torch.float32 and ortho_max(u) < FLOAT32_ORTHO
        runs[p] = (losses, [layer.ranks for layer in layers])
    (ref_losses, ref_ranks), (losses, ranks) = runs["fp32"], runs[precision]
    assert losses[-1] < losses[0] - 0.05  # it learns the batch
    assert max(abs(a - b) for a, b in zip(losses, ref_losses, strict=True)) < 0.02
    assert all(
        abs(a - b) <= max(2, b // 10) for r, q in zip(ranks, ref_ranks, strict=True) for a, b in zip(r, q, strict=True)
    )


@pytest.mark.parametrize("method_cls", [DLRTMethod, TDLRTMethod])
def test_fp16_step_whose_output_gradients_overflow_is_skipped_whole(method_cls):
    """A loss scale so large that the fp16 output gradients overflow: nothing moves (bases, cores, the dense
    layers), the step counter stays, and the scale is lowered as torch's scaler lowers it."""
    method, model, opt = lenet5_method(method_cls, "fp16")
    amp = method.precision
    amp.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    before = copy.deepcopy(model.state_dict())
    with amp.autocast():
        method.train_step(model, opt, batch(n=8), nn.CrossEntropyLoss())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert amp.grad_scale == 2.0**39 and method._steps == 0
    with amp.autocast():  # the scale comes down until a step is taken
        while method._steps == 0 and amp.grad_scale > 1:
            method.train_step(model, opt, batch(n=8), nn.CrossEntropyLoss())
    assert method._steps == 1 and 2.0**8 < amp.grad_scale < 2.0**30


def test_dlrt_declines_compilation_with_a_note():
    method, model, _ = lenet5_method(TDLRTMethod, "fp32")
    note = method.compile(model)
    assert note is not None and "change shape" in note
    assert not hasattr(model, "_compiled_call_impl") or model._compiled_call_impl is None
