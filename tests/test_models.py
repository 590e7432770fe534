"""Architectures: output shapes and the parameter counts of the literature's variants."""

from __future__ import annotations

import pytest
import torch

from harness import create_model


@pytest.mark.parametrize(
    "name,shape", [("lenet5", (1, 28)), ("alexnet", (3, 32)), ("vgg16", (3, 32)), ("resnet18", (3, 32))]
)
def test_forward_shape(name, shape):
    c, s = shape
    model = create_model(name, in_channels=c, num_classes=10, image_size=s)
    assert model(torch.randn(2, c, s, s)).shape == (2, 10)


def test_known_parameter_counts():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # LeNet5 of the DLRT paper: 20*25+20 + 50*20*25+50 + 800*500+500 + 500*10+10
    assert count(create_model("lenet5")) == 520 + 25050 + 400500 + 5010
    assert 11_100_000 < count(create_model("resnet18")) < 11_200_000


def test_unknown_model_suggests():
    with pytest.raises(KeyError, match="did you mean 'vgg16'"):
        create_model("vgg61")
