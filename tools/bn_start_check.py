"""Why a compressed VGG16 starts at chance: evaluate each compressed network as its stored run started it, then
again after re-estimating BatchNorm's running statistics on 2,000 training images (nothing trained).

    python tools/bn_start_check.py results/compress_pretrained [--methods full,tucker,dlrt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from harness.config import Validation
from harness.data import load_tensors
from harness.store import Store
from harness.train import build, evaluate


def reestimate_batchnorm(model: nn.Module, x: torch.Tensor, batch: int = 250) -> None:
    """Replace every BatchNorm's running statistics by their plain average over ``x``."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            model(x[i : i + batch])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--methods", default="full,tucker,dlrt")
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    store = Store(args.results)
    runs = {
        r["config"]["method"]: r
        for r in store.runs()
        if r["config"]["model"] == args.model and r["config"].get("pretrained") and r["status"] == "done"
    }
    for name in args.methods.split(","):
        config = runs[name]["config"]
        data = load_tensors(
            config["dataset"],
            train_subset=config["budget"].get("train_subset"),
            test_subset=config["budget"].get("test_subset"),
            validation=Validation(**config["validation"]),
        )
        _, model, _ = build(config, torch.device("cpu"), store.dir)
        start = evaluate(model, data.test_x, data.test_y, 500)[0]
        reestimate_batchnorm(model, data.train_x[: args.images])
        after = evaluate(model, data.test_x, data.test_y, 500)[0]
        print(f"{name:8s} start {start:.2%}  after re-estimating BatchNorm statistics {after:.2%}")


if __name__ == "__main__":
    main()
