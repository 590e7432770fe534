"""training.channels_last and training.compile: resolved and recorded, the same training as without them, and a
method whose shapes change declines compilation with a recorded note."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from harness.execution import batch_layout, is_convolutional, to_channels_last, use_channels_last
from harness.models import create_model
from harness.suite import expand, parse_suite
from harness.train import convolutional, train_run
from tests.conftest import tiny_suite

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    "setting,device,conv,expect",
    [
        ("auto", CUDA, True, True),
        ("auto", CUDA, False, False),
        ("auto", CPU, True, False),
        (True, CPU, True, True),
        (True, CPU, False, True),
        (False, CUDA, True, False),
    ],
)
def test_channels_last_auto_is_on_for_convolutional_models_on_cuda_only(setting, device, conv, expect):
    assert use_channels_last(setting, device, conv) is expect


def test_layout_of_models_and_batches():
    assert is_convolutional(create_model("lenet5")) and not is_convolutional(nn.Sequential(nn.Linear(3, 2)))
    assert convolutional({"dataset": "mnist_subset", "model": "lenet5"})  # of the dense architecture, on meta
    model = to_channels_last(create_model("lenet5"))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28)
    assert batch_layout(x, True).is_contiguous(memory_format=torch.channels_last)
    assert batch_layout(x, False) is x and batch_layout(torch.randn(4, 7), True).dim() == 2


def run(method: str | dict, **training) -> dict:
    data = tiny_suite(methods=[method], training={**tiny_suite()["training"], **training})
    (r,) = expand(parse_suite(data))
    return train_run(r.config, device="cpu")


@pytest.mark.parametrize("method", ["full", {"name": "tdlrt", "params": {"tau": 0.15}}])
def test_channels_last_trains_as_the_default_layout_does_and_is_recorded(method, one_thread):
    plain, nhwc = run(method), run(method, channels_last=True)
    assert nhwc["channels_last"] is True and plain["channels_last"] is False
    assert nhwc["final_train_loss"] == pytest.approx(plain["final_train_loss"], abs=0.02)
    assert nhwc["final_acc"] == pytest.approx(plain["final_acc"], abs=0.03)


def test_a_method_whose_shapes_change_runs_eagerly_with_a_recorded_note():
    metrics = run({"name": "tdlrt", "params": {"tau": 0.15}}, compile=True)
    assert metrics["compiled"] is False and metrics["final_acc"] > 0.25  # it trains (chance: 0.1)
    assert len(metrics["notes"]) == 1 and "forward not compiled" in metrics["notes"][0]
    assert "notes" not in run({"name": "tdlrt", "params": {"tau": 0.15}})


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="torch.compile needs cc")
@pytest.mark.parametrize("method", ["full", {"name": "tucker", "params": {"compression": 0.9}}])
def test_compiled_forward_trains_as_the_eager_one(method, one_thread):
    """torch.compile on the CPU (inductor, a C++ compiler): 20-40 s per run on 2 cores."""
    eager, compiled = run(method), run(method, compile=True)
    assert compiled["compiled"] is True and "notes" not in compiled
    assert compiled["final_train_loss"] == pytest.approx(eager["final_train_loss"], abs=0.01)
    assert compiled["flops"] == eager["flops"]
