"""Pretrained to compressed: runs that start from a trained dense model (a grid of the same suite, a run of the same
store, a model file), the source's identity in theirs, the trained weights decomposed (truncated SVD: the
Eckart-Young error, by hand), pruned or trained on, sources trained first, and bad sources refused with exit 2."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from harness.model_file import read_model_file, run_model_path
from harness.pretrained import file_digest, staged_path
from harness.store import Store
from harness.suite import SuiteError, expand, load_suite, parse_suite
from harness.train import build
from tests.conftest import cli, tiny_suite

SUITE = tiny_suite(
    name="pretrained",
    training={"epochs": 2, "batch_size": 64, "lr": 0.05},
    budget={"train_subset": 640, "test_subset": 300},
    grids=[
        {"name": "dense", "methods": ["full"]},
        {
            "name": "compress",
            "training": {"epochs": 1, "lr": 0.01},
            "initializations": [{"from": {"grid": "dense"}}],
            "methods": [
                "full",
                {"name": "matrix", "params": {"rank": 8}},
                {"name": "tdlrt", "params": {"tau": 0.1}},
                {"name": "snip", "params": {"sparsity": 0.9}},
                {"name": "imp", "params": {"sparsity": 0.8, "rounds": 1}},
            ],
        },
    ],
)


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The suite trained once: the dense run, then five methods from its model. Tests that change it copy it."""
    root = tmp_path_factory.mktemp("pretrained")
    suite = write(root / "suite.yaml", SUITE)
    res = cli("run", str(suite), "--results", str(root / "res"))
    assert res.returncode == 0, res.stdout + res.stderr
    return root, res.stdout


def by_method(store: Store) -> dict[tuple[str, bool], dict]:
    return {(r["config"]["method"], bool(r["config"].get("pretrained"))): r for r in store.runs()}


def test_runs_start_from_the_dense_run_of_the_source_grid_and_its_id_enters_theirs(trained):
    root, out = trained
    runs = by_method(Store(root / "res"))
    dense = runs[("full", False)]
    assert len(runs) == 6 and all(r["status"] == "done" for r in runs.values())
    for (method, pre), r in runs.items():
        if pre:
            assert r["config"]["pretrained"] == {"run": dense["id"]}
            assert r["config"]["initialization"] == ("pytorch" if method in ("full", "snip", "imp") else "decompose")
            assert r["started"] >= dense["finished"]  # the source first
            assert 0.0 < r["metrics"]["start_acc"] <= 1.0 and "start_val_acc" in r["metrics"]
    # the same settings from scratch are other runs
    scratch = copy.deepcopy(SUITE)
    scratch["grids"][1].pop("initializations")
    ids = {r.id for r in expand(parse_suite(scratch))}
    assert not ids & {r["id"] for (m, pre), r in runs.items() if pre}
    assert "suite pretrained" in out and "(from trained models)" in out
    assert f"pytorch@run:{dense['id'][:8]}" in out and "at the start" in out


def test_full_from_the_dense_model_starts_at_its_accuracy(trained):
    """`full` from the trained model evaluates, before fine-tuning, exactly as the model it was given."""
    root, _ = trained
    runs = by_method(Store(root / "res"))
    dense, again = runs[("full", False)], runs[("full", True)]
    assert again["metrics"]["start_acc"] == dense["metrics"]["test_acc_at_best_val"]
    assert again["metrics"]["start_val_acc"] == dense["metrics"]["best_val_acc"]


def test_the_trained_weights_are_decomposed_pruned_or_kept(trained):
    root, _ = trained
    res = root / "res"
    runs = by_method(Store(res))
    w_dense = read_model_file(run_model_path(res, runs[("full", False)]["id"])).tensors
    cpu = torch.device("cpu")
    # matrix at rank 8: the fc layer is the truncated SVD of the trained weight, its error the discarded tail
    _, model, _ = build(runs[("matrix", True)]["config"], cpu, res)
    fc = dict(model.named_modules())["7"]
    w = w_dense["7.weight"].double()
    approx = (fc.u.weight @ fc.v.weight).double()
    tail = torch.linalg.svdvals(w)[8:].square().sum()
    assert torch.isclose((w - approx).square().sum(), tail, rtol=1e-4)
    # TDLRT: its fc layer's truncated HOSVD of a matrix is the same truncated SVD, at its initial rank
    _, model, _ = build(runs[("tdlrt", True)]["config"], cpu, res)
    layer = dict(model.named_modules())["7"]
    r = layer.ranks[0]
    err = (w - layer.dense_weight().double()).square().sum()
    assert torch.isclose(err, torch.linalg.svdvals(w)[r:].square().sum(), rtol=1e-4, atol=1e-8)
    # pruning and full: the prepared model holds the trained weights themselves (SNIP scores them)
    for method in ("snip", "full"):
        _, model, _ = build(runs[(method, True)]["config"], cpu, res)
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in w_dense.items())


