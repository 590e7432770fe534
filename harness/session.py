"""What a method may use before the training loop: the run's training data and the engine's own training pass.

Some methods decide their model from data before they train it: SNIP and GraSP score every connection on a batch
or a few at initialization, IMP trains the whole schedule several times and prunes between the passes. The engine
calls ``Method.before_training(model, session)`` once, after ``prepare`` and before its loop, with a
:class:`Session` of the run. Through it a method draws training batches, evaluates, and trains full passes of the
run's schedule with the engine's own epoch (same optimizer settings, learning-rate schedule, augmentation and
divergence check as the loop, through the method's ``make_optimizer`` and ``train_step``).

Everything done there counts in the run's total training cost (``total_epochs``, ``total_steps``,
``total_train_seconds``; evaluations apart), and each pass trained through the session is recorded in the run's
metrics (``before_training``). The loop that follows is the run's own training: its epochs are the run's epochs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.method import Batch, LossFn

#: Trains one pass of the run's schedule: ``(model, on_step) -> (epochs, steps, seconds, final train loss)``.
TrainPass = Callable[[nn.Module, Callable[[int], None] | None], tuple[int, int, float, float]]


class Session:
    """The run as a method sees it before the loop (see the module docstring).

    ``training``: the run's training settings; ``loss_fn``: the loss the loop uses; ``steps_per_epoch``: optimizer
    steps in one epoch; ``records``: one dict per pass trained here (a method may add keys to the dict
    :meth:`train` returns: it is the one recorded)."""

    def __init__(
        self,
        training: Any,
        loss_fn: LossFn,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        seed: int,
        steps_per_epoch: int,
        train_pass: TrainPass,
        evaluate: Callable[[nn.Module], float],
        evaluates_on: str = "test",
    ):
        self.training, self.loss_fn, self.steps_per_epoch = training, loss_fn, steps_per_epoch
        self._x, self._y, self._seed = train_x, train_y, seed
        self._train_pass, self._evaluate = train_pass, evaluate
        self.evaluates_on = evaluates_on  # "validation" where the run has a split, else "test" (recorded only)
        self.records: list[dict[str, Any]] = []
        self.epochs = 0  # trained here, in all
        self.steps = 0
        self.excluded_seconds = 0.0  # evaluations: not training cost

    def batches(self, n: int, batch_size: int | None = None) -> list[Batch]:
        """The first ``n`` batches (the run's batch size unless given) of a shuffle of the training set seeded
        by the run's seed, without augmentation. The shuffle has its own generator: the loop's data order does
        not depend on whether a method drew batches here."""
        bs = batch_size or self.training.batch_size
        if n * bs > len(self._x):
            raise ValueError(f"asked for {n} batches of {bs} images; the training set has {len(self._x)} images")
        gen = torch.Generator(device=self._x.device).manual_seed(self._seed)
        order = torch.randperm(len(self._x), device=self._x.device, generator=gen)
        return [(self._x[order[i * bs : (i + 1) * bs]], self._y[order[i * bs : (i + 1) * bs]]) for i in range(n)]

    def evaluate(self, model: nn.Module) -> float:
        """Accuracy of ``model`` on the run's validation split (on the test set for a run of the earlier protocol,
        which has none: recorded, never to choose anything); its time is not training cost."""
        t0 = time.perf_counter()
        try:
            return self._evaluate(model)
        finally:
            self.excluded_seconds += time.perf_counter() - t0

    def train(self, model: nn.Module, name: str, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Train ``model`` for one pass of the run's whole schedule (``training.epochs`` epochs, a fresh optimizer
        from the method's ``make_optimizer``); ``on_step(k)`` is called after the k-th step of the pass (k from 1)
        and once with k = 0 before the first. Returns the pass's record: name, epochs, steps, seconds, final train
        loss and held-out accuracy (``val_acc``, or ``test_acc`` without a validation split)."""
        if on_step is not None:
            on_step(0)
        epochs, steps, seconds, loss = self._train_pass(model, on_step)
        self.epochs += epochs
        self.steps += steps
        record = {"name": name, "epochs": epochs, "steps": steps, "seconds": seconds, "train_loss": loss}
        record["val_acc" if self.evaluates_on == "validation" else "test_acc"] = self.evaluate(model)
        self.records.append(record)
        return record

    def state_dict(self) -> dict[str, Any]:
        """What the session holds after ``before_training`` (its passes' records and counts), for a checkpoint
        (:mod:`harness.checkpoint`): a resumed run does not train them again."""
        return {"records": self.records, "epochs": self.epochs, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` gave."""
        self.records = list(state["records"])
        self.epochs, self.steps = int(state["epochs"]), int(state["steps"])
