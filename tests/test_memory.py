"""Peak memory: the tensors a run's training holds, the same whatever ran before it in the process."""

from __future__ import annotations

import pytest
import torch

from harness.memory import MIB, PeakMemory, TensorLedger, run_tensors, sampled_steps, storage_bytes, untracked_seconds
from harness.train import train_run
from tests.conftest import tiny_suite

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def test_ledger_counts_held_storages_and_each_new_storage_until_it_is_freed():
    held = torch.empty(MIB // 4)  # 1 MiB of float32
    with TensorLedger([held, held[:10]]) as ledger:  # a view of a held storage counts once
        assert ledger.current == MIB
        a = torch.empty(MIB // 2)  # 2 MiB
        view = a[: MIB // 4]
        del a
        assert ledger.current == 3 * MIB  # the view keeps the storage alive
        del view
        assert ledger.current == MIB
        b = torch.ones(MIB // 8)  # 0.5 MiB; an in-place operation keeps its storage
        b.add_(1.0)
        assert ledger.current == MIB + MIB // 2
    assert ledger.peak == 3 * MIB


def test_ledger_sees_the_backward_pass():
    w = torch.randn(256, 256, requires_grad=True)
    with TensorLedger([w]) as ledger:
        (w @ w).relu().sum().backward()
    assert w.grad is not None
    # w, w @ w (saved), its relu (saved), and the gradient of w were alive at once
    assert ledger.peak >= 4 * w.numel() * 4


def test_run_tensors_and_storage_bytes():
    model = torch.nn.Linear(100, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 100)).sum().backward()
    opt.step()
    params = (100 * 10 + 10) * 4
    assert storage_bytes(run_tensors(model)) == 2 * params  # weights and gradients
    assert storage_bytes(run_tensors(model, opt)) == 3 * params  # and momentum


def test_sampled_steps_and_untracked_seconds():
    assert sampled_steps(1) == {0} and sampled_steps(2) == {0} and sampled_steps(10) == {0, 5}
    # 10 steps in 5.2 s of loop, 2 of them tracked (2.0 s): the other 8 took 0.4 s each, so the tracked ones
    # count 0.8 s; the epoch's 0.3 s outside the step loop stays as it is
    assert untracked_seconds(5.5, 2.0, 2, 5.2, 10) == pytest.approx(5.5 - 2.0 + 0.8)
    assert untracked_seconds(3.0, 0.0, 0, 3.0, 10) == 3.0
    assert untracked_seconds(3.0, 3.0, 1, 3.0, 1) == 3.0  # every step tracked: as measured


def test_peak_memory_block_on_cpu_counts_tracked_steps_only():
    model = torch.nn.Linear(512, 512)
    with PeakMemory(torch.device("cpu"), lambda: run_tensors(model)) as mem:
        with mem.step(1, 4):  # not a sampled step (those are 0 and 2 of 4): not counted
            big = torch.empty(64 * MIB // 4)
            del big
        with mem.step(0, 4):
            model(torch.randn(8, 512)).sum().backward()
        with mem.excluded():
            torch.empty(64 * MIB // 4)
    weights = (512 * 512 + 512) * 4
    assert 2 * weights <= mem.peak_mb * MIB < 2 * weights + MIB  # weights, gradients, a few small activations
    assert mem.tracked_steps == 1


def _config(method: str = "full", params: dict | None = None, batch_size: int = 64) -> dict:
    suite = tiny_suite()
    training = {**suite["training"], "batch_size": batch_size}
    init = "random" if method != "full" else "pytorch"
    return {
        "dataset": "mnist_subset",
        "model": "lenet5",
        "method": method,
        "params": params or {},
        "initialization": init,
        "seed": 0,
        "training": training,
        "budget": {**suite["budget"], "epochs": None},
    }


@pytest.mark.parametrize("device", DEVICES)
def test_peak_memory_does_not_depend_on_what_ran_before(device):
    """The same run reads the same peak first and after a bigger run in this process; a smaller model (Tucker
    at 90% compression) reads less, by at least its parameters and gradients."""
    small = _config()
    first = train_run(small, device=device)["peak_memory_mb"]
    bigger = train_run(_config(batch_size=256), device=device)["peak_memory_mb"]
    again = train_run(small, device=device)["peak_memory_mb"]
    assert again == pytest.approx(first, rel=0.02)
    assert bigger > 1.5 * first > 0
    tucker = train_run(_config("tucker", {"compression": 0.9}), device=device)
    full = train_run(small, device=device)
    saved = (full["params_train"] - tucker["params_train"]) * 4 / MIB
    assert full["peak_memory_mb"] - tucker["peak_memory_mb"] >= 2 * saved > 1.0
