"""Models and datasets as plugins: the ``harness.models`` / ``harness.datasets`` entry points (an outside package
installed with pip, and a fake entry point in this process), torchvision's architectures by name, and the errors
for names and shapes that do not fit."""

from __future__ import annotations

import importlib.metadata
import json
import sqlite3
import textwrap
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from torch import nn

from harness import DATASETS, MODELS, create_model
from harness.data import load_tensors
from harness.registry import UnknownNameError
from harness.suite import SuiteError, expand, parse_suite
from harness.train import train_run
from tests.conftest import cli, run_cli, tiny_suite
from tests.test_plugin import install_plugin

# An outside package: a model (a two-layer perceptron) and a dataset (the embedded MNIST subset, inverted).
OUTSIDE = '''
"""A third-party package of a model and a dataset for harness."""
import numpy as np
from torch import nn

from harness import register_dataset


def tiny_mlp(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, hidden: int = 64) -> nn.Module:
    """A two-layer perceptron (third-party test plugin)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * image_size**2, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )


@register_dataset(
    "inverted_digits", channels=1, image_size=28, num_classes=10, mean=(0.8693,), std=(0.3081,),
    description="the embedded MNIST subset, black on white (third-party test plugin)",
)
def load_inverted(root, download=True):
    from harness.data import load_mnist_subset

    x, y, xt, yt = load_mnist_subset(root, download)
    return 255 - x, y, 255 - xt, yt
'''


def test_outside_package_model_and_dataset_are_listed_and_train_in_a_suite(tmp_path, write_suite):
    """A package outside the repository, installed with pip, registers a model and a dataset through the entry
    points; both are listed and a suite trains the model on the dataset with a dense and a factorized method."""
    env = install_plugin(
        tmp_path,
        "outside_models",
        OUTSIDE,
        {
            "harness.models": 'tiny_mlp = "outside_models:tiny_mlp"',
            "harness.datasets": 'inverted_digits = "outside_models:load_inverted"',
        },
    )
    listed = run_cli("list", "models", env=env)
    assert "tiny_mlp" in listed.stdout and "A two-layer perceptron" in listed.stdout
    assert "torchvision.<name>" in listed.stdout and "vit" in listed.stdout
    listed = run_cli("list", "datasets", env=env)
    assert "inverted_digits" in listed.stdout and "black on white" in listed.stdout

    suite = tiny_suite(
        datasets=["inverted_digits"],
        models=["tiny_mlp"],
        methods=["full", {"name": "matrix", "params": {"rank": 8, "layers": [["1"]]}}],
    )
    res = run_cli("run", str(write_suite(suite)), "--results", str(tmp_path / "res"), env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("done   ") == 2 and "inverted_digits/tiny_mlp/matrix" in res.stdout
    con = sqlite3.connect(tmp_path / "res" / "results.sqlite")
    metrics = {json.loads(c)["method"]: json.loads(m) for c, m in con.execute("SELECT config, metrics FROM runs")}
    assert metrics["full"]["final_acc"] > 0.5  # 1,000 inverted digits, one epoch: it learns
    assert metrics["matrix"]["ranks"] == {"1": [8]}  # the plugin model's first linear layer factorized

    # without the package on the path, both names are unknown (exit 2, the name said)
    res = run_cli("run", str(write_suite(suite, "again.yaml")), "--results", str(tmp_path / "res2"))
    assert res.returncode == 2
    assert "unknown dataset 'inverted_digits'" in res.stderr and "unknown model 'tiny_mlp'" in res.stderr


@pytest.fixture
def fresh_registries(monkeypatch):
    """MODELS and DATASETS as they are, restored after the test (entries, discovered entry points)."""
    for registry in (MODELS, DATASETS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_eps", None)
    return monkeypatch


def fake_entry_points(monkeypatch, tmp_path, module: str, code: str, points: dict[str, list[str]]) -> None:
    """Put module ``module`` (``code``) on the path and make ``importlib.metadata`` report ``points``
    (group -> ``name = module:attr`` lines) as installed entry points."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(code))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        EntryPoint(line.split("=")[0].strip(), line.split("=")[1].strip().strip('"'), group)
        for group, lines in points.items()
        for line in lines
    ]
    real = importlib.metadata.entry_points

    def installed(group: str):
        return [e for e in eps if e.group == group] if group in points else real(group=group)

    monkeypatch.setattr("harness.registry.entry_points", installed)


FAKE = """
import numpy as np
from torch import nn

from harness.data import DatasetSpec


def wide_mlp(in_channels=1, num_classes=10, image_size=28):
    hidden = nn.Linear(in_channels * image_size**2, 32)
    return nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), nn.Linear(32, num_classes))


