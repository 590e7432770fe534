"""The arithmetic precision of a run (``training.precision``): autocast of its forward passes, loss scaling for
float16, and the two calls through which a method's step takes its backward pass and its optimizer step.

The training loop enters :meth:`Precision.autocast` around each ``Method.train_step`` and around evaluation, so
every method's forward passes and loss run in the chosen precision without knowing it: matrix products and
convolutions in bfloat16 or float16, what autocast keeps in float32 (losses, softmax, norms, reductions) in
float32. Parameters, their gradients and the optimizer's state stay float32.

float16 needs its loss scaled (small gradients underflow): a method takes its backward pass with
``self.precision.backward(loss)`` and its optimizer step with ``self.precision.step(optimizer)``; both are the
plain ``loss.backward()`` / ``optimizer.step()`` in fp32 and bf16, so a method that calls those directly works in
fp32 and bf16 as before, and the loop stops a float16 run of such a method with a clear message. A method that
computes gradients from captured output gradients (DLRT, TDLRT) reads them with :meth:`Precision.unscaled`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from harness.toolkit.linalg import as_float32, full_precision

#: The names of ``training.precision`` and the autocast dtype of each (None: no autocast).
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class UnsupportedPrecision(ValueError):
    """A precision this device cannot train in (float16 on a CPU, bfloat16 on a GPU without it)."""


def precision_problem(name: str, device_type: str) -> str | None:
    """Why ``training.precision: name`` cannot run on a device of ``device_type`` (None: it can)."""
    if name == "fp16" and device_type != "cuda":
        return (
            f"fp16 needs a CUDA device (float16 autocast with a gradient scaler), and the runs' device is "
            f"{device_type}: use bf16 or fp32 there"
        )
    if name == "bf16" and device_type == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "bf16 needs a GPU with bfloat16 support (Ampere or newer): use fp16 or fp32 on this GPU"
    return None


class Precision:
    """How a run computes: ``name`` (fp32, bf16 or fp16) on a device of ``device_type`` (cpu, cuda).

    ``Precision(name, device_type)`` checks nothing; :meth:`for_run` refuses an unsupported combination."""

    def __init__(self, name: str = "fp32", device_type: str = "cpu"):
        if name not in DTYPES:
            raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(DTYPES)}")
        self.name, self.device_type, self.dtype = name, device_type, DTYPES[name]
        self.scaler = torch.amp.GradScaler(device_type) if name == "fp16" else None
        self.scaled_backwards = 0  # backward passes whose loss went through scale(): fp16 checks its method uses it

    @classmethod
    def for_run(cls, name: str, device: torch.device) -> Precision:
        """The precision of a run on ``device``; :class:`UnsupportedPrecision` when the device cannot."""
        problem = precision_problem(name, device.type)
        if problem:
            raise UnsupportedPrecision(f"training.precision: {problem}")
        return cls(name, device.type)

    @property
    def scaling(self) -> bool:
        """Whether losses are scaled (fp16)."""
        return self.scaler is not None

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """The region of forward passes and losses: autocast to the run's dtype (nothing in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def full(self) -> contextlib.AbstractContextManager[None]:
        """Autocast off inside :meth:`autocast` (:func:`harness.toolkit.full_precision`)."""
        return full_precision(self.device_type)

    # -- the backward pass and the step --------------------------------------------------------------------------
    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to differentiate: ``loss`` times the gradient scale (fp16), else ``loss`` itself."""
        if self.scaler is None:
            return loss
        self.scaled_backwards += 1
        return self.scaler.scale(loss)

    @property
    def grad_scale(self) -> float:
        """What gradients of :meth:`scale`'d losses are multiplied by (1 without loss scaling)."""
        return float(self.scaler.get_scale()) if self.scaler is not None else 1.0

    def unscaled(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Gradients taken from a :meth:`scale`'d loss other than through parameters' ``.grad`` (captured output
        gradients), divided by the scale; bfloat16 and float16 ones as float32 (others keep their dtype)."""
        inv = 1.0 / self.grad_scale
        return [None if g is None else (as_float32(g) * inv if inv != 1.0 else as_float32(g)) for g in grads]

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, of the scaled loss in fp16 (autocast off: the backward pass runs in the dtypes
        of its forward pass)."""
        with self.full():
            self.scale(loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the ``.grad`` of the optimizer's parameters by the scale now (fp16; nothing otherwise), so that
        gradients set afterwards in true units are not divided again by :meth:`step`."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; in fp16 the gradient scaler's step (skipped when a gradient overflowed) and its
        update of the scale."""
        with self.full():
            if self.scaler is None:
                optimizer.step()
                return
            self.scaler.step(optimizer)
            self.scaler.update()

    def skip_step(self) -> None:
        """A step not taken because gradients overflowed (fp16): lower the scale as the scaler would."""
        if self.scaler is not None:
            self.scaler.update(self.scaler.get_scale() * self.scaler.get_backoff_factor())


#: The precision of a method that no training loop has configured: float32, nothing scaled.
FP32 = Precision()


def all_finite(tensors: Sequence[torch.Tensor | None]) -> bool:
    """Whether every element of every given tensor is finite (one synchronisation)."""
    flags = [torch.isfinite(t).all() for t in tensors if t is not None]
    return bool(torch.stack(flags).all()) if flags else True
