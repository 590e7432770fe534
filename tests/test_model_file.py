"""The trained model as a file: kept by every finished run, exported by ``harness export-model``, rebuilt by
``harness.load_model`` to the stored run's accuracy (dense, fixed-rank, and DLRT/TDLRT layers whose ranks changed
in training); a changed or truncated file is refused with the reason."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import harness
from harness.config import Training
from harness.data import load_tensors
from harness.executors import Options, _ray_train
from harness.model_file import FORMAT, ModelFileError, checksum, header_structure, read_model_file, run_model_path
from harness.report.cells import file_size
from harness.toolkit import resize_tensors
from harness.train import build, evaluate
from tests.conftest import cli, tiny_suite

SUITE = tiny_suite(
    name="models",
    grids=[
        {
            "name": "lenet5",
            "methods": [
                "full",
                {"name": "tucker", "params": {"compression": 0.9}},
                {"name": "cp", "params": {"compression": 0.9}},
                {"name": "tt", "params": {"compression": 0.9}},
                {"name": "matrix", "params": {"compression": 0.9}},
                {"name": "tdlrt", "params": {"tau": 0.2}},
                {"name": "snip", "params": {"sparsity": 0.9}},
                {"name": "imp", "params": {"sparsity": 0.9, "rounds": 1}},
            ],
        },
        {"name": "vit", "models": ["vit"], "methods": [{"name": "dlrt", "params": {"tau": 0.2}}]},
    ],
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A results directory of nine finished runs: LeNet5 full, tucker, cp, tt, matrix, tdlrt, snip, imp; vit dlrt.
    Tests that change it copy it first."""
    import yaml

    root = tmp_path_factory.mktemp("models")
    (root / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    res = cli("run", str(root / "suite.yaml"), "--results", str(root / "res"))
    assert res.returncode == 0, res.stdout + res.stderr
    return root / "res"


def runs_of(results) -> dict[str, dict]:
    con = sqlite3.connect(results / "results.sqlite")
    rows = con.execute("SELECT id, config, metrics FROM runs").fetchall()
    out = {}
    for rid, config, metrics in rows:
        c = json.loads(config)
        out[f"{c['model']}/{c['method']}"] = {"id": rid, "config": c, "metrics": json.loads(metrics or "null")}
    return out


def test_every_finished_run_keeps_its_model_and_its_size_is_reported(trained):
    for run in runs_of(trained).values():
        path = run_model_path(trained, run["id"])
        assert path.stat().st_size == run["metrics"]["model_bytes"]
        structure = json.loads((path.parent / "model.json").read_text())
        assert structure == header_structure(path.read_bytes())  # the JSON beside it is the header's structure
        assert structure["format"] == FORMAT and structure["model"] == run["config"]["model"]
        assert structure["method"] == run["config"]["method"] and structure["params"] == run["config"]["params"]
        assert structure["input"]["mean"] == [0.1307] and structure["model_args"]["num_classes"] == 10
    # dense LeNet5: its 431,080 float32 parameters are 1,724,320 bytes, plus a small header
    full = runs_of(trained)["lenet5/full"]["metrics"]
    assert full["params_inference"] * 4 < full["model_bytes"] < full["params_inference"] * 4 + 16_000


@pytest.mark.parametrize(
    "name",
    [
        "lenet5/full",
        "lenet5/tucker",
        "lenet5/cp",
        "lenet5/tt",
        "lenet5/matrix",
        "lenet5/tdlrt",
        "lenet5/snip",
        "lenet5/imp",
        "vit/dlrt",
    ],
)
def test_export_then_load_model_gives_the_stored_accuracy(trained, tmp_path, name):
    """``export-model`` then ``harness.load_model`` (no suite, no store): the rebuilt network's test accuracy is
    the stored run's, to the last image."""
    run = runs_of(trained)[name]
    out = tmp_path / "model.safetensors"
    res = cli("export-model", str(trained), "--run", run["id"][:6], "-o", str(out), "--verify")
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in res.stdout and "(the same as the stored run" in res.stdout

    model = harness.load_model(out)
    assert not model.training  # ready for inference
    c = run["config"]
    data = load_tensors(c["dataset"], None, "cpu", c["budget"]["train_subset"], c["budget"]["test_subset"])
    acc, _ = evaluate(model, data.test_x, data.test_y, Training.model_validate(c["training"]).eval_batch_size)
    assert acc == run["metrics"]["final_acc"]

    if name.endswith(("snip", "imp")):  # pruned layers come back pruned: masks loaded, zeros where they were
        fc1 = model.get_submodule("7")
        assert fc1.weight_mask.sum() < fc1.weight_mask.numel() and torch.equal(fc1.weight == 0, fc1.weight_mask == 0)
    elif name != "lenet5/full":  # factorized layers come back as the method's own modules
        assert not any(type(m) is nn.Linear for n, m in model.named_modules() if n in run["metrics"]["ranks"])
    if "dlrt" in name:  # ranks changed in training: the loaded shapes are the trained ones, not the prepared ones
        _, fresh, _ = build(c, torch.device("cpu"))
        stored = read_model_file(out).structure["tensors"]
        changed = [k for k, t in fresh.state_dict().items() if list(t.shape) != stored[k]["shape"]]
        assert changed and all(k.endswith(("core", "U0", "U1")) for k in changed)
        layer = next(n for n in run["metrics"]["ranks"])
        assert list(model.get_submodule(layer).core.shape) == run["metrics"]["ranks"][layer]


def test_checksum_is_sha256_of_the_structure_then_each_tensor(tmp_path):
    """The checksum's definition, written out by hand: the structure without its checksum as compact sorted JSON,
    then per tensor in name order ``\\0name\\0dtype\\0shape\\0`` and its bytes."""
    tensors = {"b": torch.tensor(3, dtype=torch.int64), "a": torch.tensor([1.0, 2.0])}
    structure = {"format": FORMAT, "x": 1, "checksum": "ignored"}
    h = hashlib.sha256(b'{"format":"harness-model/1","x":1}')
    h.update(b"\0a\0float32\0[2]\0" + bytes.fromhex("0000803f") + bytes.fromhex("00000040"))  # 1.0, 2.0 little-endian
    h.update(b"\0b\0int64\0[]\0" + (3).to_bytes(8, "little"))
    assert checksum(structure, tensors) == "sha256:" + h.hexdigest()


def test_resize_tensors_gives_parameters_and_buffers_the_stored_shapes():
    layer = nn.Module()
    layer.core = nn.Parameter(torch.zeros(4, 4))
    layer.register_buffer("U0", torch.eye(4))
    frozen = nn.Linear(3, 2)
    frozen.weight.requires_grad_(False)
    model = nn.Sequential(layer, frozen)
    done = resize_tensors(model, {"0.core": (2, 3), "0.U0": (4, 2), "1.weight": (2, 5), "1.bias": (2,), "9.x": (1,)})
    assert done == ["0.core", "0.U0", "1.weight"]
    assert isinstance(layer.core, nn.Parameter) and layer.core.shape == (2, 3) and layer.core.requires_grad
    assert "U0" in layer._buffers and layer.U0.shape == (4, 2)
    assert isinstance(frozen.weight, nn.Parameter) and not frozen.weight.requires_grad and frozen.weight.shape == (2, 5)


def _stored_copy(trained, tmp_path, name: str):
    results = tmp_path / "res"
    shutil.copytree(trained, results)
    run = runs_of(results)[name]
    return results, run, run_model_path(results, run["id"])


def test_a_changed_stored_model_is_refused_by_export_model_and_load_model(trained, tmp_path):
    results, run, path = _stored_copy(trained, tmp_path, "lenet5/tdlrt")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # one bit of the last weight
    path.write_bytes(bytes(data))
    res = cli("export-model", str(results), "--run", run["id"], "-o", str(tmp_path / "out.safetensors"))
    assert res.returncode == 2 and "checksum mismatch" in res.stderr and "changed after harness wrote" in res.stderr
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        harness.load_model(path)


def test_a_truncated_model_file_is_refused(trained, tmp_path):
    results, run, path = _stored_copy(trained, tmp_path, "lenet5/full")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    res = cli("export-model", str(results), "--run", run["id"], "-o", str(tmp_path / "out.safetensors"))
    assert res.returncode == 2 and "truncated or damaged" in res.stderr
    with pytest.raises(ModelFileError, match=r"truncated: its header says \d+ bytes"):
        header_structure(data[:100])
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        harness.load_model(path)


def test_a_structure_changed_to_other_ranks_or_a_foreign_file_is_refused(trained, tmp_path):
    """A file rewritten with a rank cut (weights and stated shapes agreeing, the checksum kept) fails its
    checksum; a safetensors file not written by harness is told so."""
    run = runs_of(trained)["lenet5/tdlrt"]
    path = run_model_path(trained, run["id"])
    tensors = load_file(path)
    structure = read_model_file(path).structure
    tensors["7.core"] = tensors["7.core"][:-1].contiguous()
    tensors["7.U0"] = tensors["7.U0"][:, :-1].contiguous()
    for k in ("7.core", "7.U0"):
        structure["tensors"][k]["shape"] = list(tensors[k].shape)
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, edited, metadata={"harness": json.dumps(structure)})
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        harness.load_model(edited)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, foreign)
    with pytest.raises(ModelFileError, match="not written by harness"):
        harness.load_model(foreign)
    with pytest.raises(ModelFileError, match="no such model file"):
        harness.load_model(tmp_path / "missing.safetensors")


