"""Starting a run from a trained dense model: the sources a suite names, their identity, and their weights.

An entry of a suite's ``initializations`` (or a method's) may name a trained model instead of an initialization::

    initializations:
      - from: {grid: dense}                 # the `full` run of this suite's grid `dense`, same dataset, model, seed
      - from: {run: 1a2b3c4d5e6f7a8b}       # a finished `full` run of the same results store, by its id
      - from: {file: models/lenet5.safetensors}    # a model file (harness export-model, RESULTS/runs/<id>/)
        as: spectral                         # the method's initialization from the weights (default: its first)

The dense weights are loaded into the freshly built dense model before ``Method.prepare``, which starts the method
from them under one of its ``pretrained_initializations``: the fixed-rank methods and DLRT/TDLRT decompose them
(truncated HOSVD, SVD, CP or TT to the method's rank or compression: ``decompose``), the pruning methods prune them
(SNIP and GraSP score the trained weights, IMP starts its rounds from them), ``full`` trains them on. The suite's
epochs are then the fine-tuning budget.

A run's identity holds its source's identity, never a path: ``pretrained: {run: <the source run's id>}`` (for a
``grid`` source too: the id of the run of that grid) or ``pretrained: {file: "sha256:<hex of the file's bytes>"}``.
Before training, ``harness run`` copies a file source into the results directory, ``RESULTS/pretrained/<hex>
.safetensors``, where every worker finds it (and the store keeps what its runs started from); a run source's
weights are its model file, ``RESULTS/runs/<id>/model.safetensors`` (the model it is judged by).

What is checked, and when: at suite load a grid source must be another, untuned grid of the suite whose ``full``
runs (one per dataset, model and seed) are not themselves pretrained and that has the same validation split; a
file must exist, be a harness model file that passes its checksum, be a model of the same architecture trained on
the same dataset, and fit the dense model. A run source is checked against the store by ``harness run`` before
anything trains (it must be a finished ``full`` run of the same dataset, model and validation split). Every failure
exits with status 2 and the key path. A run whose source is a run of the same suite waits for it: ``harness run``
trains the sources first and the runs that start from them after (:func:`waiting`).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.model_file import ModelFileError, read_model_file, run_model_path

KINDS = ("grid", "run", "file")
PRETRAINED_DIR = "pretrained"
SOURCE_METHOD = "full"  # a trained dense model is a `full` run's


class PretrainedError(ValueError):
    """A pretrained source that cannot be used (its message names the cause)."""


@dataclass
class Source:
    """One ``{from: ..., as: ...}`` entry of a suite, parsed: ``kind`` grid, run or file and its ``value`` (a grid
    name, a run id, or the file's path resolved against the suite's directory); ``as_``: the initialization asked
    for (None: the method's first ``pretrained_initializations``); ``digest``: a file's ``sha256:<hex>``."""

    kind: str
    value: str
    as_: str | None = None
    digest: str | None = None
    where: str = ""  # the entry's key path in the suite
    runs: dict[tuple[str, str, int], str] = field(default_factory=dict)  # grid: (dataset, model, seed) -> run id

    def identity(self, dataset: str, model: str, seed: int) -> dict[str, str]:
        """What enters the run's identity: the source run's id, or the file's digest."""
        if self.kind == "file":
            assert self.digest is not None
            return {"file": self.digest}
        if self.kind == "grid":
            return {"run": self.runs[(dataset, model, seed)]}
        return {"run": self.value}

    def describe(self) -> str:
        return f"{self.kind} {self.value!r}"


def parse_source(entry: Mapping[str, Any], base_dir: Path) -> tuple[Source | None, list[tuple[str, str]]]:
    """An initializations entry given as a mapping: the source, or the problems as (key below the entry, message)."""
    unknown = [k for k in entry if k not in ("from", "as")]
    if unknown:
        return None, [(str(unknown[0]), f"unknown key {unknown[0]!r}; an entry naming a trained model takes: from, as")]
    src = entry.get("from")
    if not isinstance(src, Mapping) or len(src) != 1 or next(iter(src)) not in KINDS:
        return None, [
            (
                "from",
                "names one source: {grid: NAME} (this suite's grid of full runs), {run: RUN_ID} (a finished full run "
                f"of the results store) or {{file: PATH}} (a model file); got {src!r}",
            )
        ]
    as_ = entry.get("as")
    if as_ is not None and not isinstance(as_, str):
        return None, [("as", f"names an initialization, got {as_!r}")]
    kind, value = next(iter(src.items()))
    if not isinstance(value, str) or not value:
        return None, [(f"from.{kind}", f"takes a name, got {value!r}")]
    if kind == "run" and not _is_run_id(value):
        why = f"takes a run's full id (16 hex digits, as `harness run --dry-run` lists it), got {value!r}"
        return None, [("from.run", why)]
    if kind == "file":
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base_dir / path
        return Source(kind, str(path), as_), []
    return Source(kind, value, as_), []


def _is_run_id(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def dense_problems(structure: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], dataset: str, model: str) -> str:
    """Why a model file's trained model cannot start runs of ``model`` on ``dataset`` ('' when it can): another
    architecture, another dataset, not a dense (``full``) model, or tensors that do not fit the dense model."""
    from harness.models import create_model, model_args

    if structure.get("model") != model:
        return f"it holds a {structure.get('model')!r} model, not {model!r}"
    trained_on = (structure.get("input") or {}).get("dataset")
    if trained_on != dataset:
        return f"it was trained on {trained_on!r}, not {dataset!r}"
    if structure.get("method") != SOURCE_METHOD:
        return (
            f"it is a model of method {structure.get('method')!r}: a pretrained source is a trained dense model "
            f"(a {SOURCE_METHOD!r} run's)"
        )
    with torch.device("meta"):
        dense = create_model(model, **model_args(dataset))
    want = {k: tuple(v.shape) for k, v in dense.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in tensors.items()}
    if want != have:
        missing = sorted(set(want) - set(have))[:3]
        extra = sorted(set(have) - set(want))[:3]
        shapes = [k for k in want.keys() & have.keys() if want[k] != have[k]][:3]
        return f"its tensors do not fit the dense {model!r} (missing {missing}, unexpected {extra}, shapes {shapes})"
    return ""


def check_file(source: Source, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A file source checked for every (dataset, model) of its grid; sets its digest. Problems as (key, message)."""
    path = Path(source.value)
    if not path.is_file():
        return [("from.file", f"{path}: no such file")]
    try:
        mf = read_model_file(path)
    except ModelFileError as exc:
        return [("from.file", str(exc))]
    except OSError as exc:
        return [("from.file", f"{path}: cannot be read: {exc}")]
    problems = []
    for dataset, model in pairs:
        why = dense_problems(mf.structure, mf.tensors, dataset, model)
        if why:
            problems.append(("from.file", f"{path} cannot start {model!r} on {dataset!r}: {why}"))
    source.digest = file_digest(path)
    return problems


# -- the results directory ------------------------------------------------------------------------------------------
def staged_path(results: str | Path, digest: str) -> Path:
    """Where a file source is kept in a results directory: ``RESULTS/pretrained/<hex>.safetensors``."""
    return Path(results) / PRETRAINED_DIR / f"{digest.removeprefix('sha256:')}.safetensors"


def stage_file(results: str | Path, source: Source) -> Path:
    """Copy a file source into the results directory (once: its name is its digest), whole or not at all."""
    from harness.report.atomic import replacing

    assert source.kind == "file" and source.digest is not None
    target = staged_path(results, source.digest)
    if target.is_file() and file_digest(target) == source.digest:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with replacing(target) as tmp:
        shutil.copyfile(source.value, tmp)
        if file_digest(tmp) != source.digest:
            raise PretrainedError(f"{source.value} changed since the suite was read; run the command again")
    return target


def source_file(results: str | Path | None, pretrained: Mapping[str, str]) -> Path:
    """The model file a run's ``pretrained`` identity names in results directory ``results``."""
    if results is None:
        raise PretrainedError(
            "this run starts from a trained model, which is found in its results directory; none was given "
            "(train it with harness run)"
        )
    if "run" in pretrained:
        return run_model_path(results, pretrained["run"])
    return staged_path(results, pretrained["file"])


def load_pretrained(model: nn.Module, config: Mapping[str, Any], results: str | Path | None) -> None:
    """Load the trained dense weights a run's ``pretrained`` names into its freshly built dense ``model``; raises
    :class:`PretrainedError` saying what is missing or does not fit."""
    pretrained = config["pretrained"]
    path = source_file(results, pretrained)
    if not path.is_file():
        what = f"run {pretrained['run']}'s model file" if "run" in pretrained else f"model file {pretrained['file']}"
        raise PretrainedError(f"the pretrained source, {what}, is not in the results directory: {path} is missing")
    if "file" in pretrained and file_digest(path) != pretrained["file"]:
        raise PretrainedError(f"{path} does not hold the model file {pretrained['file']} (changed since it was copied)")
    try:
        mf = read_model_file(path)
    except ModelFileError as exc:
        raise PretrainedError(f"the pretrained source cannot be read: {exc}") from None
    why = dense_problems(mf.structure, mf.tensors, config["dataset"], config["model"])
    if why:
        raise PretrainedError(f"the pretrained source {path} cannot start this run: {why}")
    model.load_state_dict(mf.tensors, strict=True)


def stored_source_problem(
    source: Source,
    stored: Mapping[str, Any] | None,
    results: Path,
    datasets: list[str],
    models: list[str],
    validation: Any,
) -> str:
    """Why a ``{run: ID}`` source, as the store holds it (``stored``: its row, None when absent), cannot start the
    runs of a grid of ``datasets`` x ``models`` with the ``validation`` split identity ('' when it can)."""
    rid = source.value
    if stored is None:
        return f"run {rid} is not in the results store {results} (a source run belongs to the same store)"
    c = stored["config"]
    if stored["status"] != "done":
        return f"run {rid} is {stored['status']}, not done: a source must be a finished run"
    if c["method"] != SOURCE_METHOD:
        return f"run {rid} is a {c['method']!r} run: a pretrained source is a trained dense model (a 'full' run's)"
    if any(d != c["dataset"] for d in datasets) or any(m != c["model"] for m in models):
        return (
            f"run {rid} trained {c['model']!r} on {c['dataset']!r}; this grid trains "
            f"{', '.join(models)} on {', '.join(datasets)}"
        )
    if c.get("validation") != validation:
        return (
            f"run {rid} has another validation split ({c.get('validation')}, here {validation}): it may have "
            "trained on this grid's validation images"
        )
    if not run_model_path(results, rid).is_file():
        return f"run {rid} has no model file in {run_model_path(results, rid).parent} (stored before model files)"
    return ""


# -- ordering -------------------------------------------------------------------------------------------------------
def source_run(config: Mapping[str, Any]) -> str | None:
    """The id of the run a run starts from (None: none, or a file)."""
    return (config.get("pretrained") or {}).get("run")


def waiting(configs: Mapping[str, Mapping[str, Any]], ready: Callable[[str], bool]) -> set[str]:
    """The runs (ids of ``configs``) that must wait: their source run is not ``ready`` (not done, or to be trained
    in the same pass)."""
    return {rid for rid, c in configs.items() if (src := source_run(c)) is not None and not ready(src)}
