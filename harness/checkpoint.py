"""A run's checkpoint: its whole training state after an epoch, so that a killed run resumes where it stopped.

After every epoch of the loop (and once after ``Method.before_training`` when the method trained there, so that
IMP's rounds are not trained again) the run's state is written to ``RESULTS/runs/<run id>/checkpoint.pt``,
replacing the previous one whole or not at all (a temporary file in the same directory, flushed to disk, then
renamed over it). The state is everything the rest of the run depends on:

* the model's state dict (factor shapes and ranks included: loading gives the freshly prepared model the stored
  shapes through :meth:`harness.Method.match_state`, as :func:`harness.load_model` does);
* the optimizer's state dict (momentum and Adam moments, DLRT/TDLRT's transported momentum: loaded once the
  parameters have their stored shapes, so its tensors fit them);
* the method's own state (:meth:`harness.Method.state_dict`: DLRT's truncation-schedule phase and tau warm-up
  count);
* every random number generator: torch's CPU and CUDA generators, the loop's data-order generator (augmentation
  draws from it too), Python's and NumPy's;
* the epochs done so far (their rows, given back to the store on resume: the store drops a run's partial epochs
  when the run is given back), the passes trained before the loop, the model kept so far as the run's judged
  model (the epoch best on validation), and the peak memory seen so far.

The learning rate follows from the epoch (``harness.optim.lr_factor``), so the number of epochs done is its
position. The file is written with ``torch.save`` and read with ``torch.load(weights_only=True)``: tensors,
numbers, strings, lists and dicts only, never arbitrary pickled objects. A checkpoint of another run, of another
format, or one that cannot be read is refused (the run starts clean and says why).
"""

from __future__ import annotations

import json
import os
import random
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.model_file import run_dir

FORMAT = "harness-checkpoint/1"
CHECKPOINT_FILE = "checkpoint.pt"
_TMP_GLOB = f".{CHECKPOINT_FILE}.*.tmp"
_RECORDS = ("rows", "session", "extra")  # a run's records in a checkpoint: JSON values


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, of another format, or of another run."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint that could not be written (``cause``: the OSError, e.g. a full disk)."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(f"cannot write the checkpoint {path}: {cause}")
        self.path, self.cause = path, cause


def checkpoint_path(results: str | Path, run_id: str) -> Path:
    """Where a run's checkpoint is kept: ``RESULTS/runs/<run id>/checkpoint.pt``."""
    return run_dir(results, run_id) / CHECKPOINT_FILE


@dataclass
class RunState:
    """A run's state after ``epochs_done`` epochs of its loop (0: right after ``before_training``)."""

    run_id: str
    epochs_done: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    method: dict[str, Any]
    rng: dict[str, Any]
    rows: list[dict[str, Any]]  # the epoch records so far, as the store keeps them
    session: dict[str, Any]  # what Method.before_training did (harness.session.Session.state_dict)
    selected: torch.Tensor | None = None  # the judged model's file so far (uint8), with a validation split
    peak_bytes: int = 0  # the peak memory measured so far
    largest: int = 0  # bytes of the largest checkpoint the run wrote before this one
    extra: dict[str, Any] = field(default_factory=dict)  # metrics measured before the loop (start_acc)
    format: str = FORMAT

    @property
    def selected_bytes(self) -> bytes | None:
        return None if self.selected is None else self.selected.numpy().tobytes()


