"""Honest costs of sparse models: nonzero parameters at inference, storage as CSR needs it, dense and theoretical
sparse FLOPs, and the report's columns for them (shown only where a model is sparse or trained several passes)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from torch import nn
from torch.nn.utils import prune

from harness import layer_report, parameter_summary
from harness.layers import weight_storage
from harness.report.summary import default_columns
from harness.train import inference_flops
from tests.conftest import cli, tiny_suite


def test_weight_storage_is_the_smaller_of_the_dense_and_the_csr_form():
    w = torch.zeros(3, 4)
    w[0, 1], w[2, 3] = 1.0, 2.0
    assert weight_storage(w) == 2 * 2 + 3 + 1  # 2 values, 2 column indices, 4 row pointers: 8 < 12
    w[1, :3] = 1.0
    assert weight_storage(w) == 12  # 5 nonzeros: CSR would need 14
    conv = torch.zeros(2, 3, 2, 2)  # as the matrix (2, 12)
    conv[0, 0, 0, 0] = conv[1, 2, 1, 1] = conv[1, 0, 1, 0] = 1.0
    assert weight_storage(conv) == 2 * 3 + 2 + 1


def _pruned_model() -> tuple[nn.Module, int, int]:
    """Conv2d(2, 3, 3) -> ReLU -> Flatten -> Linear(48, 5) on 6x6 inputs, 20 conv and 200 linear weights masked."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    conv_mask = torch.ones(3, 2, 3, 3)
    conv_mask.view(-1)[:20] = 0
    lin_mask = torch.ones(5, 48)
    lin_mask.view(-1)[:200] = 0
    prune.custom_from_mask(model[0], "weight", conv_mask)
    prune.custom_from_mask(model[3], "weight", lin_mask)
    return model, 54 - 20, 240 - 200


def test_parameters_at_inference_count_nonzero_weights_and_every_other_parameter():
    model, conv_nnz, lin_nnz = _pruned_model()
    stats = {s.name: s for s in layer_report(model)}
    conv, lin = stats["0"], stats["3"]
    assert (conv.dense_params, conv.params, conv.train_params) == (57, conv_nnz + 3, 57)
    assert (lin.dense_params, lin.params, lin.train_params) == (245, lin_nnz + 5, 245)
    assert conv.format == "sparse" and conv.extra["sparsity"] == pytest.approx(20 / 54)
    assert conv.storage == min(54, 2 * conv_nnz + 3 + 1) + 3 == 57  # CSR would need 72: kept dense
    assert lin.storage == 2 * lin_nnz + 5 + 1 + 5 == 91  # CSR: 40 values, 40 column indices, 6 row pointers
    summary = parameter_summary(model, list(stats.values()), 57 + 245)
    assert summary["params_inference"] == conv_nnz + 3 + lin_nnz + 5
    assert summary["params_train"] == summary["params_full"] == 302
    assert summary["params_storage"] == 57 + 2 * lin_nnz + 6 + 5
    assert summary["compression"] == pytest.approx(1 - (conv_nnz + lin_nnz + 8) / 302)


def test_a_dense_model_is_counted_as_before():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 5))
    stats = layer_report(model)
    summary = parameter_summary(model, stats, 302)
    assert summary["params_inference"] == summary["params_storage"] == summary["params_train"] == 302
    assert all(s.format == "dense" and s.extra == {} for s in stats)
    flops = inference_flops(model, (2, 6, 6), torch.device("cpu"))
    assert flops["flops"] == flops["flops_sparse"] == 2 * 16 * 54 + 2 * 240


def test_sparse_flops_skip_the_multiplications_by_zero_weights():
    model, conv_nnz, lin_nnz = _pruned_model()
    flops = inference_flops(model, (2, 6, 6), torch.device("cpu"))
    # conv: a multiply-add per weight per output position (4 x 4), linear: one per weight; a multiply-add is 2
    assert flops["flops"] == 2 * 16 * 54 + 2 * 240
    assert flops["flops_sparse"] == 2 * 16 * conv_nnz + 2 * lin_nnz


def test_the_report_shows_the_sparse_columns_only_where_a_run_needs_them(tmp_path):
    suite = tmp_path / "s.yaml"
    methods = ["full", {"name": "imp", "params": {"sparsity": 0.9, "rounds": 1}}]
    suite.write_text(yaml.safe_dump(tiny_suite(methods=methods, budget={"train_subset": 320, "test_subset": 200})))
    res = cli("run", str(suite), "--results", str(tmp_path / "res"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 epochs in all" in res.stdout  # the run's line names its whole cost
    res = cli("report", str(tmp_path / "res"), "--no-plots", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    header = next(line for line in res.stdout.splitlines() if line.startswith("| dataset"))
    for name in ("storage (values + indices)", "FLOPs (sparse)", "epochs in all", "train s in all"):
        assert name in header
    imp = next(line for line in res.stdout.splitlines() if "| imp |" in line)
    cells = [c.strip() for c in imp.split("|")]
    assert cells[header.split("|").index(" epochs in all ")] == "2"  # one round and the final pass
    assert "Storage: numbers stored to deploy the model" in res.stdout

    dense = pd.DataFrame(  # only dense runs: the table keeps its columns as before
        {
            "method": ["full"],
            "failed": [0],
            "unfinished": [0],
            "ranks": [""],
            "params_inference": [10.0],
            "params_storage": [10.0],
            "flops": [4.0],
            "flops_sparse": [4.0],
            "epochs": [1.0],
            "total_epochs": [1.0],
            "n_pairs": [0],
        }
    )
    assert default_columns(dense, []) == [
        *("dataset", "model", "budget", "method", "params", "initialization", "n"),
        *("acc", "delta_acc", "compression", "params_inference", "flops", "epoch_seconds", "peak_memory_mb"),
    ]
    old = dense.assign(params_storage=[None], flops_sparse=[None], total_epochs=[None])  # stored before these
    assert "params_storage" not in default_columns(old, [])
