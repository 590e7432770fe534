"""The ``harness`` command line: run, status, merge, list, show, export, export-model, report, check.

Each command lives in the module of its kind (:mod:`harness.cli.running`, :mod:`harness.cli.browse`,
:mod:`harness.cli.reporting`, :mod:`harness.cli.show`); this module assembles them into one typer app, the
``harness`` entry point.
"""

from __future__ import annotations

import typer

from harness.cli.browse import export, list_, merge, status
from harness.cli.flags import Command, Group
from harness.cli.model_export import export_model
from harness.cli.reporting import report
from harness.cli.running import check, run
from harness.cli.show import show

app = typer.Typer(
    help="Train factorized neural networks over a YAML grid, store every result, and compare the methods.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)
app.command()(run)
app.command()(status)
app.command()(merge)
app.command("list")(list_)
app.command()(show)
app.command()(export)
app.command("export-model")(export_model)
app.command()(report)
app.command()(check)
for _info in app.registered_commands:  # every command's --help shows flags without a "<bool>" type
    if _info.cls in (None, typer.core.TyperCommand):
        _info.cls = Command

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    app()
