"""The pruning methods snip, grasp and imp: exact sparsity, masks that hold, scores against a hand computation,
IMP's rewinding and cost, bad input, a killed run, and that each method trains."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

from harness import METHODS, create_model
from harness.runner import Reporter, execute, plan
from harness.store import Store
from harness.suite import expand, parse_suite
from harness.train import prepare_run, train_run
from harness_methods.pruning import (
    GraSPMethod,
    SNIPMethod,
    grasp_scores,
    load_pruned_state,
    make_permanent,
    prunable,
    removal_count,
    snip_scores,
)
from harness_methods.pruning.masks import weight, zeros
from tests.conftest import cli, tiny_suite

# LeNet5 on 28x28 images: conv1 "0" (20x1x5x5), conv2 "3" (50x20x5x5), fc1 "7" (500x800), fc2 "9" (10x500)
WEIGHTS = {"0": 500, "3": 25_000, "7": 400_000, "9": 5_000}


def config(method: str, params: dict, training: dict | None = None, budget: dict | None = None, **over) -> dict:
    """The resolved config of one run of ``method`` on the embedded MNIST subset."""
    data = {
        "name": "t",
        "datasets": ["mnist_subset"],
        "models": ["lenet5"],
        "methods": [{"name": method, "params": {k: [v] if isinstance(v, list) else v for k, v in params.items()}}],
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.05, **(training or {})},
        "budget": budget or {"train_subset": 256, "test_subset": 200},
        **over,
    }
    return expand(parse_suite(data))[0].config


def pruned(method: str, params: dict, **kw):
    """A prepared run after its method chose the masks (``before_training``)."""
    run = prepare_run(config(method, params, **kw), device="cpu")
    run.method.before_training(run.model, run.session)
    return run


# -- exact sparsity per selection ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["snip", "grasp", "imp"])
@pytest.mark.parametrize(
    "layers, selected, sparsity, removed",
    [
        (None, ["3", "7"], 0.123456, 52_469),  # the default selection: 425,000 weights, ceil(52,468.8)
        (["*"], ["0", "3", "7", "9"], 0.9, 387_450),  # all four layers: 430,500 weights
        (["3"], ["3"], 0.95, 23_750),
        (["[09]"], ["0", "9"], 0.5, 2_750),
        (None, ["3", "7"], 0.0, 0),
    ],
)
def test_the_target_sparsity_is_met_exactly_over_the_selected_layers(method, layers, selected, sparsity, removed):
    params = {"sparsity": sparsity, **({"layers": layers} if layers is not None else {})}
    if method == "imp":
        params["rounds"] = 2
    run = pruned(method, params)
    total = sum(WEIGHTS[n] for n in selected)
    assert removal_count(sparsity, total) == removed
    modules = dict(run.model.named_modules())
    targets = prunable(run.model, layers)
    assert [modules[n] for n in selected] == [m for m, _ in targets]
    assert zeros(targets) == removed
    for name in WEIGHTS:
        w = weight((modules[name], "weight"))
        if name in selected:
            assert int((w == 0).sum()) == int((modules[name].weight_mask == 0).sum())
        else:
            assert not hasattr(modules[name], "weight_mask") and int((w == 0).sum()) == 0
    run.model(run.data.test_x[:2])  # a forward pass refreshes the layers' masked weights
    stats = {s.name: s for s in run.method.layer_stats(run.model)}  # the engine counts the same zeros
    assert sum(s.dense_params - s.params for s in stats.values()) == removed


# -- masks hold through training and loading ---------------------------------------------------------------------


def test_pruned_weights_stay_exactly_zero_through_momentum_weight_decay_and_loading():
    run = pruned("snip", {"sparsity": 0.9}, training={"momentum": 0.9, "weight_decay": 0.01, "lr": 0.05})
    model, method = run.model, run.method
    targets = prunable(model, None)
    masks = [m.weight_mask.clone() for m, _ in targets]
    orig_before = [m.weight_orig.detach().clone() for m, _ in targets]
    optimizer = method.make_optimizer(model, run.training)
    assert optimizer.param_groups[0]["weight_decay"] == 0.01 and optimizer.param_groups[0]["momentum"] == 0.9
    for batch in run.session.batches(4):
        method.train_step(model, optimizer, batch, run.session.loss_fn)
    x = run.data.test_x[:16]
    out = model(x)  # refreshes weight = weight_orig * weight_mask
    for (m, _), mask, before in zip(targets, masks, orig_before, strict=True):
        assert torch.equal(m.weight_mask, mask)
        assert torch.all(m.weight[mask == 0] == 0)  # exactly zero
        moved = m.weight_orig.detach()[mask == 0] - before[mask == 0]
        assert moved.abs().max() > 0  # weight decay and momentum did act on the hidden entries
        assert torch.all(m.weight[mask == 1] != 0)

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    fresh = create_model("lenet5")  # dense, another initialization
    load_pruned_state(fresh, state)
    assert torch.equal(fresh(x), out)
    fresh_targets = prunable(fresh, None)
    assert zeros(fresh_targets) == removal_count(0.9, 425_000)
    assert all(torch.all(m.weight[mask == 0] == 0) for (m, _), mask in zip(fresh_targets, masks, strict=True))

    make_permanent(model)  # the plain dense state dict, zeros in place
    plain = create_model("lenet5")
    plain.load_state_dict(model.state_dict())
    assert sum(int((m.weight == 0).sum()) for m, _ in prunable(plain, None)) == removal_count(0.9, 425_000)
    assert torch.allclose(plain(x), out, atol=1e-6)


# -- scores against a hand computation ---------------------------------------------------------------------------


def _tiny() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Linear(3, 4) -> tanh -> Linear(4, 2) in float64, and two batches of 5."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(4)
    batches = [(torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (5,), generator=g))]
    batches.append((torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (5,), generator=g)))
    return model, batches


def _hand_gradient(w1, b1, w2, b2, x, y) -> list[torch.Tensor]:
    """dL/d(w1, b1, w2, b2) of the mean cross-entropy, by the chain rule written out."""
    h = torch.tanh(x @ w1.T + b1)
    z = h @ w2.T + b2
    p = torch.softmax(z, dim=1)
    dz = (p - nn.functional.one_hot(y, 2).double()) / len(x)
    da = (dz @ w2) * (1 - h**2)
    return [da.T @ x, da.sum(0), dz.T @ h, dz.sum(0)]


def _mean_hand_gradient(theta, batches) -> list[torch.Tensor]:
    grads = [_hand_gradient(*theta, x, y) for x, y in batches]
    return [sum(g[i] for g in grads) / len(grads) for i in range(4)]


@pytest.mark.parametrize("n_batches", [1, 2])
def test_snip_and_grasp_scores_equal_a_hand_computation(n_batches):
    model, batches = _tiny()
    batches = batches[:n_batches]
    theta = [p.detach().clone() for p in model.parameters()]  # w1, b1, w2, b2
    g = _mean_hand_gradient(theta, batches)
    weights = [model[0].weight, model[2].weight]
    loss_fn = nn.CrossEntropyLoss()

    snip = SNIPMethod({"sparsity": 0.25}).ranking(model, weights, batches, loss_fn)
    assert torch.allclose(snip[0], (g[0] * theta[0]).abs(), atol=1e-14, rtol=0)
    assert torch.allclose(snip[1], (g[2] * theta[2]).abs(), atol=1e-14, rtol=0)

    # Hg by a central difference of the hand gradient along g (every parameter), then S = -w * Hg
    eps = 1e-6
    plus = _mean_hand_gradient([t + eps * d for t, d in zip(theta, g, strict=True)], batches)
    minus = _mean_hand_gradient([t - eps * d for t, d in zip(theta, g, strict=True)], batches)
    hg = [(a - b) / (2 * eps) for a, b in zip(plus, minus, strict=True)]
    grasp = GraSPMethod({"sparsity": 0.25}).ranking(model, weights, batches, loss_fn)
    scores = [-(theta[0] * hg[0]), -(theta[2] * hg[2])]
    for got, want in zip(grasp, scores, strict=True):
        assert torch.allclose(-got, want, atol=1e-9 * float(want.abs().max()), rtol=1e-6)  # ranking = -score
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), theta, strict=True))  # scoring changed nothing


@pytest.mark.parametrize("name, highest", [("snip", False), ("grasp", True)])
def test_snip_removes_the_lowest_and_grasp_the_highest_scores(name, highest):
    model, batches = _tiny()
    weights = [model[0].weight, model[2].weight]
    score = snip_scores if name == "snip" else grasp_scores
    scores = torch.cat([s.flatten() for s in score(model, weights, batches, nn.CrossEntropyLoss())])
    method = METHODS.get(name)({"sparsity": 0.25, "layers": ["*"], "score_batches": 2})
    session = SimpleNamespace(batches=lambda n: batches[:n], loss_fn=nn.CrossEntropyLoss())
    targets = prunable(model, ["*"])
    method.choose_masks(model, session, targets)
    removed = torch.cat([m.weight_mask.flatten() == 0 for m, _ in targets])
    assert int(removed.sum()) == removal_count(0.25, 20) == 5
    order = scores.argsort(descending=highest)
    assert set(order[:5].tolist()) == set(removed.nonzero().flatten().tolist())


# -- IMP: rewinding, magnitudes, rounds and cost -----------------------------------------------------------------


def _recording(session, step: int):
    """Wrap ``session.train``: the model's state at ``step`` of the first pass and at the end of every pass."""
    seen: dict[str, dict[str, torch.Tensor]] = {}
    train = session.train

    def wrapped(model, name, on_step=None):
        def both(k):
            if on_step is not None:
                on_step(k)
            if k == step and name.endswith(" 1"):
                seen["early"] = {n: t.detach().clone() for n, t in model.state_dict().items()}

        record = train(model, name, both)
        seen[name] = {n: t.detach().clone() for n, t in model.state_dict().items()}
        return record

    session.train = wrapped
    return seen