def as_tensor(data: bytes | None) -> torch.Tensor | None:
    """Bytes as a uint8 tensor (how a checkpoint holds a model file)."""
    return None if data is None else torch.frombuffer(bytearray(data), dtype=torch.uint8)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict on the CPU, as a checkpoint keeps it."""
    return {k: v.detach().to("cpu") for k, v in model.state_dict().items()}


def snapshot(
    run_id: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    method: Any,
    loop_rng: torch.Generator,
    rows: list[dict[str, Any]],
    session: dict[str, Any],
    selected: bytes | None,
    peak_bytes: int,
    extra: dict[str, Any],
) -> RunState:
    """The state of a run now (after ``len(rows)`` epochs): what :func:`save_checkpoint` writes."""
    return RunState(
        run_id,
        len(rows),
        model_state(model),
        optimizer.state_dict(),
        method.state_dict(),
        capture_rng(loop_rng),
        rows,
        session,
        as_tensor(selected),
        peak_bytes,
        extra=extra,
    )


def restore_model(state: RunState, method: Any, model: torch.nn.Module) -> None:
    """Load a checkpoint's model into the freshly prepared one: its tensors given the stored shapes first
    (:meth:`harness.Method.match_state`: ranks that changed, pruning masks), then its weights."""
    method.match_state(model, {k: tuple(t.shape) for k, t in state.model.items()})
    model.load_state_dict(state.model, strict=True)


@dataclass
class Checkpoints:
    """One run's checkpoint file (``path`` None: the run keeps none) and the largest one it wrote."""

    path: Path | None
    run_id: str
    largest: int = 0

    @classmethod
    def of(cls, results: Path | None, run_id: str) -> Checkpoints:
        """The checkpoints of run ``run_id`` in results directory ``results`` (None: none)."""
        return cls(None if results is None else checkpoint_path(results, run_id), run_id)

    def load(self) -> tuple[RunState | None, str | None]:
        """The state to resume from (None: start from epoch 0) and, where a checkpoint was there but is refused,
        why."""
        if self.path is None or not self.path.is_file():
            return None, None
        try:
            state = load_checkpoint(self.path, self.run_id)
        except CheckpointError as exc:
            return None, f"{exc}: starting from epoch 0"
        self.largest = max(state.largest, self.path.stat().st_size)
        return state, None

    def save(self, state: RunState) -> None:
        """Write the run's state (nothing without a path); a failed write raises :class:`CheckpointWriteError`."""
        if self.path is None:
            return
        state.largest = self.largest
        try:
            size = save_checkpoint(self.path, state)
        except OSError as exc:
            raise CheckpointWriteError(self.path, exc) from exc
        self.largest = max(self.largest, size)


# -- random number generators ---------------------------------------------------------------------------------
def capture_rng(loop: torch.Generator) -> dict[str, Any]:
    """The state of every generator a run draws from: torch's CPU and CUDA ones, the loop's, Python's, NumPy's."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loop": loop.get_state(),
        "python": [version, torch.tensor(internal, dtype=torch.int64), py_gauss],  # a tensor: a checkpoint's size
        # does not depend on the values (pickled ints take more bytes above 2**31)
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), torch.tensor([pos, has_gauss]), gauss],
    }


def restore_rng(rng: dict[str, Any], loop: torch.Generator) -> None:
    """Set every generator to the state :func:`capture_rng` gave."""
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    loop.set_state(rng["loop"])
    version, internal, py_gauss = rng["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), py_gauss))
    kind, keys, counts, gauss = rng["numpy"]
    pos, has_gauss = (int(v) for v in counts.tolist())
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


# -- the file ---------------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, state: RunState) -> int:
    """Write ``state`` to ``path`` atomically (a temporary file beside it, flushed to disk, renamed over it, the
    directory flushed); returns the file's size in bytes."""
    data = {f.name: getattr(state, f.name) for f in fields(state)}
    for key in _RECORDS:  # as plain JSON values: the same bytes whether they were made here or read back
        data[key] = json.loads(json.dumps(data[key]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _sync_dir(path.parent)
    return size


def _sync_dir(folder: Path) -> None:
    """Flush a directory's entries (the rename) to disk where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: Path, run_id: str) -> RunState:
    """The state in a checkpoint file of run ``run_id``; raises :class:`CheckpointError` saying why it cannot be
    used (unreadable or damaged, another format, another run)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, damaged, or holding what weights_only refuses
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: checkpoint format {got!r}, this harness reads {FORMAT!r}")
    if data.get("run_id") != run_id:
        raise CheckpointError(f"{path}: a checkpoint of run {data.get('run_id')!r}, not of run {run_id!r}")
    try:
        state = RunState(**data)
    except TypeError as exc:
        raise CheckpointError(f"{path}: not a checkpoint of this harness: {exc}") from None
    if state.epochs_done != len(state.rows):
        raise CheckpointError(f"{path}: says {state.epochs_done} epochs done but holds {len(state.rows)} epoch rows")
    return state


def remove_checkpoint(results: str | Path, run_id: str) -> int:
    """Delete a run's checkpoint (and any temporary file a killed write left); returns the bytes freed."""
    folder = run_dir(results, run_id)
    freed = 0
    for p in [folder / CHECKPOINT_FILE, *folder.glob(_TMP_GLOB)]:
        try:
            size = p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            continue
        freed += size
    return freed


def checkpoints_on_disk(results: str | Path, run_ids: list[str] | None = None) -> tuple[int, int]:
    """How many checkpoints a results directory holds (of ``run_ids``, or all) and their bytes in all."""
    folder = Path(results) / "runs"
    if run_ids is None:
        paths = list(folder.glob(f"*/{CHECKPOINT_FILE}"))
    else:
        paths = [p for p in (checkpoint_path(results, r) for r in run_ids) if p.is_file()]
    sizes = []
    for p in paths:
        try:
            sizes.append(p.stat().st_size)
        except FileNotFoundError:
            continue
    return len(sizes), sum(sizes)
