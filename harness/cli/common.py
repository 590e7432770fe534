"""What the commands share: the consoles, failing with a message, reading a suite or a target."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.markup import escape

from harness.locate import Target, TargetError, locate, resolve_suite_path, suite_not_found
from harness.progress import make_console
from harness.store import StoreError
from harness.suite import Suite, SuiteError, load_suite

console = make_console()
err_console = make_console(stderr=True)

EXIT_INVALID = 2  # exit codes: 1 failed runs, 2 invalid input, 3-5 the store (harness.store_errors), 128+signal
P = ParamSpec("P")  # a command's parameters and result, for decorators that keep its signature
R = TypeVar("R")


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """Print ``error: message`` (plain text, never markup) on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def store_errors(command: Callable[P, R]) -> Callable[P, R]:
    """A command whose store cannot be read or written exits with the store error's message and exit code
    (3 cannot write, 4 disk full, 5 damaged), never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except StoreError as exc:
            fail(str(exc), exc.exit_code)

    return wrapper


def names(csv: str | None) -> list[str] | None:
    """A comma-separated option as a list of names (None when not given)."""
    return [n.strip() for n in csv.split(",") if n.strip()] if csv else None


def parse_budget(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--budget takes KEY=VALUE (e.g. --budget train_subset=5000 --budget epochs=2), got {item!r}")
        out[key.strip()] = None if value.strip().lower() in ("none", "null", "") else value.strip()
    return out


def load(
    suite: str,
    budget: list[str] | None = None,
    models: str | None = None,
    datasets: str | None = None,
    grids: str | None = None,
    max_runs: int | None = None,
) -> tuple[Path, Suite]:
    """A suite file (or the name of one in ./suites/), with the command line's overrides; exits when invalid."""
    path = resolve_suite_path(suite)
    if not path.is_file():
        fail(f"no suite file {suite}: {suite_not_found(suite)}")
    overrides: dict[str, Any] = {}
    if budget:
        overrides["budget"] = parse_budget(budget)
    if models:
        overrides["models"] = names(models)
    if datasets:
        overrides["datasets"] = names(datasets)
    try:
        return path, load_suite(path, overrides, names(grids), max_runs)
    except SuiteError as exc:
        fail(str(exc))


def open_target(name: str, results: Path | None = None) -> Target:
    """A suite file or results directory (see :func:`harness.locate.locate`); exits when it is neither."""
    try:
        return locate(name, results)
    except (SuiteError, TargetError) as exc:
        fail(str(exc))


def stored(t: Target) -> Target:
    """The target, exiting when its store does not exist yet."""
    try:
        t.require_store()
    except TargetError as exc:
        fail(str(exc))
    return t