def test_imp_rewinds_the_kept_connections_to_the_saved_early_weights():
    run = prepare_run(
        config("imp", {"sparsity": 0.9, "rounds": 2, "rewind": 3}, budget={"train_subset": 512, "test_subset": 200}),
        device="cpu",
    )
    initial = {n: t.detach().clone() for n, t in run.model.state_dict().items()}
    seen = _recording(run.session, 3)
    run.method.before_training(run.model, run.session)
    early, state = seen["early"], run.model.state_dict()
    for name in ("3", "7"):  # pruned: the kept entries are exactly the saved early weights
        mask = state[f"{name}.weight_mask"]
        assert torch.equal(state[f"{name}.weight_orig"] * mask, early[f"{name}.weight"] * mask)
        assert not torch.equal(early[f"{name}.weight"], initial[f"{name}.weight"])  # step 3 is not the init
        trained = seen["imp round 2"][f"{name}.weight_orig"]
        assert not torch.equal(trained * mask, early[f"{name}.weight"] * mask)  # nor the end of a round
    for key in ("0.weight", "0.bias", "3.bias", "7.bias", "9.weight", "9.bias"):  # the rest rewound as well
        assert torch.equal(state[key], early[key])
    records = run.session.records
    assert [r["name"] for r in records] == ["imp round 1", "imp round 2"]
    assert [r["sparsity"] for r in records] == [
        removal_count(1 - 0.1**0.5, 425_000) / 425_000,
        removal_count(0.9, 425_000) / 425_000,
    ]
    assert [r["trained_sparsity"] for r in records] == [0.0, records[0]["sparsity"]]
    assert all(r["rewind_step"] == 3 and r["epochs"] == 1 and r["steps"] == 8 for r in records)


