"""Published results directories: a ``PUBLISHED`` file beside the store marks one (visible in git).

A published store holds the numbers a README quotes. ``harness run``, ``harness merge --into`` and
``harness check --results`` refuse it as a write target (exit 2) unless ``--into-published`` says so on
purpose, and ``harness report`` writes into it only from its own store (rebuilding its report). Deleting the
marker unpublishes the directory.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "PUBLISHED"
FLAG = "--into-published"


def is_published(directory: str | Path) -> bool:
    """Whether ``directory`` holds the ``PUBLISHED`` marker."""
    return (Path(directory) / MARKER).is_file()


def published_owner(path: str | Path) -> Path | None:
    """The published directory that ``path`` is or lies in (the nearest one, resolved); None if there is none."""
    p = Path(path).resolve()
    return next((d for d in (p, *p.parents) if is_published(d)), None)


def write_refusal(directory: str | Path, command: str, instead: str, flag: bool = True) -> str:
    """Why ``command`` will not write into the published ``directory``, and what to do instead."""
    d = Path(directory)
    text = f"{d} is published (marked by {d / MARKER}): {command} does not write into it. Use {instead}"
    if flag:
        text += f", or pass {FLAG} to add to the published store on purpose (then rebuild its report)"
    return text + "."


def report_refusal(out: str | Path, owner: Path, source: str | Path) -> str:
    """Why a report of ``source`` is not written to ``out`` inside the published ``owner``."""
    return (
        f"{out} lies in the published results directory {owner}, and this report is built from {source}: "
        f"only {owner}'s own store may rebuild it. Choose another --out (the default is report/ in the results "
        "directory you report on)."
    )
