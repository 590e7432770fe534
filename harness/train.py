"""Training one run: data on the device, the method's step in a plain loop, metrics at the end."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.checkpoint import Checkpoints, RunState, restore_model, restore_rng, snapshot
from harness.config import EpochRecord, Training, Validation, run_id, stored_settings
from harness.data import TensorData, crop_flip, load_tensors
from harness.execution import batch_layout, eager, is_convolutional, to_channels_last, use_channels_last
from harness.layers import parameter_summary
from harness.memory import PeakMemory, run_tensors
from harness.method import LossFn, Method
from harness.model_file import model_bytes
from harness.models import create_model
from harness.optim import lr_factor, set_lr
from harness.precision import Precision
from harness.pretrained import load_pretrained
from harness.registry import DATASETS, METHODS
from harness.session import Session


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class UnscaledStepError(RuntimeError):
    """A float16 run of a method whose step does not scale its loss (``Method.precision``)."""


class Callbacks:
    """What the loop reports while it trains (progress displays and the store listen)."""

    def run_start(self, epochs: int, steps_per_epoch: int) -> None:
        """A training pass starts (again for each pass a method trains before the loop, harness.session)."""

    def step(self, n: int = 1) -> None: ...
    def epoch_end(self, row: dict[str, Any]) -> None: ...
    def model_file(self, data: bytes) -> None: ...  # the trained model's file (harness.model_file), to keep

    def results_dir(self) -> Path | None:
        """The results directory the run's files live in (``RESULTS/runs/<id>/``: its checkpoint; a pretrained
        source's model file); None: the run keeps no checkpoint."""
        return None

    def resumed(self, rows: list[dict[str, Any]]) -> None:
        """The run resumes from its checkpoint after ``len(rows)`` epochs: their records, given again
        (default: to :meth:`epoch_end`, one by one)."""
        for row in rows:
            self.epoch_end(row)

    def notice(self, text: str) -> None:
        """Something about the run its user should read (a checkpoint refused)."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use device: auto or cpu")
    return torch.device(device)


def inference_flops(model: nn.Module, shape: tuple[int, ...], device: torch.device) -> dict[str, int]:
    """FLOPs of one forward pass of one sample (``torch.utils.flop_counter``, a multiply-add counts 2): ``flops``
    as computed (dense), and ``flops_sparse``, the theoretical count that skips multiplications by zero weights:
    each conv/linear module's FLOPs scaled by the fraction of its weight that is nonzero."""
    from torch.utils.flop_counter import FlopCounterMode

    skipped = [0.0]

    def measure(module: nn.Module, counter: FlopCounterMode) -> list[Any]:
        before: list[int] = []

        def pre(*_: Any) -> None:
            before.append(counter.get_total_flops())

        def post(*_: Any) -> None:
            weight = module.weight
            assert isinstance(weight, torch.Tensor)
            density = int(torch.count_nonzero(weight.detach())) / max(weight.numel(), 1)
            skipped[0] += (counter.get_total_flops() - before.pop()) * (1.0 - density)

        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    was_training = model.training
    model.eval()
    with eager(), torch.no_grad(), FlopCounterMode(display=False) as counter:
        handles = [h for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear) for h in measure(m, counter)]
        try:
            model(torch.zeros((1, *shape), device=device))
        finally:
            for h in handles:
                h.remove()
    model.train(was_training)
    total = int(counter.get_total_flops())
    return {"flops": total, "flops_sparse": total - round(skipped[0])}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    precision: Precision | None = None,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Test accuracy and mean cross-entropy, the forward passes in the run's precision and layout."""
    model.eval()
    correct, loss = 0, 0.0
    autocast = (precision or Precision()).autocast
    for i in range(0, len(x), batch_size):
        with autocast():
            out = model(batch_layout(x[i : i + batch_size], channels_last))
        correct += (out.argmax(1) == y[i : i + batch_size]).sum().item()
        loss += nn.functional.cross_entropy(out.float(), y[i : i + batch_size], reduction="sum").item()
    model.train()
    return correct / len(x), loss / len(x)


