"""The engine's hooks before the loop: ``Method.before_training`` with its session, and ``Method.model_problems``
checked by the suite."""

from __future__ import annotations

import pytest
import torch

from harness import METHODS, Method
from harness.suite import SuiteError, expand, parse_suite
from harness.train import prepare_run, train_run
from tests.conftest import tiny_suite


class DrawsBatches(Method):
    """Full training that draws batches and evaluates before the loop, changing nothing."""

    def before_training(self, model, session):
        self.drawn = session.batches(3)
        self.acc = session.evaluate(model)


class RefusesEveryModel(Method):
    """A method whose parameter never fits."""

    def model_problems(self, model):
        return [("width", f"does not fit a model of {sum(p.numel() for p in model.parameters())} parameters")]


@pytest.fixture
def registered():
    for name, cls in (("draws_batches", DrawsBatches), ("refuses_every_model", RefusesEveryModel)):
        METHODS.add(name, cls)
    yield
    for name in ("draws_batches", "refuses_every_model"):
        METHODS._entries.pop(name, None)


def _config(method: str) -> dict:
    return expand(parse_suite(tiny_suite(methods=[method], budget={"train_subset": 512, "test_subset": 200})))[0].config


def test_batches_before_the_loop_leave_the_run_as_it_was(registered):
    plain = train_run(_config("full"), device="cpu")
    drawn = train_run(_config("draws_batches"), device="cpu")
    assert drawn["final_acc"] == plain["final_acc"] and drawn["final_train_loss"] == plain["final_train_loss"]
    assert drawn["total_epochs"] == drawn["epochs"] == 1 and drawn["total_steps"] == 512 // 64
    assert drawn["before_training"] == [] and drawn["total_train_seconds"] >= drawn["train_seconds"]


def test_session_batches_are_a_seeded_shuffle_of_the_training_set(registered):
    run = prepare_run(_config("draws_batches"), device="cpu")
    first, again = run.session.batches(3), run.session.batches(3)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert [tuple(x.shape) for x, _ in first] == [(64, 1, 28, 28)] * 3
    rows = torch.cat([x.flatten(1) for x, _ in first])
    assert len(torch.unique(rows, dim=0)) == 192  # three disjoint batches
    assert not torch.equal(first[0][0], run.data.train_x[:64])  # shuffled
    with pytest.raises(ValueError, match="the training set has 512 images"):
        run.session.batches(9)


def test_model_problems_exit_before_training_with_the_key_path(registered):
    with pytest.raises(SuiteError) as err:
        parse_suite(tiny_suite(methods=["full", "refuses_every_model"]))
    assert err.value.problems == [
        ("methods[1].params.width", "model 'lenet5': does not fit a model of 431080 parameters")
    ]
