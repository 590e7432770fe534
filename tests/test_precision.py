"""training.precision: recorded in the run's identity (fp32 keeps the ids of stored runs), validated against the
device before anything trains (fp16 on a CPU exits 2), bf16 training of the quickstart's models learns as fp32
does, float16's loss scaling reaches a method's step through ``Method.precision``, and tables name the
precision wherever it is not fp32."""

from __future__ import annotations

import sqlite3

import pytest
import torch
from torch import nn

import harness.precision
from harness import Method
from harness.config import RunStatus, short_run_labels
from harness.models import create_model
from harness.precision import Precision
from harness.registry import METHODS, Entry
from harness.runner import attempt
from harness.suite import SuiteError, expand, load_suite, parse_suite
from harness.train import evaluate
from tests.conftest import ROOT, cli, tiny_suite

NEW_SETTINGS = {"precision": "fp32", "channels_last": "auto", "compile": False}  # the defaults


def ids(data: dict) -> list[str]:
    return [r.id for r in expand(parse_suite(data))]


def training(**over) -> dict:
    return {**tiny_suite()["training"], **over}


def test_precision_is_recorded_and_changes_the_run_identity_while_defaults_keep_old_ids():
    old = ids(tiny_suite())
    assert ids(tiny_suite(training=training(**NEW_SETTINGS))) == old
    (run,) = expand(parse_suite(tiny_suite(training=training(precision="bf16"))))
    assert run.config["training"]["precision"] == "bf16" and run.id not in old
    for setting in ({"channels_last": True}, {"channels_last": False}, {"compile": True}):
        assert ids(tiny_suite(training=training(**setting))) != old, setting
    # every run of a published store is found again, at the id it was stored under, by expanding its suite
    suite = load_suite(ROOT / "suites" / "fashion_mnist.yaml")
    db = ROOT / "results" / "fashion_mnist" / "results.sqlite"
    con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        stored = {row[0] for row in con.execute("SELECT id FROM runs")}
    finally:
        con.close()
    assert stored and stored <= {r.id for r in expand(suite)}


@pytest.mark.parametrize(
    "key,value,says",
    [
        ("precision", "fp8", "'fp32', 'bf16' or 'fp16'"),
        ("channels_last", "sometimes", "auto"),
        ("compile", "maybe", "valid boolean"),
    ],
)
def test_new_settings_are_validated_with_their_key_path(write_suite, key, value, says):
    with pytest.raises(SuiteError) as err:
        parse_suite(tiny_suite(training=training(**{key: value})))
    assert any(loc.startswith(f"training.{key}") and says in msg for loc, msg in err.value.problems), err.value
    res = cli("run", str(write_suite(tiny_suite(training=training(**{key: value})))), "--dry-run")
    assert res.returncode == 2 and f"training.{key}" in res.stderr


def test_fp16_on_a_cpu_stops_with_exit_2_before_anything_is_stored(tmp_path, write_suite):
    results = tmp_path / "res"
    suite = write_suite(tiny_suite(training=training(precision="fp16")))
    res = cli("run", str(suite), "--results", str(results), "--device", "cpu")
    assert res.returncode == 2
    assert "training.precision: fp16 needs a CUDA device" in res.stderr and "use bf16 or fp32" in res.stderr
    assert not results.exists()
    # the same for a grid that asks for it itself, at the grid's key path; and in `harness check`
    grids = tiny_suite(grids=[{"name": "a"}, {"name": "b", "training": {"precision": "fp16"}}])
    res = cli("run", str(write_suite(grids, "grids.yaml")), "--results", str(results), "--device", "cpu")
    assert res.returncode == 2 and "grids[1].training.precision: fp16 needs a CUDA device" in res.stderr
    res = cli("check", str(suite), "--against", str(tmp_path / "none.json"))
    assert res.returncode == 2 and "training.precision: fp16" in res.stderr
    # on a CUDA device the suite is valid (a dry run lists its run, which names its precision)
    res = cli("run", str(suite), "--results", str(results), "--device", "cuda", "--dry-run")
    assert res.returncode == 0 and "(training.precision=fp16)" in res.stdout


def test_a_run_whose_device_cannot_take_its_precision_fails_at_its_start():
    """Where the device is known only to the run (a Ray node), the run fails with the message, recorded."""
    (run,) = expand(parse_suite(tiny_suite(training=training(precision="fp16"))))
    outcome = attempt(run.config, device="cpu")
    assert outcome.status is RunStatus.FAILED
    assert outcome.error.startswith("UnsupportedPrecision: training.precision: fp16 needs a CUDA device")