def build(config: dict[str, Any], device: torch.device, results: Path | None = None) -> tuple[Method, nn.Module, int]:
    """The method and its prepared model for a run config, plus the dense model's parameter count. A run that
    starts from a trained model (``pretrained``) has its weights loaded before ``prepare``, from the results
    directory ``results`` (:mod:`harness.pretrained`)."""
    spec = DATASETS.get(config["dataset"])
    shape = dict(in_channels=spec.channels, num_classes=spec.num_classes, image_size=spec.image_size)
    torch.manual_seed(config["seed"])
    generator = torch.Generator().manual_seed(config["seed"])
    model = create_model(config["model"], **shape)
    full_params = sum(p.numel() for p in model.parameters())
    if config.get("pretrained"):
        load_pretrained(model, config, results)
    cls = METHODS.get(config["method"])
    method: Method = cls(stored_settings(cls.Params, config["params"]), config["initialization"])
    model = method.prepare(model, generator).to(device)
    return method, model, full_params


def convolutional(config: dict[str, Any]) -> bool:
    """Whether the run's dense architecture holds a 2-d convolution (built on the meta device, no memory; on the
    CPU for a model that cannot be built there)."""
    spec = DATASETS.get(config["dataset"])
    shape = dict(in_channels=spec.channels, num_classes=spec.num_classes, image_size=spec.image_size)
    try:
        with torch.device("meta"):
            return is_convolutional(create_model(config["model"], **shape))
    except Exception:
        return is_convolutional(create_model(config["model"], **shape))