def test_a_model_file_source_is_identified_by_its_bytes_and_kept_in_the_store(trained, tmp_path):
    root, _ = trained
    res = root / "res"
    dense = by_method(Store(res))[("full", False)]
    model = tmp_path / "models" / "lenet5.safetensors"
    model.parent.mkdir()
    shutil.copyfile(run_model_path(res, dense["id"]), model)
    data = copy.deepcopy(SUITE)
    data["grids"] = [
        {**SUITE["grids"][1], "initializations": [{"from": {"file": "models/lenet5.safetensors"}, "as": "spectral"}]}
    ]
    data["grids"][0]["methods"] = [{"name": "matrix", "params": {"rank": 8}}]
    suite = write(tmp_path / "suite.yaml", data)  # the path is read relative to the suite's folder
    (run,) = expand(load_suite(suite))
    digest = file_digest(model)
    assert run.config["pretrained"] == {"file": digest} and run.config["initialization"] == "spectral"
    assert "models" not in str(run.config)  # never a path
    moved = tmp_path / "elsewhere.safetensors"
    shutil.copyfile(model, moved)
    data["grids"][0]["initializations"][0]["from"]["file"] = str(moved)
    assert expand(parse_suite(data))[0].id == run.id  # the same bytes elsewhere: the same run
    out = tmp_path / "res"
    res2 = cli("run", str(suite), "--results", str(out))
    assert res2.returncode == 0, res2.stdout + res2.stderr
    assert staged_path(out, digest).read_bytes() == model.read_bytes()
    (stored,) = Store(out).runs()
    # the same weights as the grid's source, the same product U V^T (spectral only balances the factors)
    same = by_method(Store(res))[("matrix", True)]["metrics"]["start_acc"]
    assert stored["status"] == "done" and stored["metrics"]["start_acc"] == pytest.approx(same, abs=0.01)


def test_run_sources_by_id_and_selected_grids_bring_their_sources(trained, tmp_path):
    root, _ = trained
    res = tmp_path / "res"
    shutil.copytree(root / "res", res)
    dense = by_method(Store(res))[("full", False)]
    data = copy.deepcopy(SUITE)
    data["name"] = "again"
    data["grids"] = [{**SUITE["grids"][1], "initializations": [{"from": {"run": dense["id"]}}], "methods": ["full"]}]
    suite = write(tmp_path / "suite.yaml", data)
    out = cli("run", str(suite), "--results", str(res))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 to train" in out.stdout  # the same run as the suite's own `full` from the dense grid: already done
    # --grids compress alone trains its source grid first
    path = write(tmp_path / "full.yaml", SUITE)
    ids = {r.id for r in expand(load_suite(path, grids=["compress"]))}
    assert dense["id"] in ids and len(ids) == 6


def test_a_source_that_failed_leaves_its_runs_untrained_and_force_retrains_in_order(tmp_path):
    data = copy.deepcopy(SUITE)
    data["grids"][0]["training"] = {"lr": 1e6}  # the dense run diverges
    data["grids"][1]["methods"] = [{"name": "matrix", "params": {"rank": 8}}]
    suite = write(tmp_path / "suite.yaml", data)
    res = cli("run", str(suite), "--results", str(tmp_path / "res"))
    assert res.returncode == 1
    assert "1 run(s) not trained: they start from a run that did not finish" in res.stdout
    statuses = sorted(r["status"] for r in Store(tmp_path / "res").runs())
    assert statuses == ["failed", "pending"]
    data["grids"][0]["training"] = {}
    write(tmp_path / "ok.yaml", data)
    res = cli("run", str(tmp_path / "ok.yaml"), "--results", str(tmp_path / "ok"), "--force")
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli("run", str(tmp_path / "ok.yaml"), "--results", str(tmp_path / "ok"), "--force")
    assert res.returncode == 0, res.stdout + res.stderr
    runs = {bool(r["config"].get("pretrained")): r for r in Store(tmp_path / "ok").runs()}
    assert runs[True]["attempts"] == 2 and runs[True]["started"] >= runs[False]["finished"]  # --force: in order


# -- bad input: exit 2 before anything trains ------------------------------------------------------------------------


def compress_from(source: dict, **grid) -> dict:
    data = copy.deepcopy(SUITE)
    data["grids"][1]["initializations"] = [source]
    data["grids"][1].update(grid)
    return data


