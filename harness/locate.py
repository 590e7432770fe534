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


def suite_candidates(suite: str | Path) -> list[Path]:
    """Where a suite named ``suite`` is looked for, in order: the path itself, then ./suites/NAME(.yaml)."""
    p = Path(suite)
    cands = [p, Path("suites") / p]
    if p.suffix not in (".yaml", ".yml"):
        cands.append(Path("suites") / f"{p}.yaml")
    return list(dict.fromkeys(cands))


def resolve_suite_path(suite: str | Path) -> Path:
    """A suite file path, or the name of a file in ./suites/ (with or without .yaml); the path as given when
    there is none (see :func:`suite_not_found`)."""
    return next((c for c in suite_candidates(suite) if c.is_file()), Path(suite))


# The suites that come with harness, in its checkout (absent when harness is installed without them).
BUNDLED_SUITES = Path(__file__).resolve().parents[1] / "suites"


def suite_not_found(suite: str | Path) -> str:
    """What was tried for a suite that resolves to no file, and what to do."""
    tried = ", ".join(str(c) for c in suite_candidates(suite))
    text = (
        f"tried {tried} (relative to {Path.cwd()}); suite names are looked up in ./suites/ of the current "
        "directory: `harness list suites` lists them, or give the path of a suite file"
    )
    bundled = [c for c in (BUNDLED_SUITES / f"{suite}.yaml", BUNDLED_SUITES / str(suite)) if c.is_file()]
    if bundled and Path("suites").resolve() != BUNDLED_SUITES:
        text += f"; the suite file of that name that comes with harness is {bundled[0]}"
    return text


def no_suites_here() -> str:
    """Said by ``harness list suites`` where the current directory has no ./suites/ folder."""
    text = f"no suites/ folder in {Path.cwd()} (suite names are looked up there); give a suite file's path"
    if BUNDLED_SUITES.is_dir():
        text += f"; the suites that come with harness are in {BUNDLED_SUITES}"
    return text


def default_results(suite: Suite, budget: bool = False) -> Path:
    """Where a suite's results live unless ``--results`` says otherwise: ``results/<name>/``, or
    ``results/<name>-budget/`` for a run under a command-line ``--budget`` (kept apart from the main store)."""
    return Path("results") / (f"{suite.name}-budget" if budget else suite.name)


@dataclass(frozen=True)
class Target:
    """A resolved target: its store, and the suite (with the file it came from) when a suite was named."""

    store: Store
    suite: Suite | None = None
    path: Path | None = None

    def runs(self) -> list[RunSpec] | None:
        """The suite's runs (a tuned suite: its trials, and the chosen settings' runs once the trials are settled);
        None for a results directory (all of its runs count)."""
        if self.suite is None:
            return None
        stored = {r["id"]: r for r in self.store.runs()} if self.store.exists() else None
        return expand(self.suite, stored)

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
        raise TargetError(f"{target} is neither a results directory nor a suite file: {suite_not_found(target)}")
    suite = load_suite(path)
    return Target(Store(results or default_results(suite)), suite, path)