def test_imp_removes_the_smallest_trained_magnitudes_over_all_selected_layers():
    run = prepare_run(config("imp", {"sparsity": 0.8, "rounds": 1, "rewind": 0}), device="cpu")
    initial = {n: t.detach().clone() for n, t in run.model.state_dict().items()}
    seen = _recording(run.session, 0)
    run.method.before_training(run.model, run.session)
    trained = seen["imp round 1"]
    state = run.model.state_dict()
    magnitudes = torch.cat([trained[f"{n}.weight"].abs().flatten() for n in ("3", "7")])
    removed = torch.cat([state[f"{n}.weight_mask"].flatten() == 0 for n in ("3", "7")])
    assert int(removed.sum()) == removal_count(0.8, 425_000)
    assert magnitudes[removed].max() <= magnitudes[~removed].min()
    for n in ("3", "7"):  # rewind 0: the initialization (Frankle & Carbin 2019)
        mask = state[f"{n}.weight_mask"]
        assert torch.equal(state[f"{n}.weight_orig"] * mask, initial[f"{n}.weight"] * mask)


def test_imp_records_its_whole_training_cost_and_trains():
    metrics = train_run(
        config(
            "imp",
            {"sparsity": 0.9, "rounds": 2},
            training={"epochs": 2},
            budget={"train_subset": 1500, "test_subset": 1000},
        ),
        device="cpu",
    )
    steps = 1500 // 64
    assert metrics["epochs"] == 2 and metrics["total_epochs"] == 6
    assert metrics["total_steps"] == 6 * steps
    passes = metrics["before_training"]
    assert [p["epochs"] for p in passes] == [2, 2] and [p["steps"] for p in passes] == [2 * steps] * 2
    assert metrics["total_train_seconds"] >= metrics["train_seconds"] + sum(p["seconds"] for p in passes) * 0.99
    assert metrics["final_acc"] > 0.6  # chance: 0.1
    assert metrics["params_inference"] == metrics["params_full"] - removal_count(0.9, 425_000)


@pytest.mark.parametrize(
    "method, params, training",
    [
        ("snip", {"sparsity": 0.9}, {"lr": 0.05}),
        # GraSP keeps the weights that make activations large (LeNet5 has no BatchNorm): at lr 0.05 with momentum it
        # collapses on some seeds (docs/methods.md); Adam trains it
        ("grasp", {"sparsity": 0.5}, {"optimizer": "adam", "lr": 0.001}),
    ],
)
def test_snip_and_grasp_train_above_chance(method, params, training):
    metrics = train_run(
        config(method, params, training={"epochs": 2, **training}, budget={"train_subset": 1500, "test_subset": 1000}),
        device="cpu",
    )
    assert metrics["final_acc"] > (0.6 if method == "snip" else 0.3)  # chance: 0.1
    assert metrics["compression"] > 0 and metrics["total_epochs"] == metrics["epochs"] == 2


