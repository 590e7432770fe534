"""harness: train factorized neural networks on equal terms and compare the methods."""

from harness import toolkit
from harness.data import DatasetSpec, register_dataset
from harness.layers import LayerStats, layer_report, parameter_summary
from harness.method import Method, NoParams
from harness.model_file import ModelFileError, load_model, read_model_file
from harness.models import create_model
from harness.registry import DATASETS, METHODS, MODELS, register_method, register_model
from harness.toolkit import *  # noqa: F403 (the public toolkit for methods, exported here too)

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "METHODS",
    "MODELS",
    "LayerStats",
    "Method",
    "ModelFileError",
    "NoParams",
    "create_model",
    "layer_report",
    "load_model",
    "parameter_summary",
    "read_model_file",
    "register_dataset",
    "register_method",
    "register_model",
    *toolkit.__all__,
]


def _register_builtins() -> None:
    # Datasets and models register themselves on import; methods come through entry points.
    import harness.data  # noqa: F401


_register_builtins()
