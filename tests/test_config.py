"""The bottom module: run identity, settings added later, labels from stored configurations."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from harness.config import (
    WHEN_SET,
    RunSpec,
    RunStatus,
    Training,
    distinguishing_params,
    identity_dump,
    run_id,
    short_run_labels,
)


class Old(BaseModel):
    tau: float = 0.1


class New(BaseModel):
    tau: float = 0.1
    decay: float = Field(0.0, json_schema_extra=WHEN_SET)


def test_a_field_added_later_leaves_stored_identities_unchanged_at_its_default():
    assert identity_dump(New()) == identity_dump(Old()) == {"tau": 0.1}
    assert identity_dump(New(decay=0.01)) == {"tau": 0.1, "decay": 0.01}
    base = {"method": "x", "params": identity_dump(Old())}
    assert run_id({**base, "params": identity_dump(New())}) == run_id(base)
    assert run_id({**base, "params": identity_dump(New(decay=0.5))}) != run_id(base)


def test_run_id_ignores_key_order_and_training_dump_is_complete():
    a = {"seed": 0, "training": identity_dump(Training())}
    b = json.loads(json.dumps(dict(reversed(list(a.items())))))
    assert run_id(a) == run_id(b) and RunSpec.of(a).id == run_id(a)
    later = {"precision", "channels_last", "compile"}  # added with WHEN_SET: named only when set
    assert set(identity_dump(Training())) == set(Training.model_fields) - later
    assert set(identity_dump(Training(precision="bf16", channels_last=True, compile=True))) == set(
        Training.model_fields
    )


def test_status_values_are_the_stored_strings():
    assert RunStatus("done") is RunStatus.DONE and RunStatus.DONE == "done" and str(RunStatus.FAILED) == "failed"
    assert RunStatus.DONE.settled and not RunStatus.RUNNING.settled


def test_labels_name_what_distinguishes_runs_of_a_method():
    base = {"dataset": "mnist", "model": "lenet5", "initialization": "random", "seed": 0}
    configs = [
        {**base, "method": "dlrt", "params": {"tau": 0.1, "r_max": 0.5}},
        {**base, "method": "dlrt", "params": {"tau": 0.2, "r_max": 0.5}},
        {**base, "method": "tucker", "params": {"rank": 0.5}},
    ]
    assert distinguishing_params([c["method"] for c in configs], [c["params"] for c in configs]) == {
        "dlrt": ["tau"],
        "tucker": [],
    }
    assert short_run_labels(configs) == [
        "mnist/lenet5/dlrt[tau=0.1]/random/s0",
        "mnist/lenet5/dlrt[tau=0.2]/random/s0",
        "mnist/lenet5/tucker/random/s0",
    ]


def test_labels_name_the_training_and_budget_that_tell_runs_apart_never_shared_defaults():
    base = {"dataset": "mnist", "model": "lenet5", "initialization": "random", "seed": 0, "params": {"tau": 0.1}}
    lr05 = {"epochs": 10, "lr": 0.05, "momentum": 0.9}
    configs = [
        {**base, "method": "dlrt", "training": lr05, "budget": {"train_subset": None}},
        {**base, "method": "dlrt", "training": {**lr05, "lr": 0.01}, "budget": {"train_subset": None}},
        {**base, "method": "dlrt", "training": lr05, "budget": {"train_subset": 1000}},
        {**base, "method": "full", "params": {}, "training": {**lr05, "lr": 0.01}, "budget": {}},
    ]
    assert short_run_labels(configs) == [
        "mnist/lenet5/dlrt/random/s0 (training.lr=0.05)",  # an unset budget is not named
        "mnist/lenet5/dlrt/random/s0 (training.lr=0.01)",
        "mnist/lenet5/dlrt/random/s0 (budget.train_subset=1000, training.lr=0.05)",
        "mnist/lenet5/full/random/s0",  # the only full run: no setting tells it apart from another
    ]


def test_two_different_runs_never_share_a_label():
    base = {"dataset": "mnist", "model": "lenet5", "method": "dlrt", "initialization": "random", "seed": 0}
    # an explicit null and a missing key print alike; only the id can tell these two apart
    configs = [{**base, "params": {"tau": 0.1}}, {**base, "params": {"tau": 0.1, "decay": None}}]
    labels = short_run_labels(configs)
    assert labels == [f"mnist/lenet5/dlrt/random/s0 #{run_id(c)[:8]}" for c in configs]
    assert short_run_labels([configs[0], configs[0]]) == ["mnist/lenet5/dlrt/random/s0"] * 2  # the same run twice