def _stripes(root, download=True):
    # class 0: horizontal stripes, class 1: vertical ones, 16x16, on the 0-255 scale
    rng = np.random.default_rng(0)
    x = np.zeros((200, 1, 16, 16), np.uint8)
    y = rng.integers(0, 2, 200)
    for i, c in enumerate(y):
        rows = rng.choice(16, 4, replace=False)
        if c == 0:
            x[i, 0, rows, :] = 255
        else:
            x[i, 0, :, rows] = 255
    return x[:150], y[:150], x[150:], y[150:]


stripes = DatasetSpec("stripes", 1, 16, 2, (0.25,), (0.43,), False, _stripes, "stripes (fake entry point)")
not_a_dataset = 42
"""


def test_fake_entry_points_register_a_model_and_a_dataset_spec(fresh_registries, tmp_path):
    """Through ``importlib.metadata``'s entry points (faked here): a model builder and a DatasetSpec are loaded
    on first use, listed, and trained together; an entry point naming something else is refused by its name."""
    points = {
        "harness.models": ['wide_mlp = "fake_plugin:wide_mlp"'],
        "harness.datasets": ['stripes = "fake_plugin:stripes"', 'broken = "fake_plugin:not_a_dataset"'],
    }
    fake_entry_points(fresh_registries, tmp_path, "fake_plugin", FAKE, points)
    assert "wide_mlp" in MODELS.names() and "stripes" in DATASETS.names()
    assert isinstance(create_model("wide_mlp", in_channels=1, num_classes=2, image_size=16)[1], nn.Linear)

    data = load_tensors("stripes")  # the same tensors a built-in dataset gives: normalized floats, int64 labels
    assert data.train_x.shape == (150, 1, 16, 16) and data.train_x.dtype == torch.float32
    assert data.train_y.dtype == torch.int64 and data.num_classes == 2
    assert torch.allclose(data.train_x.max(), torch.tensor((1 - 0.25) / 0.43))

    training = {"epochs": 5, "batch_size": 16, "lr": 0.05}
    suite = parse_suite(tiny_suite(datasets=["stripes"], models=["wide_mlp"], budget={}, training=training))
    metrics = train_run(expand(suite)[0].config, device="cpu")
    assert metrics["final_acc"] > 0.9  # stripes are easy

    with pytest.raises(ImportError, match="harness.datasets entry point names a loader"):
        DATASETS.get("broken")
    listed = cli("list", "datasets")
    assert "stripes" in listed.stdout and "failed to load" in listed.stdout


def test_dataset_plugin_breaking_the_contract_is_told_what_it_returned(fresh_registries):
    from harness import register_dataset

    @register_dataset("bad_labels", channels=1, image_size=8, num_classes=3, mean=(0.5,), std=(0.5,))
    def bad(root, download=True):
        x = np.zeros((4, 1, 8, 8), np.uint8)
        return x, np.array([0, 1, 2, 3]), x, np.array([0, 1, 2, 0])

    assert DATASETS.get("bad_labels") is bad.dataset_spec
    with pytest.raises(ValueError, match=r"train labels from 0 to 3; expected 0\.\.2"):
        load_tensors("bad_labels")

    @register_dataset("bad_shape", channels=3, image_size=8, num_classes=2, mean=(0.5,) * 3, std=(0.5,) * 3)
    def bad_shape(root, download=True):
        x = np.zeros((4, 1, 8, 8), np.uint8)
        return x, np.zeros(4, np.int64), x, np.zeros(4, np.int64)

    with pytest.raises(ValueError, match=r"train images of shape \(4, 1, 8, 8\); expected \(N, 3, 8, 8\)"):
        load_tensors("bad_shape")


# -- torchvision ------------------------------------------------------------------------------------------------
def test_torchvision_names_resolve_with_the_datasets_classes_and_channels():
    model = create_model("torchvision.resnet18", in_channels=1, num_classes=7, image_size=28)
    assert model.conv1.in_channels == 1 and model.conv1.out_channels == 64  # first conv takes 1 channel
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2) and model.fc.out_features == 7
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    rgb = create_model("torchvision.resnet18", in_channels=3, num_classes=10, image_size=32)
    assert rgb.conv1.in_channels == 3
    assert "torchvision.resnet18" in MODELS and "torchvision.resnet81" not in MODELS
    assert MODELS.names() == sorted(MODELS.names()) and not any(n.startswith("torchvision.") for n in MODELS.names())
    assert "torchvision.vgg16_bn" in MODELS.names("torchvision.vgg*")
    with pytest.raises(UnknownNameError, match=r"unknown torchvision architecture 'torchvision.resnet81' \(did you"):
        MODELS.get("torchvision.resnet81")


@pytest.mark.parametrize(
    "models,dataset,where,said",
    [
        (["lenet5", "torchvision.alexnet"], "mnist_subset", "models[1]", "'torchvision.alexnet' cannot take dataset"),
        (["torchvision.resnt18"], "mnist_subset", "models", "did you mean 'torchvision.resnet18'"),
        (["torchvison.resnet18"], "mnist_subset", "models", "did you mean 'torchvision.<name>'"),
        (["vit"], "mnist_subset", None, None),  # 28x28 fits the default patch size 4
        (["vit", "torchvision.resnet18"], "fashion_mnist32", None, None),
    ],
)
def test_suite_refuses_a_model_that_cannot_take_the_dataset_or_does_not_exist(models, dataset, where, said):
    data = tiny_suite(models=models, datasets=[dataset])
    if where is None:
        parse_suite(data)
        return
    with pytest.raises(SuiteError) as err:
        parse_suite(data)
    assert any(loc == where and said in msg for loc, msg in err.value.problems), err.value.problems


def test_cli_exits_2_on_a_torchvision_name_that_does_not_exist(tmp_path, write_suite):
    path = write_suite(tiny_suite(models=["torchvision.resnet81"]))
    res = cli("run", str(path), "--results", str(tmp_path / "res"))
    assert res.returncode == 2 and "did you mean 'torchvision.resnet18'" in res.stderr
    assert not (tmp_path / "res").exists()


def test_torchvision_resnet18_trains_in_a_suite_under_a_small_budget(tmp_path, write_suite):
    """``models: [torchvision.resnet18]`` on the embedded 1-channel MNIST subset: 2 epochs of 4 steps; the
    training loss falls and the kept model file rebuilds to the stored accuracy."""
    suite = tiny_suite(
        models=["torchvision.resnet18"],
        training={"epochs": 2, "batch_size": 64, "lr": 0.05},
        budget={"train_subset": 256, "test_subset": 200},
    )
    res = cli("run", str(write_suite(suite)), "--results", str(tmp_path / "res"))
    assert res.returncode == 0, res.stdout + res.stderr
    con = sqlite3.connect(tmp_path / "res" / "results.sqlite")
    losses = [r[0] for r in con.execute("SELECT train_loss FROM epochs ORDER BY epoch")]
    (rid, metrics), *_ = con.execute("SELECT id, metrics FROM runs").fetchall()
    assert len(losses) == 2 and losses[1] < losses[0]
    metrics = json.loads(metrics)
    assert 11_100_000 < metrics["params_inference"] < 11_200_000  # torchvision's ResNet18, 10 classes
    out = tmp_path / "resnet18.safetensors"
    res = cli("export-model", str(tmp_path / "res"), "--run", rid[:8], "-o", str(out), "--verify")
    assert res.returncode == 0, res.stderr
    assert "(the same as the stored run" in res.stdout and out.stat().st_size == metrics["model_bytes"]
