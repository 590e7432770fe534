"""``harness export-model RESULTS --run RUN_ID -o FILE``: a finished run's trained model as a file of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.common import console, fail, open_target, store_errors, stored
from harness.config import RunStatus, short_run_labels
from harness.model_file import ModelFileError, read_model_file, run_model_path
from harness.store import Store


def find_run(store: Store, wanted: str) -> tuple[dict[str, Any], str]:
    """The run whose id is ``wanted`` or starts with it, and its label; exits 2 for none, several, or a run not
    finished."""
    runs = store.runs()
    labels = dict(zip([r["id"] for r in runs], short_run_labels([r["config"] for r in runs]), strict=True))
    exact = [r for r in runs if r["id"] == wanted]
    hits = exact or ([r for r in runs if r["id"].startswith(wanted)] if wanted else [])
    if not hits:
        fail(f"no run with id {wanted!r} (or starting with it) in {store.dir}; `harness export {store.dir}` lists them")
    if len(hits) > 1:
        ids = ", ".join(f"{r['id']} ({labels[r['id']]})" for r in hits[:10])
        fail(f"{len(hits)} runs of {store.dir} have ids starting with {wanted!r}: {ids}; give more of the id")
    run = hits[0]
    if run["status"] != RunStatus.DONE:
        fail(f"run {run['id']} ({labels[run['id']]}) is {run['status']}: only a finished run keeps its model")
    return run, labels[run["id"]]


def verify_accuracy(path: Path, run: dict[str, Any], data_root: Path | None) -> tuple[float, float, str]:
    """The test accuracy of the model rebuilt from ``path`` on the run's test data, the run's stored one (of the epoch
    the kept model is of: the best on validation, else the last), and the
    device evaluated on: the run's own where this machine has it (numerics differ between devices), else the CPU."""
    import torch

    from harness.config import Training
    from harness.data import load_tensors
    from harness.model_file import load_model
    from harness.train import evaluate

    config = run["config"]
    device = str(run["metrics"].get("device") or "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    budget = config.get("budget") or {}
    data = load_tensors(config["dataset"], data_root, device, budget.get("train_subset"), budget.get("test_subset"))
    batch = Training.model_validate(config["training"]).eval_batch_size
    acc, _ = evaluate(load_model(path, device), data.test_x, data.test_y, batch)
    m = run["metrics"]
    stored = m.get("test_acc_at_best_val", m["final_acc"])  # the kept model is the judged epoch's (model_epoch)
    return acc, stored, device


@store_errors
def export_model(
    results: Annotated[str, typer.Argument(help="A results directory (or a suite file: its results directory).")],
    run: Annotated[str, typer.Option("--run", help="The run's id, or the start of it (harness export lists ids).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The model file to write (e.g. model.safetensors).")],
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Rebuild the network from the written file, evaluate it on the run's test data."),
    ] = False,
    data_root: Annotated[
        Path | None,
        typer.Option("--data-root", envvar="HARNESS_DATA", help="Where datasets live (for --verify)."),
    ] = None,
) -> None:
    """Write a finished run's trained model (safetensors, its structure in the header; never a pickle).

    harness.load_model(FILE) rebuilds the network from the file alone, factorized layers included. The stored file
    is checked first: one changed or truncated since its run wrote it is refused (exit 2)."""
    from harness.report.atomic import replacing

    store = stored(open_target(results)).store
    found, label = find_run(store, run)
    source = run_model_path(store.dir, found["id"])
    if not source.is_file():
        fail(
            f"run {found['id']} ({label}) has no model file ({source}): it finished before harness kept models"
            ", or its runs/ folder was not copied with the store; train it again (harness run --force)"
        )
    try:
        read_model_file(source)  # checksum and structure, before anything is written
    except ModelFileError as exc:
        fail(f"the stored model is refused: {exc}")
    data = source.read_bytes()
    if out.is_dir():
        fail(f"--out {out} is a directory; give a file name (e.g. {out / 'model.safetensors'})")
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp:
        tmp.write_bytes(data)
    console.print(
        f"wrote {out} ({len(data):,} bytes): {label}; load it with harness.load_model({str(out)!r})",
        highlight=False,
        markup=False,
    )
    if verify:
        try:
            acc, stored_acc, device = verify_accuracy(out, found, data_root)
        except (ModelFileError, FileNotFoundError) as exc:
            fail(str(exc))
        same = "the same" if acc == stored_acc else "DIFFERENT"
        where = (
            "" if device == found["metrics"].get("device") else f"; evaluated on {device}, the run on another device"
        )
        console.print(
            f"rebuilt from {out}: test accuracy {100 * acc:.2f}% ({same} as the stored run: {100 * stored_acc:.2f}%"
            f"{where})",
            highlight=False,
            markup=False,
        )
        if acc != stored_acc:
            raise typer.Exit(1)