def test_bf16_training_of_the_quickstart_learns_like_fp32_and_tables_show_the_precision(tmp_path, write_suite):
    """The quickstart's methods (dense, Tucker, TDLRT) on the embedded MNIST subset (9,000 training images beside
    the validation split), 2 epochs, in fp32 and in bf16: every bf16 run reaches within 3 points of its fp32 twin
    (measured: 0.0-0.7 points) and above 90%. The table names the precision of every row; a table of bf16 runs
    alone names it too, one of fp32 runs alone does not."""
    data = load_suite(ROOT / "suites" / "quickstart.yaml").model_dump(
        mode="json", exclude={"grids", "parts", "training", "budget", "references"}
    )
    data.update(
        training={"epochs": 2, "batch_size": 128, "lr": 0.05, "momentum": 0.9},
        budget={"test_subset": 1000},
        grids=[{"name": "fp32"}, {"name": "bf16", "training": {"precision": "bf16"}}],
    )
    results = tmp_path / "res"
    res = cli("run", str(write_suite(data)), "--results", str(results), "--device", "cpu", "--no-report")
    assert res.returncode == 0, res.stdout + res.stderr

    from harness.report import build_report
    from harness.report.brief import brief_columns, brief_table
    from harness.store import Store

    store = Store(results)
    lines = brief_table(build_report(store)).splitlines()
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert cols[0] == "training.precision"
    acc = {(r[cols.index("method")], r[0]): float(r[cols.index("test acc (%)")]) for r in rows}
    assert {p for _, p in acc} == {"fp32", "bf16"} and {m for m, _ in acc} == {"full", "tucker", "tdlrt"}
    for method in ("full", "tucker", "tdlrt"):
        assert abs(acc[method, "bf16"] - acc[method, "fp32"]) <= 3.0, acc
        assert acc[method, "bf16"] > 90, acc
    bf16 = build_report(store, where="`training.precision` == 'bf16'")
    fp32 = build_report(store, where="`training.precision` == 'fp32'")
    assert "training.precision" in brief_columns(bf16) and "training.precision" not in brief_columns(fp32)
    assert "precision=bf16" in " ".join(bf16.runs["label"])


def test_labels_name_a_precision_that_all_runs_share_and_never_fp32():
    base = {"dataset": "mnist", "model": "lenet5", "method": "full", "params": {}, "initialization": "x"}
    bf16 = [{**base, "seed": s, "training": {"lr": 0.05, "precision": "bf16"}} for s in (0, 1)]
    fp32 = [{**base, "seed": s, "training": {"lr": 0.05}} for s in (0, 1)]
    assert short_run_labels(bf16) == [f"mnist/lenet5/full/x/s{s} (training.precision=bf16)" for s in (0, 1)]
    assert short_run_labels(fp32) == [f"mnist/lenet5/full/x/s{s}" for s in (0, 1)]


def test_evaluation_runs_in_the_precision_and_agrees_with_fp32():
    torch.manual_seed(0)
    model = create_model("lenet5")
    x, y = torch.randn(300, 1, 28, 28), torch.randint(0, 10, (300,))
    with torch.no_grad():
        y = model(x).argmax(1)  # labels the model gets right in fp32
    seen = []
    model.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    assert evaluate(model, x, y, 100) == (1.0, pytest.approx(evaluate(model, x, y, 100)[1]))
    acc, loss = evaluate(model, x, y, 100, Precision("bf16", "cpu"))
    assert seen[-1] == torch.bfloat16 and acc > 0.9 and loss == pytest.approx(evaluate(model, x, y, 100)[1], rel=0.05)


class PlainBackward(Method):
    """A third-party method that takes its backward pass and step itself, without ``self.precision``."""

    def train_step(self, model, optimizer, batch, loss_fn):
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()


@pytest.fixture
def fp16_on_cpu(monkeypatch):
    """Let a run train in fp16 on the CPU (refused otherwise), to check the loop's loss scaling here."""
    monkeypatch.setattr(harness.precision, "precision_problem", lambda name, device_type: None)
    monkeypatch.setitem(METHODS._entries, "plain_backward", Entry("plain_backward", PlainBackward, ""))
    PlainBackward.name = "plain_backward"


def test_fp16_scales_the_loss_of_methods_that_use_method_precision_and_stops_those_that_do_not(fp16_on_cpu):
    """(float16 arithmetic is emulated on a CPU, 20x slower than fp32: a budget of four batches of 16.)"""
    few = {"budget": {"train_subset": 64, "test_subset": 50}}

    def run(method: str, precision: str):
        (r,) = expand(
            parse_suite(tiny_suite(methods=[method], training=training(precision=precision, batch_size=16), **few))
        )
        return attempt(r.config, device="cpu")

    plain = run("plain_backward", "fp16")
    assert plain.status is RunStatus.FAILED and "UnscaledStepError" in plain.error
    assert "self.precision" in plain.error and "use precision bf16" in plain.error
    assert run("plain_backward", "bf16").status is RunStatus.DONE  # bf16 needs no scaling
    fp16, fp32 = run("full", "fp16"), run("full", "fp32")
    assert fp16.status is RunStatus.DONE, fp16.error
    # the same steps up to float16 rounding: the scaled gradients were unscaled before the step
    assert fp16.metrics["final_train_loss"] == pytest.approx(fp32.metrics["final_train_loss"], abs=0.01)


def test_default_step_goes_through_the_scaler_in_fp16():
    """``Method.train_step`` with an fp16 precision: the parameters' gradients are those of the loss (unscaled
    by the step), and the step equals the fp32 step up to fp16 rounding."""
    torch.manual_seed(0)
    steps = {}
    for name in ("fp32", "fp16"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
        method = Method()
        method.precision = Precision(name, "cpu")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(16, 20, generator=g), torch.randint(0, 5, (16,), generator=g)
        w0 = model[0].weight.detach().clone()
        with method.precision.autocast():
            method.train_step(model, opt, (x, y), nn.CrossEntropyLoss())
        steps[name] = model[0].weight.detach() - w0
    assert method.precision.scaled_backwards == 1 and method.precision.grad_scale == 65536.0
    assert torch.allclose(steps["fp16"], steps["fp32"], atol=2e-3 * float(steps["fp32"].abs().max()))
