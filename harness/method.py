"""The method interface: the contract every training method (built-in or plugin) implements.

A method turns a freshly built dense model into the model it trains (replacing layers, applying its
initialization), builds its optimizer, and performs one optimisation step on one batch. The training
loop in :mod:`harness.train` calls nothing else, so methods that take several forward/backward passes
per batch or change parameter shapes during training (DLRT, TDLRT) fit the same loop.

What such methods need beyond this contract (selecting and replacing layers, capturing a layer's input and
output gradient, changing a parameter's shape while torch's optimizer keeps its state, a truncation schedule,
the rank rule) is the public toolkit :mod:`harness.toolkit`, also exported from ``harness``; the built-in
DLRT/TDLRT use nothing else (docs/plugins.md, "The toolkit for methods").

Worked example (also in docs/plugins.md)::

    from pydantic import BaseModel
    from harness import Method, register_method

    @register_method("frozen_first")
    class FrozenFirst(Method):
        \"\"\"Full training with the first layer frozen.\"\"\"

        class Params(BaseModel, extra="forbid"):
            freeze: int = 1

        def prepare(self, model, generator):
            for p in list(model.parameters())[: 2 * self.params.freeze]:
                p.requires_grad_(False)
            return model
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from harness.layers import LayerStats, layer_report
from harness.optim import build_optimizer
from harness.precision import FP32, Precision
from harness.toolkit.modules import resize_tensors

if TYPE_CHECKING:
    from harness.session import Session

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NoParams(BaseModel):
    """A method without parameters."""

    model_config = ConfigDict(extra="forbid")


class Method:
    """Base class of every training method.

    Class attributes a subclass sets:
      * ``Params``: a pydantic model of the method's parameters (``extra="forbid"``); suites validate
        against it and the resolved values (defaults filled in) are part of each run's identity.
      * ``initializations``: the initialization names the method accepts; the first is its default and
        the name ``default`` in a suite resolves to it.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    initializations: ClassVar[tuple[str, ...]] = ("default",)
    #: The run's arithmetic (``training.precision``), set by the training loop before the first step. A step
    #: takes its backward pass and optimizer step through it (``self.precision.backward(loss)``,
    #: ``self.precision.step(optimizer)``): plain ``loss.backward()`` and ``optimizer.step()`` in fp32 and bf16,
    #: with the loss scaled in fp16 (see :mod:`harness.precision`).
    precision: Precision = FP32

    #: The initializations that start from the dense model's weights as given (a trained model a suite names in
    #: ``initializations: [{from: ...}]``): ``prepare`` decomposes, prunes or keeps them. The first is what such a
    #: run uses unless the suite says ``as:``. Empty: the method cannot start from a trained model.
    pretrained_initializations: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, initialization: str = "default"):
        if not isinstance(params, BaseModel):
            params = self.Params.model_validate(params or {})
        self.params = params
        self.initialization = self.resolve_initialization(initialization)

    @classmethod
    def resolve_initialization(cls, name: str) -> str:
        """Map ``default`` to the method's default; reject names the method does not know."""
        if name == "default":
            return cls.initializations[0]
        if name not in cls.initializations:
            from harness.config import did_you_mean

            known = ", ".join(cls.initializations)
            raise ValueError(
                f"method {cls.name!r} has no initialization {name!r}"
                f"{did_you_mean(name, list(cls.initializations))}; it takes: {known}"
            )
        return name

    # -- the contract -------------------------------------------------------------------------------
    def model_problems(self, model: nn.Module) -> list[tuple[str, str]]:
        """``(parameter name, message)`` for each parameter that does not fit ``model`` (a layer pattern that
        matches no layer, a target no selection can meet). The suite asks before anything trains, with the
        model built on the meta device (names and shapes, no values, no data); each problem exits with status 2
        naming ``methods[i].params.<name>``. Default: none."""
        return []

    def prepare(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        """Transform a freshly built dense model (replace layers, initialize). Default: unchanged."""
        return model

    def before_training(self, model: nn.Module, session: Session) -> None:
        """Work on the prepared model with the run's data before the loop (score connections on a few batches,
        train and prune in rounds), through ``session`` (:mod:`harness.session`). Its cost counts in the run's
        total training cost. Default: nothing."""

    def make_optimizer(self, model: nn.Module, training: Any) -> torch.optim.Optimizer:
        """Build the optimizer from the suite's training settings. Default: over all parameters."""
        return build_optimizer([p for p in model.parameters() if p.requires_grad], training)

    def train_step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, loss_fn: LossFn
    ) -> torch.Tensor:
        """One optimisation step on one batch; returns the (detached) batch loss. The loop calls it inside the
        run's autocast region (``training.precision``)."""
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        self.precision.backward(loss)
        self.precision.step(optimizer)
        return loss.detach()

    def compile(self, model: nn.Module) -> str | None:
        """Compile the prepared model's forward for ``training.compile: true`` and return None, or leave it as it
        is and return a note saying why (the run records it). Default: ``torch.compile`` of the whole forward
        (``nn.Module.compile``, in place: parameter names unchanged). A method whose layers change shape during
        training should override this: each new shape would compile the forward again."""
        model.compile()
        return None

    def end_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        """Hook called after each training epoch, before evaluation. Default: nothing."""

    def match_state(self, model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> None:
        """Make a model this method has just prepared hold the tensors of a trained one (``state_dict`` name ->
        shape), before the trained weights are loaded into it (:func:`harness.load_model`): ranks that changed
        during training, tensors that training added (a pruning mask). Default: every parameter or buffer of
        another shape is replaced by one of the stored shape (:func:`harness.toolkit.resize_tensors`); a method
        whose training changes more than shapes overrides this."""
        resize_tensors(model, shapes)

    def layer_stats(self, model: nn.Module) -> list[LayerStats]:
        """Per-layer statistics (shape, parameters, ranks). Default: the engine's layer report."""
        return layer_report(model)

    def state_dict(self) -> dict[str, Any]:
        """What the method itself carries from one epoch to the next beyond the model and the optimizer (a step
        count, a schedule's phase), kept in the run's checkpoint (:mod:`harness.checkpoint`) so that a resumed
        run continues as the uninterrupted one would: numbers, strings, lists, dicts and tensors only. Whatever
        ``prepare`` derives again from the model and the parameters need not be kept. Default: nothing."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` gave, on the freshly prepared model of a resumed run (after its
        weights are loaded). Default: nothing."""