@pytest.mark.parametrize(
    ("data", "where", "says"),
    [
        (compress_from({"from": {"file": "nope.safetensors"}}), "grids[1].initializations[0].from.file", "no such"),
        (compress_from({"from": {"file": "junk.safetensors"}}), "from.file", "not a readable safetensors file"),
        (compress_from({"from": {"file": "dense.safetensors"}}, models=["vit"]), "from.file", "not 'vit'"),
        (
            compress_from({"from": {"file": "dense.safetensors"}}, datasets=["mnist"]),
            "from.file",
            "trained on 'mnist_subset', not 'mnist'",
        ),
        (compress_from({"from": {"file": "matrix.safetensors"}}), "from.file", "a model of method 'matrix'"),
        (compress_from({"from": {"run": "0123456789abcdef"}}), "from.run", "is not in the results store"),
        (compress_from({"from": {"run": "12ab"}}), "from.run", "full id"),
        (compress_from({"from": {"grid": "dence"}}), "from.grid", "did you mean 'dense'"),
        (compress_from({"from": {"grid": "compress"}}), "from.grid", "its own runs"),
        (compress_from({"from": {"grid": "dense"}}, validation=0.2), "from.grid", "another validation split"),
        (compress_from({"from": {"grid": "dense"}, "as": "random"}), ".as", "with decompose, spectral"),
        (compress_from({"from": {"model": "x"}}), "initializations[0].from", "names one source"),
        (
            compress_from({"from": {"grid": "dense"}}, models=["torchvision.resnet999"]),
            "grids[1].models",
            "unknown torchvision architecture",
        ),
    ],
    ids=[
        "missing file",
        "unreadable file",
        "other architecture",
        "other dataset",
        "not dense",
        "run not in store",
        "short run id",
        "unknown grid",
        "own grid",
        "validation split",
        "bad as",
        "no source",
        "torchvision name",
    ],
)
def test_bad_pretrained_sources_exit_2_before_training(trained, tmp_path, data, where, says):
    root, _ = trained
    runs = by_method(Store(root / "res"))
    shutil.copyfile(run_model_path(root / "res", runs[("full", False)]["id"]), tmp_path / "dense.safetensors")
    shutil.copyfile(run_model_path(root / "res", runs[("matrix", True)]["id"]), tmp_path / "matrix.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    suite = write(tmp_path / "suite.yaml", data)
    res = cli("run", str(suite), "--results", str(tmp_path / "res"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert where in res.stderr and says in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "res" / "results.sqlite").exists()  # nothing trained or stored


def test_a_run_source_of_another_kind_in_the_store_exits_2(trained, tmp_path):
    root, _ = trained
    res = tmp_path / "res"
    shutil.copytree(root / "res", res)
    runs = by_method(Store(res))
    for rid, says in [(runs[("tdlrt", True)]["id"], "a 'tdlrt' run"), (runs[("full", True)]["id"], "")]:
        data = compress_from({"from": {"run": rid}})
        data["grids"] = [data["grids"][1]]
        out = cli("run", str(write(tmp_path / "s.yaml", data)), "--results", str(res), "--dry-run")
        if says:
            assert out.returncode == 2 and "grids[0].initializations[0].from.run" in out.stderr and says in out.stderr
            assert out.stderr.count(says) == 1  # one line for the methods that share the entry
        else:  # a `full` run trained from a pretrained model is a trained dense model too
            assert out.returncode == 0, out.stderr


def test_suite_level_checks_without_a_store():
    data = compress_from({"from": {"grid": "dense"}})
    data["grids"][0]["methods"] = ["full", {"name": "full", "initializations": ["kaiming_normal"]}]
    with pytest.raises(SuiteError, match="2 full runs"):
        parse_suite(data)
    data = compress_from({"from": {"grid": "dense"}})
    data["grids"][1]["tuning"] = {"trials": 2, "space": {"training": {"lr": [0.01, 0.1]}}}
    with pytest.raises(SuiteError, match="tuned grid cannot start from a trained model"):
        parse_suite(data)
    single = tiny_suite(initializations=[{"from": {"grid": "dense"}}])
    with pytest.raises(SuiteError, match="names another grid of this suite"):
        parse_suite(single)


def test_check_trains_the_sources_first_whatever_the_grid_order(tmp_path):
    data = copy.deepcopy(SUITE)
    data["grids"] = [data["grids"][1], data["grids"][0]]  # the runs from the trained model listed first
    data["grids"][0]["methods"] = [{"name": "matrix", "params": {"rank": 8}}]
    suite = write(tmp_path / "suite.yaml", data)
    res = cli("check", str(suite), "--against", str(tmp_path / "base.json"), "--update")
    assert res.returncode == 0, res.stdout + res.stderr
    import json

    runs = json.loads((tmp_path / "base.json").read_text())["runs"]
    assert len(runs) == 2 and all(v["final_acc"] is not None for v in runs.values())  # both trained, none failed
