"""``harness show method|model|dataset NAME``: parameters with type, default and meaning; options; files."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from harness.cli.show import parameter_rows
from harness.registry import METHODS
from tests.conftest import cli
from tests.test_data import placeholder_mnist


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_show_method_lists_every_parameter_with_type_default_and_meaning():
    res = cli("show", "method", "tucker")
    assert res.returncode == 0, res.stderr
    out = lines(res.stdout)
    assert out[0].startswith("method tucker: Tucker baseline")
    assert "initializations: random (default), decompose, spectral" in out
    assert "decompose_iters  int, >= 1  (default: 2)" in out
    assert "modes  'channels' | 'all'  (default: channels)" in out
    assert "rank  int | float | list[int] | None  (default: not set)" in out
    meaning = out[out.index("modes  'channels' | 'all'  (default: channels)") + 1]
    assert meaning == "truncate only the channel modes (Tucker-2) or all four conv modes"
    assert "parameters: none" in lines(cli("show", "methods", "full").stdout)  # the plural is taken too


@pytest.mark.parametrize("name", METHODS.names())
def test_every_built_in_parameter_has_a_meaning(name):
    rows = parameter_rows(METHODS.get(name).Params)
    assert [r[0] for r in rows if not r[3]] == []
    out = cli("show", "method", name).stdout
    for pname, _, _, meaning in rows:
        assert pname in out and meaning in out


class DocumentedParams(BaseModel):
    """A plugin's parameters, documented the pydantic way (docstrings under the fields) and with Field."""

    freeze: int = Field(1, ge=0, le=10)
    """How many leading layers are frozen."""
    mode: Literal["a", "b"] | None = None
    """Which mode."""
    tags: list[str] = Field(default_factory=lambda: ["x"], description="labels of the run")
    undocumented: float = 0.5


def test_parameter_meanings_come_from_descriptions_or_field_docstrings():
    assert parameter_rows(DocumentedParams) == [
        ("freeze", "int, >= 0, <= 10", "1", "How many leading layers are frozen."),
        ("mode", "'a' | 'b' | None", "not set", "Which mode."),
        ("tags", "list[str]", '["x"]', "labels of the run"),
        ("undocumented", "float", "0.5", ""),
    ]


def test_show_model_gives_the_builder_options():
    res = cli("show", "model", "vgg16")
    assert res.returncode == 0, res.stderr
    out = lines(res.stdout)
    assert out[0] == "model vgg16: VGG16, CIFAR variant (13 convs with BatchNorm, fc 512-512-classes), 32x32 inputs"
    assert "in_channels  int  (default: 3)" in out and "image_size  int  (default: 32)" in out


def test_show_dataset_gives_shape_classes_and_its_files(tmp_path):
    res = cli("show", "dataset", "mnist", "--data-root", str(tmp_path))
    assert res.returncode == 0, res.stderr
    out = lines(res.stdout)
    assert "images: 1 channel(s), 28x28; classes: 10" in out
    assert any(line.startswith("files: train-images-idx3-ubyte, train-labels-idx1-ubyte") for line in out)
    assert f"- {tmp_path / 'MNIST' / 'raw'}" in out and "missing; looked in:" in out
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in res.stdout
    placeholder_mnist(tmp_path)
    found = lines(cli("show", "dataset", "mnist", "--data-root", str(tmp_path)).stdout)
    assert f"found in: {tmp_path / 'MNIST' / 'raw'}" in found and "missing; looked in:" not in found
    cifar = lines(cli("show", "dataset", "cifar10", "--data-root", str(tmp_path)).stdout)
    assert "images: 3 channel(s), 32x32; classes: 10" in cifar
    assert "augmentation by default: random crop + flip" in cifar
    assert "files: none to provide" in lines(cli("show", "dataset", "mnist_subset").stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("method", "ful"), "unknown method 'ful' (did you mean 'full'?)"),
        (("model", "vgg61"), "unknown model 'vgg61' (did you mean 'vgg16'?)"),
        (("dataset", "mnits"), "unknown dataset 'mnits' (did you mean 'mnist"),
        (("modle", "vgg16"), "cannot show 'modle' (did you mean 'model'"),
    ],
)
def test_show_unknown_names_exit_2_with_a_suggestion(args, message):
    res = cli("show", *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
