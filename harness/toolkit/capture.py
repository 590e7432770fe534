"""Capture what a method needs from a layer during one forward/backward pass: its input, its output and the
gradient of the loss with respect to that output."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn


class Capture:
    """Inputs, outputs and output gradients of ``layers`` over one forward/backward pass.

    Use it around the forward pass, then take the backward pass either with :meth:`backward` (one
    ``torch.autograd.grad`` call that returns the output gradients and sets ``.grad`` only on the parameters you
    name, e.g. to skip a gradient you compute another way) or with a plain ``loss.backward()`` (every
    parameter's ``.grad`` accumulates as usual)::

        with Capture(layers) as cap:
            loss = loss_fn(model(x), y)
        cap.backward(loss, params)  # or loss.backward()
        for layer, x_in, g_out in zip(layers, cap.inputs, cap.grad_outputs):
            ...

    ``inputs[i]`` is the (detached) first positional input of ``layers[i]``, ``outputs[i]`` its output (still in
    the autograd graph), ``grad_outputs[i]`` dL/d(output) after the backward pass (``None`` when the loss does
    not depend on it). A layer called several times in the forward pass keeps its last call. A layer with a
    boolean attribute ``capturing`` sees it ``True`` inside the block, so it can keep intermediates of its own
    forward pass (DLRT layers keep their input contracted with the input basis).
    """

    def __init__(self, layers: Sequence[nn.Module]):
        self.layers = list(layers)
        n = len(self.layers)
        self.inputs: list[torch.Tensor | None] = [None] * n
        self.outputs: list[torch.Tensor | None] = [None] * n
        self.grad_outputs: list[torch.Tensor | None] = [None] * n
        self._handles: list[Any] = []

    def __enter__(self) -> Capture:
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.register_forward_hook(partial(self._forward_hook, i)))
            if hasattr(layer, "capturing"):
                setattr(layer, "capturing", True)  # noqa: B010 (a duck-typed flag, not an nn.Module attribute)
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for layer in self.layers:
            if hasattr(layer, "capturing"):
                setattr(layer, "capturing", False)  # noqa: B010

    def _forward_hook(self, i: int, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.inputs[i] = args[0].detach() if args and torch.is_tensor(args[0]) else None
        self.outputs[i] = output
        self.grad_outputs[i] = None
        if output.requires_grad:
            # the hook holds the list, not this object: a hook that held ``self`` would make a reference cycle
            # (self -> outputs -> graph -> hook -> self) that keeps every step's activations alive until the
            # garbage collector runs, so each step would take fresh memory (measured: 1.5x a VGG16 step)
            output.register_hook(partial(_store, self.grad_outputs, i))

    def backward(self, loss: torch.Tensor, params: Sequence[torch.Tensor] = ()) -> None:
        """One backward pass: the output gradients into ``grad_outputs``; the gradients of ``params`` (only
        those) into their ``.grad`` (replaced, not accumulated; ``None`` where the loss does not depend on
        them)."""
        outs = [o for o in self.outputs if o is not None and o.requires_grad]
        if len(outs) < len(self.layers):
            i = next(i for i, o in enumerate(self.outputs) if o is None or not o.requires_grad)
            raise RuntimeError(f"Capture.backward: no differentiable output captured for {self.layers[i]!r}")
        params = list(params)
        grads = torch.autograd.grad(loss, outs + params, allow_unused=True)
        self.grad_outputs = list(grads[: len(outs)])
        for p, g in zip(params, grads[len(outs) :], strict=True):
            p.grad = g


def _store(into: list[torch.Tensor | None], i: int, grad: torch.Tensor) -> None:
    into[i] = grad
