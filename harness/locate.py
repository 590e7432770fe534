"""What a command's target names: a suite file (its runs and its results directory) or a results directory.

Every command that takes either (status, export, report, ...) resolves it here, so a target means the same
thing to all of them: an existing directory is a results directory; anything else is a suite file, given
as a path or as the name of a file in ``./suites/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.config import RunSpec
from harness.store import Store
from harness.suite import Suite, expand, load_suite


class TargetError(ValueError):
    """A target that names neither a suite file nor a results directory, or a store that is not there."""


def resolve_suite_path(suite: str | Path) -> Path:
    """A suite file path, or the name of a file in ./suites/ (with or without .yaml)."""
    p = Path(suite)
    if p.is_file():
        return p
    for cand in (Path("suites") / suite, Path("suites") / f"{suite}.yaml"):
        if cand.is_file():
            return cand
    return p


def default_results(suite: Suite) -> Path:
    """Where a suite's results live unless ``--results`` says otherwise."""
    return Path("results") / suite.name


@dataclass(frozen=True)
class Target:
    """A resolved target: its store, and the suite (with the file it came from) when a suite was named."""

    store: Store
    suite: Suite | None = None
    path: Path | None = None

    def runs(self) -> list[RunSpec] | None:
        """The suite's runs; None for a results directory (all of its runs count)."""
        return expand(self.suite) if self.suite is not None else None

    def references(self) -> list[Path]:
        """The suite's file of published numbers, beside the suite file, if it names one."""
        if self.suite is None or not self.suite.references or self.path is None:
            return []
        return [self.path.parent / self.suite.references]

    def require_store(self) -> Store:
        """The store, raising :class:`TargetError` when it does not exist yet."""
        if not self.store.exists():
            raise TargetError(f"no results store at {self.store.path}; run the suite first (harness run SUITE)")
        return self.store


def locate(target: str | Path, results: Path | None = None) -> Target:
    """Resolve a suite file or results directory; ``results`` overrides the store's directory.

    Raises :class:`TargetError` for a path that is neither, and :class:`harness.suite.SuiteError` for a
    suite file that does not validate.
    """
    if Path(target).is_dir():
        return Target(Store(results or target))
    path = resolve_suite_path(target)
    if not path.is_file():
        raise TargetError(f"{target} is neither a results directory nor a suite file")
    suite = load_suite(path)
    return Target(Store(results or default_results(suite)), suite, path)
