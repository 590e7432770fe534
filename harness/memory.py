"""Peak memory of a run: the most tensor memory its training held at once, whatever ran before it.

What is counted is the training's own tensors: the model's parameters, buffers and gradients, the
optimizer's state, and every tensor a training step creates (the batch, activations saved for backward,
temporaries of a method's step). The dataset is not counted (it is loaded once per process and shared by the
runs that use it), nor is evaluation (its batch size is the harness's, not the method's). Process-level
figures are not used (resident set size, malloc's bytes in use): they carry what earlier runs left behind
(allocator free lists, oneDNN scratchpads, lazily imported modules), so the same run read 117 MiB first in a
grid and 45 MiB last.

* CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``) over the training steps, less what was allocated at their start that is not
  the run's state.
* CPU: tensors are accounted, not pages. On sampled steps (the first and the middle step of every epoch) a
  dispatch mode (:class:`TensorLedger`) starts from the storages the run holds and adds every storage an
  operation creates, subtracting it when it is freed; the peak is the most seen at once. Sampling keeps the
  timings honest: a tracked step is slower (each operation passes through Python), so the epoch's seconds
  count tracked steps at the mean duration of its other steps (:func:`untracked_seconds`). Memory a kernel
  allocates internally (oneDNN scratchpads) is not a tensor and is not counted.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

MIB = 2**20


def run_tensors(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Iterator[torch.Tensor]:
    """The tensors a run holds between steps: parameters, their gradients, buffers, optimizer state."""
    for p in model.parameters():
        yield p
        if p.grad is not None:
            yield p.grad
    yield from model.buffers()
    if optimizer is not None:
        for state in optimizer.state.values():
            yield from (v for v in state.values() if isinstance(v, torch.Tensor))


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages under ``tensors`` (views of one storage count once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        key, n = _storage(t)
        if n:
            seen[key] = n
    return sum(seen.values())


def _storage(t: torch.Tensor) -> tuple[int, int]:
    """(address, bytes) of a tensor's storage; (0, 0) for tensors without one (sparse, meta)."""
    try:
        s = t.untyped_storage()
        return s.data_ptr(), s.nbytes()
    except (RuntimeError, NotImplementedError):
        return 0, 0


class TensorLedger(TorchDispatchMode):
    """Bytes of live tensor storages: those held at entry, plus every storage an operation creates inside the
    block until it is freed. ``peak`` is the most at once."""

    def __init__(self, held: Iterable[torch.Tensor] = ()):
        super().__init__()
        self.current = self.peak = 0
        self._live: dict[int, int] = {}  # storage address -> token of its entry
        self._finalizers: list[weakref.finalize] = []
        self._tokens = itertools.count(1)
        for t in held:
            self._add(t)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        for f in self._finalizers:  # the storages outlive the block; nothing more to count
            f.detach()
        self._finalizers.clear()

    def _add(self, t: torch.Tensor) -> None:
        key, n = _storage(t)
        if not n or key in self._live:
            return
        token = next(self._tokens)
        self._live[key] = token
        self.current += n
        self.peak = max(self.peak, self.current)
        self._finalizers.append(weakref.finalize(t.untyped_storage(), self._free, key, token, n))

    def _free(self, key: int, token: int, n: int) -> None:
        if self._live.get(key) == token:
            del self._live[key]
            self.current -= n


def sampled_steps(steps: int) -> frozenset[int]:
    """The steps of an epoch whose memory is measured on CPU: the first and the middle one."""
    return frozenset({0, steps // 2}) if steps >= 3 else frozenset({0})


def untracked_seconds(elapsed: float, tracked: float, n_tracked: int, loop: float, steps: int) -> float:
    """An epoch's seconds (``elapsed``) with its ``n_tracked`` tracked steps (``tracked`` seconds in all)
    counted at the mean duration of the other steps of its step loop (``loop`` seconds, ``steps`` steps);
    ``elapsed`` itself when no step, or every step, was tracked."""
    if n_tracked == 0 or n_tracked >= steps:
        return elapsed
    mean = (loop - tracked) / (steps - n_tracked)
    return elapsed - tracked + n_tracked * mean


class PeakMemory:
    """The peak tensor memory of a run's training in MiB (see the module's docstring for what it counts).

    ``held`` gives the tensors the run holds between steps (:func:`run_tensors`). Wrap the training in the
    block, each step in :meth:`step` and each evaluation in :meth:`excluded`."""

    def __init__(self, device: torch.device, held: Callable[[], Iterable[torch.Tensor]] = tuple):
        self.device, self.held = device, held
        self.peak_mb = 0.0
        self.tracked_seconds, self.tracked_steps = 0.0, 0  # this epoch's (see :meth:`epoch_seconds`)
        self._peak = 0
        self._base = 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def peak_bytes(self) -> int:
        """The peak measured so far, in bytes (what a run's checkpoint keeps)."""
        return self._peak

    def carry(self, peak_bytes: int) -> None:
        """Count the peak of the epochs a resumed run trained before it stopped (:mod:`harness.checkpoint`)."""
        self._peak = max(self._peak, int(peak_bytes))

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            self._reset()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            self._read()
        self.peak_mb = self._peak / MIB

    def _reset(self) -> None:
        """CUDA: the allocator's peak starts again from what is allocated now, less the run's own state."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._base = torch.cuda.memory_allocated(self.device) - storage_bytes(self.held())

    def _read(self) -> None:
        torch.cuda.synchronize(self.device)
        self._peak = max(self._peak, torch.cuda.max_memory_allocated(self.device) - self._base)

    @contextlib.contextmanager
    def step(self, index: int, steps: int) -> Iterator[None]:
        """One training step (``index`` of ``steps``): on CPU, tracked and timed apart when it is sampled."""
        if self.cuda or index not in sampled_steps(steps):
            yield
            return
        t0 = time.perf_counter()
        with TensorLedger(self.held()) as ledger:
            yield
        self.tracked_seconds += time.perf_counter() - t0
        self.tracked_steps += 1
        self._peak = max(self._peak, ledger.peak)

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        """A block whose memory is not the training's (evaluation: its batch size is the harness's choice)."""
        if not self.cuda:
            yield
            return
        self._read()
        yield
        self._reset()

    def epoch_seconds(self, elapsed: float, loop: float, steps: int) -> float:
        """The epoch's seconds as if no step had been tracked (see :func:`untracked_seconds`); starts the
        next epoch's count."""
        seconds = untracked_seconds(elapsed, self.tracked_seconds, self.tracked_steps, loop, steps)
        self.tracked_seconds, self.tracked_steps = 0.0, 0
        return seconds
