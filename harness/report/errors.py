"""Why a report cannot be made, with the exit code the command line gives for it."""

from __future__ import annotations


class ReportError(ValueError):
    """A report that cannot be made as asked (bad query, column, reference file or method): exit code 2."""

    exit_code = 2


class NoFinishedRuns(ReportError):
    """The store (or the selection) holds no finished run to report: exit code 1."""

    exit_code = 1
