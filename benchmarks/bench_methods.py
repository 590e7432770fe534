"""asv benchmarks: training-step time and peak memory, inference time, accuracy and compression, for every
registered method, on representative workloads (a VGG16 conv block, a linear layer, LeNet5).

Run with ``asv run --python=same`` (existing environment, nothing built) or ``tox -e bench``; the benchmarks
are plain classes, so ``tests/test_benchmarks.py`` also calls each once.
"""

from __future__ import annotations

import torch
from torch import nn

from harness import METHODS

# Parameter presets per method at two compression levels; a method not listed runs with its defaults.
PRESETS: dict[str, dict[str, dict]] = {
    "full": {"dense": {}},
    "tucker": {"c0.5": {"compression": 0.5}, "c0.9": {"compression": 0.9}},
    "cp": {"c0.5": {"compression": 0.5}, "c0.9": {"compression": 0.9}},
    "tt": {"c0.5": {"compression": 0.5}, "c0.9": {"compression": 0.9}},
    "matrix": {"c0.5": {"compression": 0.5}, "c0.9": {"compression": 0.9}},
    "dlrt": {"tau0.05": {"tau": 0.05}, "tau0.2": {"tau": 0.2}},
    "tdlrt": {"tau0.05": {"tau": 0.05}, "tau0.2": {"tau": 0.2}},
}


def method_presets() -> list[str]:
    """``method:preset`` for every registered method."""
    out = []
    for name in METHODS.names():
        for preset in PRESETS.get(name, {"default": {}}):
            out.append(f"{name}:{preset}")
    return out


def make_method(spec: str, layers: list[str] | None = None):
    name, preset = spec.split(":")
    params = dict(PRESETS.get(name, {}).get(preset, {}))
    cls = METHODS.get(name)
    if layers is not None and "layers" in cls.Params.model_fields:
        params["layers"] = layers
    return cls(params, "default")


def workload(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor, list[str] | None]:
    """A model, an input batch and labels; the layer patterns every method factorizes in it."""
    torch.manual_seed(0)
    if name == "vgg_block":  # the 256-channel block of VGG16 at 8x8 resolution
        model = nn.Sequential(
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(256, 10),
        )
        return model, torch.randn(32, 256, 8, 8), torch.randint(0, 10, (32,)), ["0", "3"]
    if name == "linear":  # LeNet5's fc1 shape with a classifier
        model = nn.Sequential(nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
        return model, torch.randn(128, 800), torch.randint(0, 10, (128,)), ["0"]
    if name == "lenet5":
        from harness import create_model

        return create_model("lenet5"), torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,)), None
    raise ValueError(name)


class _Prepared:
    params = (method_presets(), ["vgg_block", "linear", "lenet5"])
    param_names = ["method", "workload"]
    timeout = 300

    def setup(self, spec, name):
        from harness.config import Training

        model, self.x, self.y, layers = workload(name)
        self.method = make_method(spec, layers)
        self.model = self.method.prepare(model, torch.Generator().manual_seed(0))
        self.opt = self.method.make_optimizer(self.model, Training(lr=0.01))
        self.loss = nn.CrossEntropyLoss()


class TrainStep(_Prepared):
    """One optimisation step (the method's own: several passes for DLRT/TDLRT)."""

    def time_train_step(self, spec, name):
        self.method.train_step(self.model, self.opt, (self.x, self.y), self.loss)

    def peakmem_train_step(self, spec, name):
        for _ in range(2):
            self.method.train_step(self.model, self.opt, (self.x, self.y), self.loss)


class Inference(_Prepared):
    """Forward pass of the prepared (factorized) model in eval mode."""

    def setup(self, spec, name):
        super().setup(spec, name)
        self.model.eval()

    def time_forward(self, spec, name):
        with torch.no_grad():
            self.model(self.x)


class Quality:
    """Accuracy after a short seeded training and compression rate (tracked, not timed)."""

    params = (method_presets(),)
    param_names = ["method"]
    timeout = 600

    def _run(self, spec):
        from harness.suite import expand, parse_suite
        from harness.train import train_run

        name, preset = spec.split(":")
        params = PRESETS.get(name, {}).get(preset, {})
        suite = parse_suite(
            {
                "name": "bench",
                "datasets": ["mnist_subset"],
                "models": ["lenet5"],
                "methods": [{"name": name, "params": params}],
                "training": {"epochs": 1, "batch_size": 64},
                "budget": {"train_subset": 2000, "test_subset": 1000},
            }
        )
        (run,) = expand(suite)
        return train_run(run.config, device="cpu")

    def track_accuracy(self, spec):
        return self._run(spec)["final_acc"]

    track_accuracy.unit = "accuracy"

    def track_compression(self, spec):
        return self._run(spec)["compression"]

    track_compression.unit = "compression rate"


class Truncation:
    """Rank truncation (HOSVD of the augmented cores) of the rank-adaptive methods on the VGG16 block:
    one basis step augments every layer, then the timed call truncates them all."""

    params = ([s for s in method_presets() if hasattr(METHODS.get(s.split(":")[0]), "truncate")],)
    param_names = ["method"]
    number = 1
    repeat = 5
    warmup_time = 0

    def setup(self, spec):
        from harness.config import Training

        model, x, y, layers = workload("vgg_block")
        name, preset = spec.split(":")
        params = {**PRESETS.get(name, {}).get(preset, {}), "schedule": "amortized", "amortize_steps": 1000}
        self.method = METHODS.get(name)({**params, "layers": layers}, "default")
        self.model = self.method.prepare(model, torch.Generator().manual_seed(0))
        opt = self.method.make_optimizer(self.model, Training(lr=0.01))
        self.method.train_step(self.model, opt, (x, y), nn.CrossEntropyLoss())  # augments, does not truncate
        self.layers = self.method.tucker_layers(self.model)

    def time_truncate(self, spec):
        self.method.truncate(self.layers)
