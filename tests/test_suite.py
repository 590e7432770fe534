"""Suite validation (messages checked) and grid expansion."""

from __future__ import annotations

import json

import pytest

from harness.config import run_id
from harness.suite import SuiteError, expand, load_suite, parse_suite, sweep
from tests.conftest import cli, run_cli, tiny_suite


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
    res = cli("run", str(path), "--results", str(tmp_path / "r"))
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


def _suite_files():
    from tests.conftest import ROOT

    return sorted((ROOT / "suites").glob("*.yaml"))


@pytest.mark.parametrize("path", _suite_files(), ids=lambda p: p.name)
def test_every_suite_expands_to_the_run_count_its_header_documents(path):
    import re

    header = [line for line in path.read_text().splitlines() if line.startswith("# Runs:")]
    assert len(header) == 1, f"{path.name}: document the run count in one '# Runs: ... = N runs.' line"
    documented = int(re.findall(r"(\d+) runs", header[0])[-1])
    suite = load_suite(path)
    runs = expand(suite)
    if any(p.tuning is not None for p in suite.parts):  # every trial done: the chosen settings' runs follow
        done = {r.id: {"status": "done", "metrics": {"best_val_acc": 0.5, "final_val_acc": 0.5}} for r in runs}
        runs = expand(suite, done)
    assert len(runs) == documented and len({r.id for r in runs}) == documented


GRIDDED = {
    "name": "g",
    "datasets": ["mnist_subset"],
    "models": ["lenet5"],
    "seeds": [0, 1],
    "training": {"epochs": 3, "lr": 0.05, "batch_size": 64},
    "grids": [
        {"name": "fast", "methods": ["full", {"name": "dlrt", "params": {"tau": [0.1, 0.2]}}]},
        {
            "name": "slow",
            "methods": ["full", "tucker"],
            "training": {"lr": 0.01},
            "seeds": [0],
            "budget": {"train_subset": 500},
        },
    ],
}


def test_grids_take_the_suites_keys_and_replace_or_merge_them():
    runs = expand(parse_suite(GRIDDED))
    assert len(runs) == 3 * 2 + 2 * 1
    fast = [r for r in runs if r.config["training"]["lr"] == 0.05]
    slow = [r for r in runs if r.config["training"]["lr"] == 0.01]
    assert {r.config["method"] for r in fast} == {"full", "dlrt"} and {r.config["seed"] for r in fast} == {0, 1}
    assert {r.config["method"] for r in slow} == {"full", "tucker"} and {r.config["seed"] for r in slow} == {0}
    # training merged key by key: the grid's lr, the suite's epochs and batch size
    assert all(r.config["training"]["epochs"] == 3 and r.config["training"]["batch_size"] == 64 for r in runs)
    assert all(r.config["budget"]["train_subset"] == 500 for r in slow)
    assert all(r.config["budget"]["train_subset"] is None for r in fast)
    # the two dense baselines differ in lr, so they are two runs
    assert len([r for r in runs if r.config["method"] == "full"]) == 3


def test_grid_problems_name_the_grid():
    import copy

    data = copy.deepcopy(GRIDDED)
    data["grids"][1]["methods"] = ["tuker"]
    data["grids"][0]["epochs"] = 3
    found = problems(data)
    assert "did you mean 'tucker'" in dict(found)["grids[1].methods[0].name"]
    assert any(loc == "grids[0]" and "unknown key 'epochs'" in msg for loc, msg in found)


def test_select_grids_keeps_identities_and_rejects_unknown_names(write_suite):
    from harness.suite import select_grids

    path = write_suite(GRIDDED)
    whole = {r.id for r in expand(load_suite(path))}
    slow = {r.id for r in expand(load_suite(path, grids=["slow"]))}
    assert len(slow) == 2 and slow < whole  # the same runs, so their results are shared
    with pytest.raises(SuiteError, match="no grid named 'slwo'.*did you mean 'slow'"):
        select_grids(GRIDDED, ["slwo"])


def test_budget_override_changes_only_sizes_epochs_and_models():
    from tests.conftest import ROOT

    path = ROOT / "suites" / "cifar10.yaml"
    full = expand(load_suite(path))
    budget = {"train_subset": 500, "test_subset": 200, "epochs": 1}
    small = expand(load_suite(path, {"budget": budget, "models": ["vgg16"]}))

    def rest(config):  # everything the override may not touch
        return json.dumps(
            {**config, "budget": None, "training": {**config["training"], "epochs": None}}, sort_keys=True
        )

    vgg = [r for r in full if r.config["model"] == "vgg16"]
    assert len(small) == len(vgg) == len(full) // 3
    assert sorted(rest(r.config) for r in small) == sorted(rest(r.config) for r in vgg)
    for r in small:  # recorded with each run, and never the same run as an unbudgeted one
        assert r.config["budget"] == budget and r.config["training"]["epochs"] == 1
    assert not {r.id for r in small} & {r.id for r in full}


def test_budget_override_wins_over_a_grids_own_budget_and_models_select_grids():
    from tests.conftest import ROOT

    path = ROOT / "suites" / "fashion_mnist.yaml"
    runs = expand(load_suite(path, {"budget": {"train_subset": 300}, "models": ["vgg16"]}))
    assert runs and {r.config["model"] for r in runs} == {"vgg16"}
    assert {r.config["budget"]["train_subset"] for r in runs} == {300}
    assert {r.config["budget"]["epochs"] for r in runs} == {5}  # the grid's other budget keys stay
    with pytest.raises(SuiteError, match="alexnet.*not in this suite"):
        load_suite(path, {"models": ["alexnet"]})


def test_cli_runs_only_the_chosen_grids(tmp_path):
    from tests.conftest import ROOT
    from tests.test_data import placeholder_mnist

    data = str(placeholder_mnist(tmp_path / "data"))  # --dry-run checks that the dataset's files are there
    args = ("--dry-run", "--results", str(tmp_path / "r"), "--data-root", data)
    res = cli("run", "suites/mnist.yaml", "--grids", "fixed_rank", *args, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "39 runs in suites/mnist.yaml" in res.stdout and "dlrt" not in res.stdout
    bad = cli("run", "suites/mnist.yaml", "--grids", "fixed", "--dry-run", cwd=ROOT)
    assert bad.returncode == 2 and "did you mean 'fixed_rank'" in bad.stderr


@pytest.mark.slow
def test_cifar10_suite_runs_on_a_cpu_under_a_command_line_budget(tmp_path):
    """The GPU suite, unedited, on a CPU: one model, one grid, a budget of 40 images and one epoch."""
    from tests.conftest import ROOT, status_counts
    from tests.test_data import write_cifar

    write_cifar(tmp_path / "data", n=40)
    res = run_cli(
        "run",
        "suites/cifar10.yaml",
        "--models",
        "vgg16",
        "--grids",
        "paper_lr",
        "--budget",
        "train_subset=40",
        "--budget",
        "test_subset=40",
        "--budget",
        "epochs=1",
        "--device",
        "cpu",
        "--data-root",
        str(tmp_path / "data"),
        "--results",
        str(tmp_path / "r"),
        cwd=ROOT,
        timeout=1200,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert status_counts(tmp_path / "r" / "results.sqlite") == {"done": 21}  # (full + 3 dlrt + 3 tdlrt) x 3 seeds
    from harness.store import Store

    for run in Store(tmp_path / "r").runs():
        assert run["config"]["budget"] == {"train_subset": 40, "test_subset": 40, "epochs": 1}
        assert run["config"]["training"]["epochs"] == 1 and run["config"]["model"] == "vgg16"
