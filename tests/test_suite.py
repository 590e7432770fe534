"""Suite validation (messages checked) and grid expansion."""

from __future__ import annotations

import pytest

from harness.suite import SuiteError, expand, load_suite, parse_suite, run_id, sweep
from tests.conftest import run_cli, tiny_suite


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(SuiteError) as info:
        parse_suite(data, "x.yaml")
    return info.value.problems


def test_unknown_top_level_key_suggests_the_right_one():
    ((loc, msg),) = problems(tiny_suite(seed=[1]))
    assert "unknown key 'seed'" in msg and "did you mean 'seeds'" in msg


def test_unknown_nested_key_names_its_section():
    data = tiny_suite()
    data["training"]["epoch"] = 3
    ((loc, msg),) = problems(data)
    assert loc == "training" and "'epoch'" in msg and "did you mean 'epochs'" in msg


def test_wrong_type_names_key_path_and_expected_type():
    data = tiny_suite()
    data["training"]["batch_size"] = "many"
    ((loc, msg),) = problems(data)
    assert loc == "training.batch_size" and "integer" in msg and "'many'" in msg


@pytest.mark.parametrize(
    "key,value,word",
    [("methods", ["ful"], "'full'"), ("models", ["lenet"], "'lenet5'"), ("datasets", ["mnsit"], "'mnist'")],
)
def test_unknown_names_get_did_you_mean(key, value, word):
    ((loc, msg),) = problems(tiny_suite(**{key: value}))
    assert loc.startswith(key) and "unknown" in msg and f"did you mean {word}" in msg


def test_method_parameter_the_method_does_not_take():
    ((loc, msg),) = problems(tiny_suite(methods=[{"name": "full", "params": {"rank": [0.1, 0.5]}}]))
    assert loc == "methods[0].params.rank" and "takes no parameter 'rank'" in msg


def test_unknown_initialization():
    ((loc, msg),) = problems(tiny_suite(initializations=["orthogonl"]))
    assert loc == "initializations[0]" and "did you mean 'orthogonal'" in msg


def test_model_that_cannot_take_dataset():
    ((loc, msg),) = problems(tiny_suite(models=["vgg16"]))
    assert loc == "models[0]" and "vgg16" in msg and "mnist_subset" in msg


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(SuiteError, match="must be a mapping"):
        parse_suite(["a"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(bad)


def test_cli_exits_2_naming_file_and_key(write_suite, tmp_path):
    path = write_suite(tiny_suite(methods=["ful"]))
    res = run_cli("run", str(path), "--results", str(tmp_path / "r"))
    assert res.returncode == 2
    assert str(path) in res.stderr and "methods[0]" in res.stderr and "did you mean 'full'" in res.stderr
    assert not (tmp_path / "r").exists()  # nothing trained, nothing stored


def test_sweep_is_cartesian():
    assert sweep({"a": [1, 2], "b": 3, "c": ["x", "y"]}) == [
        {"a": 1, "b": 3, "c": "x"},
        {"a": 1, "b": 3, "c": "y"},
        {"a": 2, "b": 3, "c": "x"},
        {"a": 2, "b": 3, "c": "y"},
    ]


def test_expansion_counts_and_stable_ids():
    s = parse_suite(tiny_suite(initializations=["pytorch", "orthogonal"], seeds=[0, 1, 2]))
    runs = expand(s)
    assert len(runs) == 6 and len({r.id for r in runs}) == 6
    again = expand(parse_suite(tiny_suite(initializations=["pytorch", "orthogonal"], seeds=[0, 1, 2])))
    assert [r.id for r in runs] == [r.id for r in again]
    more = expand(parse_suite(tiny_suite(initializations=["pytorch", "orthogonal"], seeds=[0, 1, 2, 3])))
    assert {r.id for r in runs} < {r.id for r in more} and len(more) == 8


def test_defaults_are_part_of_identity_but_spelling_is_not():
    explicit = tiny_suite()
    explicit["training"] = {**explicit["training"], "optimizer": "sgd", "momentum": 0.9}
    a = expand(parse_suite(tiny_suite()))[0]
    b = expand(parse_suite(explicit))[0]
    assert a.id == b.id  # filling in a default by hand is the same run
    c = expand(parse_suite(tiny_suite(initializations=["default"])))[0]
    assert c.id == a.id and c.config["initialization"] == "pytorch"
    assert run_id({"x": 1, "y": 2}) == run_id({"y": 2, "x": 1})


def test_budget_is_recorded_and_caps_epochs():
    s = parse_suite(tiny_suite(budget={"train_subset": 100, "epochs": 1}, training={"epochs": 5}))
    (run,) = expand(s)
    assert run.config["training"]["epochs"] == 1 and run.config["budget"]["train_subset"] == 100


def test_shipped_suites_validate():
    from tests.conftest import ROOT

    for path in sorted((ROOT / "suites").glob("*.yaml")):
        assert expand(load_suite(path)), path