def test_export_model_says_why_it_cannot(trained, tmp_path):
    results, run, path = _stored_copy(trained, tmp_path, "lenet5/full")
    out = str(tmp_path / "out.safetensors")
    res = cli("export-model", str(results), "--run", "zzzz", "-o", out)
    assert res.returncode == 2 and "no run with id 'zzzz'" in res.stderr
    res = cli("export-model", str(results), "--run", "", "-o", out)
    assert res.returncode == 2
    shutil.rmtree(path.parent)
    res = cli("export-model", str(results), "--run", run["id"], "-o", out)
    assert res.returncode == 2 and "has no model file" in res.stderr
    con = sqlite3.connect(results / "results.sqlite")
    with con:
        con.execute("UPDATE runs SET status='failed' WHERE id=?", (run["id"],))
    res = cli("export-model", str(results), "--run", run["id"][:5], "-o", out)
    assert res.returncode == 2 and "is failed: only a finished run keeps its model" in res.stderr
    res = cli("export-model", str(tmp_path / "nothing"), "--run", run["id"], "-o", out)
    assert res.returncode == 2


def test_report_shows_the_model_file_size_beside_the_parameter_count(trained, tmp_path):
    res = cli("report", str(trained), "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    table = (tmp_path / "rep" / "report.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| dataset"))
    cells = [c.strip() for c in header.split("|")]
    # beside the parameter counts: the inference parameters, and the storage of sparse weights where shown
    assert cells[cells.index("model file") - 2 : cells.index("model file")] == [
        "params (inference)",
        "storage (values + indices)",
    ]
    for run in runs_of(trained).values():
        assert f"| {file_size(run['metrics']['model_bytes'])} |" in table
    assert file_size(1_725_920) == "1.73 MB" and file_size(346_324) == "346 kB" and file_size(512) == "512 B"


def test_merge_brings_the_model_files_of_the_runs_it_takes(trained, tmp_path):
    res = cli("merge", str(trained), "--into", str(tmp_path / "merged"))
    assert res.returncode == 0 and "models 9" in res.stdout
    for run in runs_of(trained).values():
        assert (
            run_model_path(tmp_path / "merged", run["id"]).read_bytes()
            == run_model_path(trained, run["id"]).read_bytes()
        )
    again = cli("merge", str(trained), "--into", str(tmp_path / "merged"))
    assert "models 0" in again.stdout


def test_a_ray_task_returns_the_model_file_to_its_driver():
    """What a Ray worker sends back (run here without Ray): outcome, epoch rows and the model file's bytes."""
    from harness.suite import expand, parse_suite

    config = expand(parse_suite(tiny_suite(budget={"train_subset": 256, "test_subset": 100})))[0].config
    result = _ray_train(config, Options(device="cpu"), 1, None)
    outcome, rows, data = result.outcome, result.rows, result.model
    assert outcome.status == "done" and len(rows) == 1 and data and len(data) == outcome.metrics["model_bytes"]
    assert header_structure(data)["model"] == "lenet5"