# -- bad input: exit 2 with the key path before training ---------------------------------------------------------


@pytest.mark.parametrize(
    "entry, where, says",
    [
        ({"name": "snip", "params": {"sparsity": 1.0}}, "methods[0].params.sparsity", "must lie in [0, 1)"),
        ({"name": "grasp", "params": {"sparsity": -0.1}}, "methods[0].params.sparsity", "must lie in [0, 1)"),
        ({"name": "imp", "params": {"sparsity": 0.9999999}}, "methods[0].params.sparsity", "removes every one"),
        ({"name": "imp", "params": {"rounds": 0}}, "methods[0].params.rounds", "at least 1"),
        ({"name": "imp", "params": {"rewind": 1.5}}, "methods[0].params.rewind", "[0, 1)"),
        ({"name": "snip", "params": {"layers": [["conv*"]]}}, "methods[0].params.layers", "match no conv/linear"),
        ({"name": "matrix", "params": {"layers": [["fc*"]]}}, "methods[0].params.layers", "match no conv/linear"),
        ({"name": "tdlrt", "params": {"layers": [["7", "nope"]]}}, "methods[0].params.layers", "['nope']"),
    ],
)
def test_bad_pruning_input_exits_2_with_the_key_path_before_training(tmp_path, entry, where, says):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_suite(methods=[entry])))
    res = cli("run", str(path), "--results", str(tmp_path / "res"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert where in res.stderr and says in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "res" / "results.sqlite").exists()  # nothing trained or stored


# -- a killed IMP run ---------------------------------------------------------------------------------------------


class _KillOnce(Reporter):
    """Raises KeyboardInterrupt once: at the given step of the given training pass, or at the end of an epoch."""

    def __init__(self, at_pass: int | None, at_step: int = 3, at_epoch: bool = False):
        self.at_pass, self.at_step, self.at_epoch = at_pass, at_step, at_epoch
        self.passes, self.steps, self.fired = 0, 0, False

    def run_start(self, epochs, steps_per_epoch):
        self.passes += 1
        self.steps = 0

    def step(self, n=1):
        self.steps += n
        if not self.fired and self.passes == self.at_pass and self.steps == self.at_step:
            self.fired = True
            raise KeyboardInterrupt

    def epoch_end(self, row):
        if not self.fired and self.at_epoch:
            self.fired = True
            raise KeyboardInterrupt


@pytest.mark.parametrize("killer", [_KillOnce(2), _KillOnce(None, at_epoch=True)], ids=["in round 2", "final loop"])
def test_a_killed_imp_run_finishes_without_duplicates(tmp_path, killer):
    """Killed in its second round, the run trains again from the start (its checkpoint is written once the rounds
    are done); killed in the loop, it resumes from its checkpoint, the rounds kept (tests/test_checkpoint.py)."""
    suite = parse_suite(
        tiny_suite(
            methods=[{"name": "imp", "params": {"sparsity": 0.8, "rounds": 2}}],
            training={"epochs": 2, "batch_size": 64, "lr": 0.05},
            budget={"train_subset": 320, "test_subset": 200},
        )
    )
    runs = expand(suite)
    store = Store(tmp_path / "res")
    todo = plan(store, suite.name, runs).todo
    with pytest.raises(KeyboardInterrupt):
        execute(store, todo, killer, device="cpu")
    assert killer.fired
    (row,) = store.runs()
    assert row["status"] == "pending" and store.epochs(row["id"]) == []  # given back, partial epochs dropped
    counts = execute(store, plan(store, suite.name, runs).todo, Reporter(), device="cpu")
    assert counts["done"] == 1
    (row,) = store.runs()
    assert row["status"] == "done" and row["attempts"] == 2
    assert [e["epoch"] for e in store.epochs(row["id"])] == [0, 1]
    metrics = row["metrics"]
    assert [p["name"] for p in metrics["before_training"]] == ["imp round 1", "imp round 2"]
    assert metrics["total_epochs"] == 6
    assert metrics.get("resumed_from") == (1 if killer.at_epoch else None)


# -- the dense initializations and the registry --------------------------------------------------------------------


def test_pruning_methods_are_registered_with_the_dense_initializations():
    for name in ("snip", "grasp", "imp"):
        cls = METHODS.get(name)
        assert cls.name == name and cls.initializations[0] == "pytorch"
        assert set(cls.initializations) == set(METHODS.get("full").initializations)
    assert math.isclose(SNIPMethod().params.sparsity, 0.9)
