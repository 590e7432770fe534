"""The methods ``dlrt`` (matrix DLRT) and ``tdlrt`` (TDLRT): their parameters, the layers they replace, and one
optimisation step (basis step from one captured forward/backward, the core step by the torch optimizer,
truncation when the schedule says so). The algorithm is described in ``methods/dlrt/__init__.py``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from harness import Method, register_method
from harness.config import WHEN_SET, changed_default
from harness.optim import build_optimizer
from harness.precision import all_finite
from harness.session import Session
from harness.toolkit import (
    Capture,
    RankSpec,
    TruncationSchedule,
    pattern_problems,
    replace_module,
    resolve_rank,
    select_layers,
)
from harness_methods.dlrt.base import DLRTLayer
from harness_methods.dlrt.budget import augmentation_caps


class DLRTParams(BaseModel):
    """Parameters of ``dlrt`` and ``tdlrt``."""

    model_config = ConfigDict(extra="forbid")

    tau: float = Field(0.1, ge=0, description="relative truncation tolerance: discarded tail <= tau * ||C~||_F")
    r_max: RankSpec = Field(
        0.5, gt=0, description="rank cap of channel modes: a float in (0, 1] is a fraction of n_i, an int absolute"
    )
    r_min: int = Field(2, ge=1, description="rank floor of adaptive modes (capped at the mode size)")
    initial_rank: RankSpec | Literal["full"] = Field(
        "full", description="initial rank of adaptive modes: int, fraction of n_i, or 'full' (= r_max)"
    )
    adaptive_modes: Literal["channels", "all"] = Field(
        "channels", description="'channels': spatial modes of Tucker convs stay at full rank kh, kw"
    )
    memory_budget: float | None = Field(
        1.0,
        gt=0,
        description="the most parameters a layer holds at any point of a step (augmented bases and core, K matrices;"
        " optimizer state apart), as a fraction of its dense layer; augmentation and truncation caps follow from it"
        " (methods/dlrt/budget.py). Default 1: training never holds more than the dense layer; null: no bound "
        "(augment to min(2r, n), truncate to r_max; the default of runs stored before 2026-12-03)",
        json_schema_extra=changed_default(None),
    )
    schedule: Literal["every_step", "amortized", "periodic"] = Field(
        "every_step",
        description="every_step: basis step, core step and truncation on every batch; amortized: a basis step every"
        " amortize_steps batches, core steps at the augmented ranks, truncation at the cycle's end; periodic: every"
        " amortize_steps batches one full step (basis step, core step, truncation), fixed-rank core steps between",
    )
    amortize_steps: int = Field(
        10, ge=1, description="amortized / periodic: one basis step and truncation per this many batches"
    )
    core_momentum: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="SGD momentum of the cores (null: the suite's momentum, as for every other parameter)",
        json_schema_extra=WHEN_SET,
    )
    tau_warmup: int = Field(
        500,
        ge=0,
        description="batches over which tau rises linearly from 0 to its value, counted from the run's first batch: "
        "the first truncations then do not judge a spectrum that momentum has inflated along a few directions "
        "(the rank-collapse remedy, docs/methods.md). Default 500; 0: none (the default of runs stored before "
        "2026-12-03)",
        json_schema_extra=changed_default(0),
    )
    tau_warmup_epochs: float = Field(
        0.0,
        ge=0,
        description="the warm-up in epochs instead (in place of tau_warmup; 0: tau_warmup applies)",
        json_schema_extra=WHEN_SET,
    )
    frobenius_decay: float | None = Field(
        None,
        ge=0,
        description="Frobenius decay (Khodak et al., ICLR 2021) of each layer's weight W = C x_k U_k: with orthonormal "
        "bases ||W||_F = ||C||_F, so it is weight decay of the cores at this coefficient in place of the suite's "
        "(null: the cores take the suite's weight decay, which is then Frobenius decay at that coefficient)",
        json_schema_extra=WHEN_SET,
    )
    layers: list[str] | None = Field(None, description="layer-name patterns; default: all but first conv, last linear")

    @model_validator(mode="after")
    def _one_warmup(self) -> DLRTParams:
        if self.tau_warmup_epochs and self.tau_warmup:
            if "tau_warmup" in self.model_fields_set:
                raise ValueError(
                    f"tau_warmup ({self.tau_warmup} batches) and tau_warmup_epochs ({self.tau_warmup_epochs:g}) both "
                    "set: give the warm-up in one of them"
                )
            self.tau_warmup = 0  # a warm-up in epochs replaces the default one in batches
        return self

    @field_validator("r_max", "initial_rank")
    @classmethod
    def _fraction_or_count(cls, v: Any) -> Any:
        if isinstance(v, float) and not 0 < v <= 1:
            raise ValueError(f"a fractional rank must be in (0, 1] (an int is an absolute rank), got {v}")
        if isinstance(v, int) and v < 1:
            raise ValueError(f"a rank must be at least 1, got {v}")
        return v


class _DLRTBase(Method):
    Params: ClassVar[type[BaseModel]] = DLRTParams
    initializations: ClassVar[tuple[str, ...]] = ("random", "decompose", "spectral")
    pretrained_initializations: ClassVar[tuple[str, ...]] = ("decompose", "spectral")
    tucker: ClassVar[bool] = False

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, initialization: str = "default"):
        super().__init__(params, initialization)
        self.schedule = TruncationSchedule.named(self.params.schedule, self.params.amortize_steps)
        self._layers: list[DLRTLayer] = []
        self._layers_of: int | None = None
        self._steps = 0  # batches taken (tau warm-up)
        self._warmup = self.params.tau_warmup  # batches of tau's warm-up (from tau_warmup_epochs at the run's start)

    # -- setup ---------------------------------------------------------------------------------------------------
    def layer_config(self, module: nn.Module) -> tuple[list[int], list[bool], list[int], list[int], list[int]]:
        """Initial ranks, adaptivity, rank floors, truncation caps and augmentation caps of the modes of
        ``module``'s factorization. Fractions round up (``harness.toolkit.resolve_rank``); a matrix has one rank,
        its cap and floor from the smaller side, tied in both modes. With a ``memory_budget`` the caps are cut
        to it (``methods/dlrt/budget.py``)."""
        p: DLRTParams = self.params  # type: ignore[assignment]
        w = module.weight
        tucker = isinstance(module, nn.Conv2d) and self.tucker
        n = list(w.shape) if tucker or not isinstance(module, nn.Conv2d) else [w.shape[0], w[0].numel()]
        channel = [True, True, False, False] if tucker else [True, True]
        adaptive = [c or p.adaptive_modes == "all" for c in channel]
        ref = [min(n)] * 2 if len(n) == 2 else n
        r_max = [resolve_rank(p.r_max, ref[k]) if channel[k] else n[k] for k in range(len(n))]
        r_min = [min(p.r_min, r_max[k]) if adaptive[k] else n[k] for k in range(len(n))]
        a_max = list(n)
        if p.memory_budget is not None:
            bias = module.bias.numel() if getattr(module, "bias", None) is not None else 0
            a_max, r_max = augmentation_caps(
                n, adaptive, r_min, r_max, w.numel() + bias, p.memory_budget, bias, tied=len(n) == 2
            )
        ranks = []
        for k in range(len(n)):
            if not adaptive[k]:
                ranks.append(n[k])
            elif p.initial_rank == "full":
                ranks.append(r_max[k])
            else:
                ranks.append(min(max(resolve_rank(p.initial_rank, ref[k]), r_min[k]), r_max[k]))
        return ranks, adaptive, r_min, r_max, a_max

    def model_problems(self, model: nn.Module) -> list[tuple[str, str]]:
        return pattern_problems(model, self.params.layers)

    def prepare(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        modules = dict(model.named_modules())
        for name in select_layers(model, self.params.layers):
            module = modules[name]
            ranks, adaptive, r_min, r_max, a_max = self.layer_config(module)
            layer = DLRTLayer.from_module(
                module, self.tucker, ranks, adaptive, r_min, r_max, self.initialization, generator, a_max
            )
            replace_module(model, name, layer)
        self._layers_of = None
        return model

    def tucker_layers(self, model: nn.Module) -> list[DLRTLayer]:
        if self._layers_of != id(model):
            self._layers = [m for m in model.modules() if isinstance(m, DLRTLayer)]
            self._layers_of = id(model)
        return self._layers

    def before_training(self, model: nn.Module, session: Session) -> None:
        """Learns the epoch's length: ``tau_warmup_epochs`` in batches."""
        p: DLRTParams = self.params  # type: ignore[assignment]
        if p.tau_warmup_epochs:
            self._warmup = round(p.tau_warmup_epochs * session.steps_per_epoch)

    def make_optimizer(self, model: nn.Module, training: Any) -> torch.optim.Optimizer:
        """The suite's optimizer over every parameter; the cores form their own group with ``core_momentum`` (SGD)
        as their momentum and ``frobenius_decay`` as their weight decay, where given."""
        p: DLRTParams = self.params  # type: ignore[assignment]
        group: dict[str, Any] = {}
        if p.core_momentum is not None and training.optimizer == "sgd":
            group.update(momentum=p.core_momentum, nesterov=training.nesterov and p.core_momentum > 0)
        if p.frobenius_decay is not None:
            group.update(weight_decay=p.frobenius_decay)
        if not group:
            return super().make_optimizer(model, training)
        cores = [layer.core for layer in self.tucker_layers(model)]
        ids = {id(c) for c in cores}
        rest = [q for q in model.parameters() if q.requires_grad and id(q) not in ids]
        return build_optimizer([{"params": rest}, {"params": cores, **group}], training)

    # -- one step ------------------------------------------------------------------------------------------------
    def train_step(self, model, optimizer, batch, loss_fn) -> torch.Tensor:
        """The cores are ordinary parameters of the torch optimizer (the suite's SGD, Adam or AdamW): the core
        step is ``optimizer.step()``; the basis step and truncation replace them, carrying their state.

        In bf16 or fp16 (``self.precision``) only the forward pass and the loss run in that precision: the basis
        step, the core's gradient and truncation take the captured tensors to float32 and run with autocast off
        (``DLRTLayer.basis_step``, ``DLRTLayer.truncate``); in fp16 the output gradients are unscaled first, and a
        step whose output gradients overflowed is skipped whole (bases unchanged, the scale lowered)."""
        x, y = batch
        layers = self.tucker_layers(model)
        amp = self.precision
        optimizer.zero_grad(set_to_none=True)
        if self.schedule.basis_step and layers:
            # one forward/backward serves the basis step and the core step: the output gradients of the
            # factorized layers and the gradients of every other parameter (the cores' come from basis_step)
            with Capture(layers) as cap:
                loss = loss_fn(model(x), y)
            cores = {id(layer.core) for layer in layers}
            others = [q for g in optimizer.param_groups for q in g["params"] if q.requires_grad and id(q) not in cores]
            with amp.full():
                cap.backward(amp.scale(loss), others)
            g_outs = amp.unscaled(cap.grad_outputs)
            if amp.scaling and not all_finite(g_outs):
                amp.skip_step()
                for layer in layers:
                    layer.contracted = None
                return loss.detach()
            amp.unscale_(optimizer)  # the other parameters' gradients; the cores' are set unscaled below
            lr = optimizer.param_groups[0]["lr"]
            for layer, x_in, g_out in zip(layers, cap.inputs, g_outs, strict=True):
                layer.basis_step(x_in, g_out, lr, optimizer)  # sets the core's gradient at the augmented bases
        else:  # a core-only step at the current bases (amortized: augmented; periodic: truncated)
            loss = loss_fn(model(x), y)
            amp.backward(loss)
        amp.step(optimizer)
        self._steps += 1
        if self.schedule.advance():
            self.truncate(layers, optimizer)
        return loss.detach()

    def compile(self, model: nn.Module) -> str | None:
        """Not compiled: the factorized layers change shape on every augmentation and truncation, so a compiled
        forward would compile again at each new rank, and the capturing forward keeps the contracted input as a
        side effect (``DLRTLayer.contracted``) that a compiled graph would not."""
        return (
            f"{self.name}: forward not compiled (its layers change shape at every augmentation and truncation, each "
            "shape a new compilation; the capturing forward keeps intermediates as side effects); ran eagerly"
        )

    def truncate(self, layers: list[DLRTLayer], optimizer: torch.optim.Optimizer | None = None) -> None:
        p: DLRTParams = self.params  # type: ignore[assignment]
        tau = p.tau * min(1.0, self._steps / self._warmup) if self._warmup else p.tau
        for layer in layers:
            layer.truncate(tau, optimizer)

    def end_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        if self.schedule.close():
            self.truncate(self.tucker_layers(model), optimizer)

    def state_dict(self) -> dict[str, Any]:
        """The batches taken (tau's warm-up) and the truncation cycle's phase (0 after an epoch: the end of an
        epoch closes the cycle)."""
        return {"steps": self._steps, "phase": self.schedule.phase, "warmup": self._warmup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._steps = int(state["steps"])
        self.schedule.phase = int(state["phase"])
        self._warmup = int(state.get("warmup", self._warmup))


@register_method("dlrt")
class DLRTMethod(_DLRTBase):
    """Matrix DLRT: rank-adaptive U S V^T layers (conv kernels as (out, in*kh*kw)) trained by basis/core steps."""

    tucker = False


@register_method("tdlrt")
class TDLRTMethod(_DLRTBase):
    """TDLRT: rank-adaptive Tucker conv kernels (and U S V^T linear layers) trained by basis/core steps."""

    tucker = True
