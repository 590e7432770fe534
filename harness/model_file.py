"""A trained model as a file: its tensors in safetensors, its structure as JSON in the file's header. Never a pickle.

Every finished run keeps its final model in its results directory, ``RESULTS/runs/<run id>/model.safetensors``
(with ``model.json``, the same structure, for reading); ``harness export-model`` copies it out and
:func:`load_model` rebuilds the network from the file alone, factorized layers included, for inference.

The structure (the header's metadata under the key ``harness``) names what rebuilds the network through the
registries: the model and its builder's arguments, the method with its parameters and initialization, the dataset's
input (channels, size, normalization) and every tensor's shape and dtype (the factor shapes of the trained model:
DLRT/TDLRT ranks change during training). Loading builds the model, lets the method ``prepare`` it as for
training, gives its tensors the stored shapes (:meth:`harness.Method.match_state`) and loads the weights. A
SHA-256 checksum of the structure and every tensor's bytes, kept in the structure, refuses a file that was changed
after harness wrote it; safetensors itself refuses a truncated one.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "harness-model/1"
METADATA_KEY = "harness"
MODEL_FILE = "model.safetensors"
STRUCTURE_FILE = "model.json"
RUNS_DIR = "runs"


class ModelFileError(ValueError):
    """A model file that cannot be read or rebuilt: damaged, changed, or naming what is not installed here."""


def run_dir(results: str | Path, run_id: str) -> Path:
    """The directory of one run's files in a results directory: ``RESULTS/runs/<run id>/``."""
    return Path(results) / RUNS_DIR / run_id


def run_model_path(results: str | Path, run_id: str) -> Path:
    """Where a finished run's model is kept."""
    return run_dir(results, run_id) / MODEL_FILE