class _Untracked:
    """The memory tracker of a training pass whose memory is not measured (passes before the loop)."""

    def step(self, index: int, steps: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def epoch_seconds(self, elapsed: float, loop: float, steps: int) -> float:
        return elapsed


@dataclass
class Loop:
    """One run's training epoch: the method's step over a shuffled pass of the data, under the suite's settings.
    The loop of :func:`train_run` and every pass a method trains before it (:mod:`harness.session`) use it."""

    method: Method
    data: TensorData
    training: Training
    loss_fn: LossFn
    augment: bool
    device: torch.device
    steps: int
    check_every: int
    callbacks: Callbacks
    precision: Precision = field(default_factory=Precision)  # training.precision: autocast around each step
    channels_last: bool = False  # batches in channels-last layout

    def epoch(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        epoch: int,
        gen: torch.Generator,
        mem: PeakMemory | _Untracked,
        on_step: Callable[[int], None] | None = None,
        done: int = 0,
    ) -> tuple[float, float, float]:
        """Train one epoch; returns its mean train loss, seconds (training only) and learning rate. ``on_step(k)``
        is called after each step with the steps taken so far (``done`` before this epoch)."""
        t = self.training
        lr = set_lr(optimizer, t.lr, lr_factor(t.schedule, epoch, t.epochs, t.warmup_epochs, t.step_size, t.gamma))
        model.train()
        t0 = time.perf_counter()
        n, bs, steps = len(self.data.train_x), t.batch_size, self.steps
        order = torch.randperm(n, device=self.device, generator=gen)
        total = torch.zeros((), device=self.device)
        for s in range(steps):
            with mem.step(s, steps):  # on CPU a few sampled steps are tracked (and timed apart)
                idx = order[s * bs : (s + 1) * bs]
                x = self.data.train_x[idx]
                if self.augment:
                    x = crop_flip(x, gen)
                batch = (batch_layout(x, self.channels_last), self.data.train_y[idx])
                with self.precision.autocast():
                    try:
                        total += self.method.train_step(model, optimizer, batch, self.loss_fn)
                    except (RuntimeError, ValueError) as exc:  # a step that fails on NaN/inf (e.g. an eigh)
                        if isinstance(exc, DivergedError) or all_finite_state(model):
                            raise
                        raise DivergedError(_diverged_parameters(epoch, s, t, exc)) from exc
            if self.precision.scaling and not self.precision.scaled_backwards:
                raise UnscaledStepError(_unscaled(self.method.name))
            if (s + 1) % self.check_every == 0 and not torch.isfinite(total):
                raise DivergedError(_diverged(epoch, s, t))
            self.callbacks.step()
            if on_step is not None:
                on_step(done + s + 1)
        loop = time.perf_counter() - t0
        self.method.end_epoch(model, optimizer, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = mem.epoch_seconds(time.perf_counter() - t0, loop, steps)
        train_loss = (total / steps).item()
        if not math.isfinite(train_loss):
            raise DivergedError(_diverged(epoch, steps - 1, t))
        return train_loss, seconds, lr

    def train_pass(
        self, model: nn.Module, seed: int, on_step: Callable[[int], None] | None = None
    ) -> tuple[int, int, float, float]:
        """One pass of the whole schedule with a fresh optimizer (memory not measured, no epoch stored): its
        epochs, steps, seconds and final train loss."""
        optimizer = self.method.make_optimizer(model, self.training)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        epochs = self.training.epochs
        self.callbacks.run_start(epochs, self.steps)
        seconds, loss = 0.0, math.nan
        for epoch in range(epochs):
            loss, sec, _ = self.epoch(model, optimizer, epoch, gen, _Untracked(), on_step, epoch * self.steps)
            seconds += sec
        return epochs, epochs * self.steps, seconds, loss


@dataclass
class Prepared:
    """A run ready for its loop: the method, its prepared model, the loop and the session of ``before_training``."""

    method: Method
    model: nn.Module
    full_params: int
    data: TensorData
    training: Training
    loop: Loop
    session: Session


def held_out(data: TensorData) -> tuple[torch.Tensor, torch.Tensor]:
    """What a method may evaluate on before the loop: the validation split, or the test set where a run of the
    earlier protocol has none (recorded only; nothing may be chosen on it)."""
    if data.val_x is not None and data.val_y is not None:
        return data.val_x, data.val_y
    return data.test_x, data.test_y


def prepare_run(
    config: dict[str, Any],
    data_root: Path | None = None,
    device: str = "auto",
    callbacks: Callbacks | None = None,
    download: bool = True,
    check_every: int = 25,
) -> Prepared:
    """Load a run's data, build its method and prepared model, and the loop and session it trains with (before
    ``Method.before_training``)."""
    cb = callbacks or Callbacks()
    dev = resolve_device(device)
    training = stored_settings(Training, config["training"])
    precision = Precision.for_run(training.precision, dev)  # an unsupported one fails the run before anything
    budget = config.get("budget") or {}
    data = load_tensors(
        config["dataset"],
        data_root,
        dev,
        budget.get("train_subset"),
        budget.get("test_subset"),
        download=download,
        validation=Validation.model_validate(config.get("validation")),
    )
    method, model, full_params = build(config, dev, cb.results_dir())
    method.precision = precision
    auto_on_cuda = training.channels_last == "auto" and dev.type == "cuda"  # only then does the model decide
    channels_last = use_channels_last(training.channels_last, dev, auto_on_cuda and convolutional(config))
    if channels_last:
        model = to_channels_last(model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=training.label_smoothing)
    augment = training.augmentation == "crop_flip" or (training.augmentation == "auto" and data.augment)
    n, bs = len(data.train_x), training.batch_size
    steps = n // bs if n >= bs else 1  # drop the last partial batch (BatchNorm, equal steps)
    loop = Loop(method, data, training, loss_fn, augment, dev, steps, check_every, cb, precision, channels_last)
    session = Session(
        training,
        loss_fn,
        data.train_x,
        data.train_y,
        config["seed"],
        steps,
        lambda m, on_step: loop.train_pass(m, config["seed"], on_step),
        lambda m: evaluate(m, *held_out(data), training.eval_batch_size, precision, channels_last)[0],
        "validation" if data.val_x is not None else "test",
    )
    return Prepared(method, model, full_params, data, training, loop, session)


def train_run(
    config: dict[str, Any],
    data_root: Path | None = None,
    device: str = "auto",
    callbacks: Callbacks | None = None,
    download: bool = True,
    check_every: int = 25,
) -> dict[str, Any]:
    """Train one resolved run config; returns the run's metrics. Raises on failure or divergence.

    Where the callbacks name a results directory, the run's state is saved after every epoch and a run that
    finds its checkpoint there resumes from it (:mod:`harness.checkpoint`)."""
    cb = callbacks or Callbacks()
    checkpoints = Checkpoints.of(cb.results_dir(), run_id(config))
    resume, refused = checkpoints.load()
    if refused:
        cb.notice(refused)
    run = prepare_run(config, data_root, device, cb, download, check_every)
    if resume is not None:
        try:
            restore_model(resume, run.method, run.model)
            run.method.load_state_dict(resume.method)
        except Exception as exc:  # a checkpoint this version cannot load: start again, say why
            cb.notice(f"checkpoint {checkpoints.path} does not fit the run ({exc}): starting from epoch 0")
            resume, run = None, prepare_run(config, data_root, device, cb, download, check_every)
    method, model, data, training, loop, session = run.method, run.model, run.data, run.training, run.loop, run.session
    dev, steps, n = loop.device, loop.steps, len(data.train_x)
    if resume is None:
        t0 = time.perf_counter()
        method.before_training(model, session)
        before_seconds = time.perf_counter() - t0 - session.excluded_seconds
        start = start_metrics(config, model, data, training)
    else:
        session.load_state_dict(resume.session)
        before_seconds, start = float(resume.session["seconds"]), dict(resume.extra)
    # compiled for the loop, after what the method did before it (which may add hooks, e.g. pruning masks)
    notes = [note] if training.compile and (note := method.compile(model)) else []
    optimizer = method.make_optimizer(model, training)
    gen = torch.Generator(device=dev).manual_seed(config["seed"])
    epochs: list[dict[str, Any]] = []
    selected: bytes | None = None  # with a validation split: the model of the epoch best on validation so far
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        restore_rng(resume.rng, gen)
        epochs, selected = list(resume.rows), resume.selected_bytes

    def state(peak: int) -> RunState:
        sess = {**session.state_dict(), "seconds": before_seconds}
        return snapshot(checkpoints.run_id, model, optimizer, method, gen, epochs, sess, selected, peak, start)

    if resume is None and session.steps:
        checkpoints.save(state(0))  # what the method trained before the loop (IMP's rounds) is not trained again
    cb.run_start(training.epochs, steps)
    if resume is not None:
        cb.resumed(list(epochs))
    with PeakMemory(dev, lambda: run_tensors(model, optimizer)) as mem:
        if resume is not None:
            mem.carry(resume.peak_bytes)
        for epoch in range(len(epochs), training.epochs):
            train_loss, seconds, lr = loop.epoch(model, optimizer, epoch, gen, mem)
            with mem.excluded():
                acc, test_loss = evaluate(
                    model, data.test_x, data.test_y, training.eval_batch_size, loop.precision, loop.channels_last
                )
                val_acc, val_loss = (
                    evaluate(
                        model, data.val_x, data.val_y, training.eval_batch_size, loop.precision, loop.channels_last
                    )
                    if data.val_x is not None and data.val_y is not None
                    else (None, None)
                )
            stats = [s.to_dict() for s in method.layer_stats(model)]
            row = EpochRecord(epoch, train_loss, acc, test_loss, seconds, lr, stats, val_acc, val_loss).to_dict()
            with mem.excluded():
                if val_acc is not None and val_acc > max((e["val_acc"] for e in epochs), default=-1.0):
                    selected = model_bytes(model, config)
                epochs.append(row)
                checkpoints.save(state(mem.peak_bytes))  # before the store has the epoch: never behind it
            cb.epoch_end(row)
    layers = method.layer_stats(model)
    train_seconds = sum(e["seconds"] for e in epochs)
    metrics: dict[str, Any] = {
        "final_acc": epochs[-1]["test_acc"],
        "best_acc": max(e["test_acc"] for e in epochs),
        **selected_epoch(epochs),
        "final_train_loss": epochs[-1]["train_loss"],
        "final_test_loss": epochs[-1]["test_loss"],
        "epoch_seconds": train_seconds / len(epochs),
        "train_seconds": train_seconds,
        "epochs": len(epochs),
        # the run's whole training cost: the loop and whatever the method did before it (harness.session)
        "total_epochs": len(epochs) + session.epochs,
        "total_steps": len(epochs) * steps + session.steps,
        "total_train_seconds": train_seconds + before_seconds,
        "before_training": session.records,
        **start,
        **inference_flops(model, tuple(data.train_x.shape[1:]), dev),
        "peak_memory_mb": mem.peak_mb,
        "device": str(dev),
        "channels_last": loop.channels_last,
        "compiled": training.compile and not notes,
        "train_size": n,
        "val_size": 0 if data.val_x is None else len(data.val_x),
        "test_size": len(data.test_x),
        "ranks": {s.name: s.ranks for s in layers if s.ranks is not None},
        **parameter_summary(model, layers, run.full_params),
    }
    if checkpoints.path is not None:
        metrics["checkpoint_bytes"] = checkpoints.largest  # the largest checkpoint the run wrote (disk use)
    if resume is not None:
        metrics["resumed_from"] = resume.epochs_done
    # the model a run is judged by (the epoch best on validation, else the last), kept by the callbacks in the run's
    # results directory; its size reported
    saved = selected if selected is not None else model_bytes(model, config)
    metrics["model_bytes"] = len(saved)
    metrics["model_epoch"] = metrics.get("best_epoch", epochs[-1]["epoch"])
    cb.model_file(saved)
    if notes:
        metrics["notes"] = notes
    return metrics


def start_metrics(config: dict[str, Any], model: nn.Module, data: TensorData, training: Training) -> dict[str, Any]:
    """For a run that starts from a trained model (``pretrained``): the accuracy of the model its loop starts from,
    right after the method compressed it (``start_acc`` on the test set, ``start_val_acc`` on the validation
    split); nothing for a run from scratch."""
    if not config.get("pretrained"):
        return {}
    out: dict[str, Any] = {"start_acc": evaluate(model, data.test_x, data.test_y, training.eval_batch_size)[0]}
    if data.val_x is not None and data.val_y is not None:
        out["start_val_acc"] = evaluate(model, data.val_x, data.val_y, training.eval_batch_size)[0]
    return out


def selected_epoch(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """The epoch a run is judged by, chosen on validation alone: the first with the highest validation accuracy.

    Gives ``best_epoch`` (counted from 0, as stored), ``best_val_acc`` and ``test_acc_at_best_val``; nothing for a
    run without a validation split (it is judged by its final epoch; the test set never selects one)."""
    scored = [(e["val_acc"], -i) for i, e in enumerate(epochs) if e.get("val_acc") is not None]
    if not scored:
        return {}
    best = -max(scored)[1]
    return {
        "best_epoch": epochs[best]["epoch"],
        "best_val_acc": epochs[best]["val_acc"],
        "test_acc_at_best_val": epochs[best]["test_acc"],
        "final_val_acc": epochs[-1]["val_acc"],
    }


def _unscaled(method: str) -> str:
    return (
        f"precision fp16 needs the loss scaled, and method {method!r} takes its backward pass or optimizer step "
        "without self.precision (harness.Method.precision: backward(loss), step(optimizer)); use precision bf16, "
        "or have the method's train_step call them"
    )


def all_finite_state(model: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``model`` is finite."""
    tensors = [*model.parameters(), *model.buffers()]
    return all(bool(torch.isfinite(x).all()) for x in tensors if x.is_floating_point())


def _diverged_parameters(epoch: int, step: int, training: Training, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return (
        f"parameters became NaN/inf in epoch {epoch + 1} at step {step + 1} (lr {training.lr}), and the method's "
        f"step failed on them ({type(exc).__name__}: {first}); lower the learning rate or add warmup"
    )


def _diverged(epoch: int, step: int, training: Training) -> str:
    return (
        f"training loss became NaN/inf in epoch {epoch + 1} by step {step + 1} "
        f"(lr {training.lr}); lower the learning rate or add warmup"
    )
