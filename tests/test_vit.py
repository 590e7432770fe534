"""``vit``: shapes, attention against its definition, and every method training it (its Linear layers replaced)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harness import create_model
from harness.suite import expand, parse_suite
from harness.toolkit import select_layers
from harness.train import Callbacks, build, train_run
from harness.vit import Attention


@pytest.mark.parametrize("size,patch", [(28, 4), (28, 7), (32, 4), (32, 8)])
def test_vit_takes_28_and_32_pixel_images(size, patch):
    model = create_model("vit", in_channels=1, num_classes=10, image_size=size, patch_size=patch, depth=2)
    assert model(torch.randn(3, 1, size, size)).shape == (3, 10)
    assert model.pos_embedding.shape == (1, (size // patch) ** 2 + 1, 64)


def test_vit_builder_arguments_and_their_errors():
    model = create_model("vit", in_channels=3, num_classes=5, image_size=32, dim=48, depth=3, heads=6, mlp_ratio=4.0)
    assert len(model.blocks) == 3 and model.blocks[0].attn.heads == 6 and model.blocks[0].fc1.out_features == 192
    assert model.patch.in_channels == 3 and model.head.out_features == 5
    with pytest.raises(ValueError, match="image size 28 is not a multiple of the patch size 8"):
        create_model("vit", image_size=28, patch_size=8)
    with pytest.raises(ValueError, match="width 64 is not divisible by the number of heads 5"):
        create_model("vit", heads=5)


def test_attention_is_softmax_of_scaled_dot_products_per_head():
    """The module against the definition written out: per head h, softmax(Q_h K_h^T / sqrt(d_h)) V_h, the heads
    concatenated and projected by the output layer."""
    torch.manual_seed(0)
    attn = Attention(dim=12, heads=3)
    x = torch.randn(2, 5, 12)
    q, k, v = attn.q(x), attn.k(x), attn.v(x)
    heads = []
    for h in range(3):
        s = slice(4 * h, 4 * h + 4)
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(4), dim=-1)
        heads.append(weights @ v[..., s])
    expected = attn.out(torch.cat(heads, -1))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-6)


def test_every_attention_and_mlp_projection_is_a_linear_layer_methods_select():
    """The layers a method replaces by default: all q, k, v, out, fc1, fc2 of every block (6 per block), not the
    patch embedding (the first conv) or the head (the last linear)."""
    model = create_model("vit", depth=2)
    chosen = select_layers(model)
    expected = [f"blocks.{b}.{n}" for b in range(2) for n in ("attn.q", "attn.k", "attn.v", "attn.out", "fc1", "fc2")]
    assert chosen == expected
    assert all(isinstance(model.get_submodule(n), nn.Linear) for n in chosen)


class _Losses(Callbacks):
    def __init__(self):
        self.losses: list[float] = []
        self.layers: list[dict] = []

    def epoch_end(self, row):
        self.losses.append(row["train_loss"])
        self.layers = row["layers"]


METHODS = [
    ("full", {}),
    ("tucker", {"compression": 0.5}),
    ("cp", {"compression": 0.5}),
    ("tt", {"compression": 0.5}),
    ("matrix", {"compression": 0.5}),
    ("dlrt", {"tau": 0.1}),
    ("tdlrt", {"tau": 0.1}),
    ("snip", {"sparsity": 0.5}),
    ("grasp", {"sparsity": 0.5}),
    ("imp", {"sparsity": 0.5, "rounds": 1}),
]


# the dense model and TDLRT in the default run (the others factorize or prune the same nn.Linear layers); the rest slow
FAST = {"full", "tdlrt"}


@pytest.mark.parametrize(
    "method,params",
    [pytest.param(m, p, marks=() if m in FAST else pytest.mark.slow) for m, p in METHODS],
    ids=[m for m, _ in METHODS],
)
def test_every_method_trains_vit(method, params):
    """Two epochs of 10 steps on the embedded MNIST subset (Adam): the loss falls and stays finite; a factorized
    method has replaced every attention and MLP projection, a pruning method has pruned them; full is well above
    chance."""
    suite = parse_suite(
        {
            "name": "vit",
            "datasets": ["mnist_subset"],
            "models": ["vit"],
            "methods": [{"name": method, "params": params}],
            "training": {"epochs": 2, "batch_size": 64, "lr": 0.002, "optimizer": "adam"},
            "budget": {"train_subset": 640, "test_subset": 500},
        }
    )
    config = expand(suite)[0].config
    _, model, _ = build(config, torch.device("cpu"))
    names = [f"blocks.{b}.{n}" for b in range(4) for n in ("attn.q", "attn.k", "attn.v", "attn.out", "fc1", "fc2")]
    linear = [n for n in names if type(model.get_submodule(n)) is nn.Linear]
    cb = _Losses()
    metrics = train_run(config, device="cpu", callbacks=cb)
    assert all(math.isfinite(x) for x in cb.losses) and cb.losses[1] < cb.losses[0]
    if method == "full":
        assert len(linear) == 24 and metrics["compression"] == 0.0
        assert metrics["final_acc"] > 0.18  # chance is 0.10
    elif method in ("snip", "grasp", "imp"):  # the same Linear modules, their weights masked
        sparse = {x["name"] for x in cb.layers if x["format"] == "sparse"}
        assert len(linear) == 24 and set(names) <= sparse and 0.3 < metrics["compression"] < 0.5
    else:
        assert linear == []  # every projection replaced by the method's factorized layer
        assert len(metrics["ranks"]) == 24 and metrics["compression"] > 0.3