# -- writing ------------------------------------------------------------------------------------------------------
def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous CPU tensors, each its own storage (tied weights stored twice)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def checksum(structure: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> str:
    """``sha256:<hex>`` of the structure (its ``checksum`` key left out) and of every tensor's name, dtype, shape
    and bytes, in name order."""
    h = hashlib.sha256()
    rest = {k: v for k, v in structure.items() if k != "checksum"}
    h.update(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{str(t.dtype).removeprefix('torch.')}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def model_structure(config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The structure of a trained model of the run ``config`` (its checksum included)."""
    import harness
    from harness.models import model_args
    from harness.registry import DATASETS

    spec = DATASETS.get(config["dataset"])
    structure: dict[str, Any] = {
        "format": FORMAT,
        "harness": harness.__version__,
        "torch": torch.__version__.split("+")[0],
        "model": config["model"],
        "model_args": model_args(config["dataset"]),
        "method": config["method"],
        "params": config.get("params") or {},
        "initialization": config["initialization"],
        "seed": config["seed"],
        "input": {
            "dataset": config["dataset"],
            "channels": spec.channels,
            "image_size": spec.image_size,
            "num_classes": spec.num_classes,
            "mean": list(spec.mean),
            "std": list(spec.std),
        },
        "tensors": {
            k: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for k, t in tensors.items()
        },
    }
    structure["checksum"] = checksum(structure, tensors)
    return structure


def model_bytes(model: nn.Module, config: Mapping[str, Any]) -> bytes:
    """The model file (safetensors, the structure in its header) of a trained model of the run ``config``."""
    from safetensors.torch import save

    tensors = model_tensors(model)
    structure = model_structure(config, tensors)
    return save(tensors, metadata={METADATA_KEY: json.dumps(structure, sort_keys=True)})


def write_run_model(results: str | Path, run_id: str, data: bytes) -> Path:
    """Keep a finished run's model file (and its structure as ``model.json``) in its run directory, each file
    replaced whole or not at all; returns the model file's path."""
    from harness.report.atomic import replacing, write_text

    folder = run_dir(results, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILE
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    write_text(folder / STRUCTURE_FILE, json.dumps(header_structure(data, str(path)), indent=2, sort_keys=True) + "\n")
    return path


# -- reading ------------------------------------------------------------------------------------------------------
def header_structure(data: bytes, source: str = "<bytes>") -> dict[str, Any]:
    """The structure in the header of a model file's bytes (safetensors: an 8-byte little-endian header length,
    then the JSON header); raises :class:`ModelFileError`."""
    if len(data) < 8:
        raise ModelFileError(f"{source}: not a safetensors model file (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ModelFileError(f"{source}: truncated: its header says {n} bytes, the file holds {len(data) - 8}")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{source}: the safetensors header is not valid JSON: {exc}") from None
    return _structure_of(header.get("__metadata__") if isinstance(header, dict) else None, source)


def _structure_of(metadata: Mapping[str, str] | None, source: str) -> dict[str, Any]:
    text = (metadata or {}).get(METADATA_KEY)
    if text is None:
        raise ModelFileError(
            f"{source}: a safetensors file without harness's structure (metadata key {METADATA_KEY!r}): "
            "not written by harness (harness export-model writes model files)"
        )
    try:
        structure = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{source}: its structure is not valid JSON: {exc}") from None
    if not isinstance(structure, dict) or structure.get("format") != FORMAT:
        got = structure.get("format") if isinstance(structure, dict) else type(structure).__name__
        raise ModelFileError(f"{source}: structure format {got!r}, this harness reads {FORMAT!r}")
    missing = [
        k
        for k in ("model", "model_args", "method", "params", "initialization", "seed", "tensors", "checksum")
        if k not in structure
    ]
    if missing:
        raise ModelFileError(f"{source}: its structure lacks {', '.join(missing)}")
    return structure


@dataclass
class ModelFile:
    """A model file read and checked: its structure and its tensors (on the CPU)."""

    path: Path
    structure: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def build(self, device: torch.device | str = "cpu") -> nn.Module:
        """The network, rebuilt through the registries and loaded with the file's weights, in eval mode."""
        return rebuild(self.structure, self.tensors, str(self.path)).to(device).eval()


def read_model_file(path: str | Path) -> ModelFile:
    """Read a model file and check it against its checksum; raises :class:`ModelFileError` saying what is wrong
    (missing, truncated, not harness's, changed after it was written)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:  # type: ignore[no-untyped-call]
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file (truncated or damaged?): {exc}") from None
    structure = _structure_of(metadata, str(path))
    stated = structure["tensors"]
    if set(stated) != set(tensors) or any(list(tensors[k].shape) != stated[k]["shape"] for k in tensors):
        raise ModelFileError(f"{path}: its tensors do not match the shapes its structure states (file changed)")
    if checksum(structure, tensors) != structure["checksum"]:
        raise ModelFileError(
            f"{path}: checksum mismatch: the weights or the structure were changed after harness wrote the file"
        )
    return ModelFile(path, structure, tensors)


def rebuild(structure: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], source: str = "<model>") -> nn.Module:
    """The network of a structure: the model built, prepared by its method, its tensors given the stored shapes,
    the weights loaded."""
    from harness.config import stored_settings
    from harness.method import Method
    from harness.models import create_model
    from harness.registry import METHODS, UnknownNameError

    try:
        cls = METHODS.get(structure["method"])
        method: Method = cls(stored_settings(cls.Params, structure["params"]), structure["initialization"])
        model = create_model(structure["model"], **structure["model_args"])
    except (UnknownNameError, ImportError) as exc:
        raise ModelFileError(f"{source}: cannot rebuild it here: {exc}") from None
    except (ValueError, TypeError) as exc:  # parameters this version of the method or model does not take
        raise ModelFileError(f"{source}: cannot rebuild it here: {exc}") from None
    generator = torch.Generator().manual_seed(int(structure["seed"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(structure["seed"]))
        model = method.prepare(model, generator)
    method.match_state(model, {k: tuple(t.shape) for k, t in tensors.items()})
    try:
        model.load_state_dict(dict(tensors), strict=True)
    except RuntimeError as exc:
        raise ModelFileError(
            f"{source}: its weights do not fit the rebuilt {structure['model']!r} network: {exc}"
        ) from None
    return model


def load_model(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the network of a model file (``harness export-model``, or ``RESULTS/runs/<id>/model.safetensors``),
    factorized layers included, with its trained weights, in eval mode on ``device``. Its inputs are what the run's
    dataset gave: ``structure['input']`` of :func:`read_model_file` says channels, size and normalization.
    Raises :class:`ModelFileError` for a damaged, changed or unreadable file."""
    return read_model_file(path).build(device)
