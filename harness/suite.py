"""Suite files: schema, validation with precise messages, and expansion into runs.

A suite is a YAML grid: datasets x models x methods (each with its own parameter grid) x
initializations x seeds, with shared training settings and an optional budget. A list value of a
method parameter means "sweep over these values" (a parameter that itself takes a list is written as a
list of lists). Each run's identity is a stable hash of its fully resolved configuration.

A suite may instead hold several sub-grids under ``grids:``: each entry takes the suite's keys and replaces
them (``training`` and ``budget`` are merged key by key), so one file can run LeNet5 on full data beside
VGG16 under a budget, or the fixed-rank baselines at their own learning rate.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator

from harness.config import (
    Budget,
    RunSpec,
    Strict,
    Training,
    Validation,
    did_you_mean,
    identity_dump,
    run_id,
    validation_identity,
)
from harness.grid_size import MAX_RUNS_ENV, count_runs, run_limit, too_many
from harness.pretrained import SOURCE_METHOD, Source, check_file, parse_source
from harness.registry import DATASETS, METHODS, MODELS, UnknownNameError
from harness.tuning import MethodTuning, Tuning, check_space, choose, sample, score, trial_config, with_setting


class SuiteError(ValueError):
    """A suite that cannot be run; ``problems`` holds (key path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source, self.problems = source, problems
        lines = "\n".join(f"  {loc or '<top>'}: {msg}" for loc, msg in problems)
        super().__init__(f"invalid suite {source}:\n{lines}")


class MethodEntry(Strict):
    """One method of the grid with its parameter grid (a list value means a sweep)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    initializations: list[str | dict[str, Any]] | None = None  # a mapping: a trained model (harness.pretrained)
    tuning: MethodTuning | None = None  # keys this method adds to the suite's tuning space
    # the sweep's parameter settings, validated and resolved (defaults filled in) once, while the suite is parsed
    _settings: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    # its initializations resolved: a name, or the trained model a run starts from with the initialization it uses
    _inits: list[str | tuple[str, Source]] = PrivateAttr(default_factory=list)

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        return _check_registered(METHODS, v)


def _check_registered(registry, name: str) -> str:
    try:
        registry.get(name)
    except UnknownNameError as exc:
        raise ValueError(str(exc)) from None
    return name


GRID_KEYS = ("datasets", "models", "methods", "initializations", "seeds", "training", "budget", "validation", "tuning")


class Grid(Strict):
    """One sub-grid of a suite: what it names replaces the suite's keys (training, budget: key by key)."""

    name: str = ""
    datasets: Any = None
    models: Any = None
    methods: Any = None
    initializations: Any = None
    seeds: Any = None
    training: dict[str, Any] = Field(default_factory=dict)
    budget: dict[str, Any] = Field(default_factory=dict)
    validation: Any = None
    tuning: Any = None


def _default_inits() -> list[str | dict[str, Any]]:
    return ["default"]


class Suite(Strict):
    """A YAML grid of runs (or, with ``grids``, several; ``parts`` holds them resolved)."""

    name: str
    description: str = ""
    datasets: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    initializations: list[str | dict[str, Any]] = Field(default_factory=lambda: _default_inits(), min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    training: Training = Field(default_factory=Training)
    budget: Budget = Field(default_factory=Budget)
    validation: Validation = Field(default_factory=Validation)
    tuning: Tuning | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    references: str | None = None  # a file of published numbers the report shows beside these
    report: bool = False  # `harness run` ends by writing the report and printing its comparison table
    grids: list[Grid] | None = None
    parts: list[Suite] = Field(default_factory=list, exclude=True)

    @field_validator("methods", mode="before")
    @classmethod
    def _method_shorthand(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        return check_suite_name(v)

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: list[str]) -> list[str]:
        return [_check_registered(DATASETS, n) for n in v]

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        return [_check_registered(MODELS, n) for n in v]


NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def check_suite_name(name: str) -> str:
    """A suite's name is the folder of its results (``results/<name>/``): a plain name, never a path."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"suite name {name!r} is not a plain name: it names the results folder results/<name>/, so it takes "
            "letters, digits, '_', '.' and '-' (at most 100), starting with a letter, digit or '_' "
            "(not '.', '..' or an option such as '-x')"
        )
    return name


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p not in ("function-after[_registered()]",):
            out += ("." if out else "") + str(p)
    return out


def _problems(err: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for e in err.errors():
        loc = _loc(tuple(e["loc"]))
        if prefix:
            loc = prefix + ("." + loc if loc else "")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] not in ("value_error", "missing", "extra_forbidden") and "input" in e:
            msg += f" (got {e['input']!r})"
        out.append((loc, msg))
    return out


def sweep(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Cartesian product of a parameter grid: list values are swept, scalars held."""
    keys = sorted(params)
    values = [params[k] if isinstance(params[k], list) else [params[k]] for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _check_methods(suite: Suite, base_dir: Path | None = None) -> list[tuple[str, str]]:
    """Validate every method's parameter sweep and initializations; keep each entry's resolved settings and
    initializations (a trained model a run starts from: :mod:`harness.pretrained`, files read from ``base_dir``)."""
    problems = []
    files: dict[str, tuple[list[tuple[str, str]], Source]] = {}  # each file checked once: problems, digest
    for i, entry in enumerate(suite.methods):
        cls = METHODS.get(entry.name)
        entry._settings = []
        for combo in sweep(entry.params):
            try:
                entry._settings.append(identity_dump(cls.Params.model_validate(combo)))
            except ValidationError as err:
                for loc, msg in _problems(err, f"methods[{i}].params"):
                    problems.append((loc, msg.replace("Extra inputs are not permitted", _extra_message(cls, loc))))
        problems += _check_tuning(suite, i, entry, cls)
        inits = entry.initializations or suite.initializations
        entry._inits = []
        for j, init in enumerate(inits):
            where = f"methods[{i}].initializations[{j}]" if entry.initializations else f"initializations[{j}]"
            if isinstance(init, str):
                try:
                    entry._inits.append(cls.resolve_initialization(init))
                except ValueError as exc:
                    problems.append((where, str(exc)))
                continue
            found = _check_pretrained(suite, cls, init, where, base_dir or Path.cwd(), files)
            if isinstance(found, list):
                problems += found
            else:
                entry._inits.append(found)
    return problems


def _check_pretrained(
    suite: Suite,
    cls: Any,
    entry: dict[str, Any],
    where: str,
    base_dir: Path,
    files: dict[str, tuple[list[tuple[str, str]], Source]],
) -> tuple[str, Source] | list[tuple[str, str]]:
    """An initializations entry naming a trained model: the initialization the method starts from it with and the
    source, or the problems (key path, message)."""
    source, found = parse_source(entry, base_dir)
    if source is None:
        return [(f"{where}.{key}", msg) for key, msg in found]
    source.where = where
    if suite.tuning is not None:
        return [(where, "a tuned grid cannot start from a trained model (tune the grid without `from:`)")]
    usable = tuple(cls.pretrained_initializations)
    if not usable:
        return [
            (
                where,
                f"method {cls.name!r} cannot start from a trained model (it declares no initialization "
                "that uses given weights: Method.pretrained_initializations)",
            )
        ]
    init = source.as_ or usable[0]
    if init not in usable:
        return [
            (
                f"{where}.as",
                f"method {cls.name!r} starts from a trained model with {', '.join(usable)}"
                f"{did_you_mean(init, usable)}, not {init!r}",
            )
        ]
    if source.kind == "file":
        if source.value not in files:
            files[source.value] = (check_file(source, [(d, m) for d in suite.datasets for m in suite.models]), source)
        problems, checked = files[source.value]
        if problems:
            return [(f"{where}.{key}", msg) for key, msg in problems]
        source.digest = checked.digest
    return init, source


def _check_tuning(suite: Suite, i: int, entry: MethodEntry, cls: Any) -> list[tuple[str, str]]:
    """A method's tuning space checked against its parameters and the training settings (key paths: where each
    key was written, the suite's ``tuning.space`` or the entry's ``methods[i].tuning.space``)."""
    if suite.tuning is None:
        if entry.tuning is not None:
            return [(f"methods[{i}].tuning", "a method's tuning adds to the suite's: declare `tuning:` for the suite")]
        return []
    own = entry.tuning.space if entry.tuning else None
    space = suite.tuning.space.merged(own)
    problems = []
    for section, key, msg in check_space(space, suite.tuning, cls.Params, entry.name):
        mine = own is not None and key in getattr(own, section, {})
        where = f"methods[{i}].tuning.space" if mine else "tuning.space"
        problems.append((f"{where}.{section}.{key}" if key else where, msg))
    return problems


def _extra_message(cls, loc: str) -> str:
    key = loc.rsplit(".", 1)[-1]
    known = list(cls.Params.model_fields)
    return (
        f"method {cls.name!r} takes no parameter {key!r}{did_you_mean(key, known)}; "
        f"it takes: {', '.join(known) or '(none)'}"
    )


def _check_shapes(suite: Suite) -> tuple[list[tuple[str, str]], dict[int, Any]]:
    """Build every (model, dataset) pair and push one batch through it (:func:`probe_model`); returns the problems
    and, per model index, one model that built (on the meta device where it could be)."""
    problems = []
    built: dict[int, Any] = {}
    for m, mname in enumerate(suite.models):
        for dname in suite.datasets:
            spec = DATASETS.get(dname)
            try:
                model = probe_model(mname, spec.channels, spec.num_classes, spec.image_size)
                built.setdefault(m, model)
            except Exception as exc:
                size = f"{spec.channels}x{spec.image_size}x{spec.image_size} images"
                problems.append((f"models[{m}]", f"model {mname!r} cannot take dataset {dname!r} ({size}): {exc}"))
    return problems, built


def _check_fit(suite: Suite, built: dict[int, Any]) -> list[tuple[str, str]]:
    """Every resolved parameter setting of every method against every model (``Method.model_problems``: a layer
    pattern that matches nothing, a target the selected layers cannot meet), before anything trains."""
    problems = []
    for i, entry in enumerate(suite.methods):
        cls = METHODS.get(entry.name)
        for settings in entry._settings:
            method = cls(cls.Params.model_validate(settings))
            for m, model in built.items():
                for key, msg in method.model_problems(model):
                    problems.append((f"methods[{i}].params.{key}", f"model {suite.models[m]!r}: {msg}"))
    return problems


def probe_model(name: str, channels: int, num_classes: int, image_size: int) -> Any:
    """Build model ``name`` for the given images and classes and check that a batch of two gives a
    ``(2, num_classes)`` tensor: on the meta device (no memory, no compute), and where that fails on the CPU, so
    that what is raised is the model's own error (some models cannot be built on the meta device at all).
    Returns the model built."""
    import torch

    from harness.models import create_model

    def probe(device: str) -> Any:
        with torch.device(device):
            model = create_model(name, in_channels=channels, num_classes=num_classes, image_size=image_size)
            out = model(torch.zeros(2, channels, image_size, image_size))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"a batch of 2 images gives {got}, not a (2, {num_classes}) tensor of class scores")
        return model

    try:
        return probe("meta")
    except Exception:
        return probe("cpu")


def _check_size(parts: list[Suite], source: str, max_runs: int | None) -> None:
    """Refuse a suite of more runs than the limit (see :mod:`harness.grid_size`) before expanding it."""
    try:
        why = too_many([count_runs(p) for p in parts], run_limit() if max_runs is None else max_runs)
    except ValueError as exc:
        raise SuiteError(MAX_RUNS_ENV, [(MAX_RUNS_ENV, str(exc))]) from None
    if why:
        raise SuiteError(source, [("", why)])


def parse_suite(data: Any, source: str = "<suite>", max_runs: int | None = None, base_dir: Path | None = None) -> Suite:
    """Validate suite data (a dict); raise :class:`SuiteError` listing every problem found.

    More than ``max_runs`` runs (default: :func:`harness.grid_size.run_limit`; 0: none) is refused unexpanded.
    Files the suite names (a pretrained model's) are relative to ``base_dir`` (default: the current directory)."""
    if not isinstance(data, dict):
        raise SuiteError(source, [("", f"a suite must be a mapping of keys, got {type(data).__name__}")])
    if data.get("grids") is None:
        suite = _validate_grid(data, source, "")
        suite.parts = [suite]
        _check_size(suite.parts, source, max_runs)
        _check_grid(suite, source, "", base_dir)
        unlinked = _link_sources(suite.parts, [""], [""])
        if unlinked:
            raise SuiteError(source, unlinked)
        return suite
    grids = data["grids"]
    if not isinstance(grids, list) or not grids:
        raise SuiteError(source, [("grids", "grids must be a non-empty list of sub-grids")])
    problems: list[tuple[str, str]] = []
    valid: dict[int, Suite] = {}
    checked: list[Grid] = []
    for i, grid in enumerate(grids):
        try:
            checked.append(Grid.model_validate(grid))
            valid[i] = _validate_grid(grid_data(data, grid), source, f"grids[{i}]")
        except ValidationError as err:
            problems += _problems(err, f"grids[{i}]")
        except SuiteError as exc:
            problems += exc.problems
    _check_size(list(valid.values()), source, max_runs)
    for i, part in valid.items():
        try:
            _check_grid(part, source, f"grids[{i}]", base_dir)
        except SuiteError as exc:
            problems += exc.problems
    if not problems:
        names = [c.name for c in checked]
        problems = _link_sources(list(valid.values()), names, [f"grids[{i}]" for i in valid])
    if problems:
        raise SuiteError(source, list(dict.fromkeys(problems)))
    parts = list(valid.values())
    top = parts[0].model_copy(update={"grids": checked})
    top.parts = parts
    return top


def grid_data(data: dict[str, Any], grid: dict[str, Any]) -> dict[str, Any]:
    """The suite data of one sub-grid: the suite's keys with the grid's replacing them."""
    out = {k: v for k, v in data.items() if k != "grids"}
    for key in GRID_KEYS:
        if key in ("training", "budget"):
            out[key] = {**(data.get(key) or {}), **(grid.get(key) or {})}
        elif grid.get(key) is not None:
            out[key] = grid[key]
    return out


def _validate_grid(data: dict[str, Any], source: str, prefix: str) -> Suite:
    try:
        return Suite.model_validate(data)
    except ValidationError as err:
        raise SuiteError(source, _problems(err, prefix)) from None


def _check_grid(suite: Suite, source: str, prefix: str, base_dir: Path | None = None) -> None:
    """Every parameter setting validated (and resolved) and every model built: what the schema cannot check."""
    found = _check_methods(suite, base_dir)
    shape_problems, built = _check_shapes(suite)
    found += shape_problems
    if not found:
        found = _check_fit(suite, built)
    if suite.tuning is not None and suite.validation.size == 0:
        found.append(("validation", "tuning chooses on the validation split: give it a size above 0 (default 0.1)"))
    problems = [(f"{prefix}.{loc}" if prefix else loc, msg) for loc, msg in found]
    problems = list(dict.fromkeys(problems))  # a sweep repeats them
    if problems:
        raise SuiteError(source, problems)


def check_device(suite: Suite, device_type: str | None, source: str = "<suite>") -> None:
    """Refuse, before anything trains, a setting the runs' device cannot compute (``training.precision: fp16`` on
    a CPU): :class:`SuiteError` at the key path that sets it. ``device_type``: cpu or cuda, as the runs will get
    it (None: not known here, e.g. a Ray cluster's nodes; each run checks again when it starts)."""
    from harness.precision import precision_problem

    if device_type is None:
        return
    problems = []
    for i, part in enumerate(suite.parts or [suite]):
        problem = precision_problem(part.training.precision, device_type)
        if problem:
            own = suite.grids is not None and "precision" in suite.grids[i].training
            problems.append((f"grids[{i}].training.precision" if own else "training.precision", problem))
    if problems:
        raise SuiteError(source, list(dict.fromkeys(problems)))


def _link_sources(parts: list[Suite], names: list[str], prefixes: list[str]) -> list[tuple[str, str]]:
    """Give every ``{grid: NAME}`` source the ids of the grid's ``full`` runs its runs start from (by dataset, model
    and seed); the problems (key path, message) where that grid cannot be a source."""
    problems = []
    by_name = {n: (p, pre) for n, p, pre in zip(names, parts, prefixes, strict=True) if n}
    for part, name, prefix in zip(parts, names, prefixes, strict=True):
        for entry in part.methods:
            for init in entry._inits:
                if isinstance(init, str) or init[1].kind != "grid":
                    continue
                src = init[1]
                where = f"{prefix}.{src.where}.from.grid" if prefix else f"{src.where}.from.grid"
                why = _grid_source(src, by_name, name, part)
                if why:
                    problems.append((where, why))
    return problems


def _grid_source(src: Source, by_name: dict[str, tuple[Suite, str]], own: str, part: Suite) -> str:
    """Fill ``src.runs`` from the grid it names; why it cannot be a source ('' when it can)."""
    if src.value not in by_name:
        known = [n for n in by_name if n != own]
        if not known:
            return f"no grid {src.value!r}: a grid source names another grid of this suite (under grids:)"
        return f"no grid named {src.value!r}{did_you_mean(src.value, known)}; grids: {', '.join(known)}"
    if src.value == own:
        return "a grid cannot start from its own runs"
    grid, _ = by_name[src.value]
    if grid.tuning is not None:
        return f"grid {src.value!r} is tuned: its runs are known only once tuning has chosen; name a grid of full runs"
    if validation_identity(grid.validation) != validation_identity(part.validation):
        return (
            f"grid {src.value!r} has another validation split: its trained models may have trained on this grid's "
            "validation images; give both grids the same `validation`"
        )
    dense = [e for e in grid.methods if e.name == SOURCE_METHOD]
    if any(not isinstance(init, str) for e in dense for init in e._inits):
        return f"grid {src.value!r} starts from trained models itself; name a grid whose full runs train from scratch"
    found: dict[tuple[str, str, int], list[RunSpec]] = {}
    for run in _expand_grid(grid.model_copy(update={"methods": dense}), None):
        c = run.config
        found.setdefault((c["dataset"], c["model"], c["seed"]), []).append(run)
    for key in itertools.product(part.datasets, part.models, part.seeds):
        runs = found.get(key, [])
        dataset, model, seed = key
        if len(runs) != 1:
            what = "no full run" if not runs else f"{len(runs)} full runs (several settings or initializations)"
            return (
                f"grid {src.value!r} has {what} of {model!r} on {dataset!r} with seed {seed}: a grid source has one "
                "full run for each dataset, model and seed of the grid that starts from it"
            )
        src.runs[key] = runs[0].id
    return ""


def pretrained_sources(suite: Suite) -> list[tuple[str, Source, Suite]]:
    """Every trained model the suite's runs start from: (the entry's key path, the source, its grid)."""
    parts = suite.parts or [suite]
    prefixes = [f"grids[{i}]." for i in range(len(parts))] if suite.grids else [""]
    out = []
    for prefix, part in zip(prefixes, parts, strict=True):
        for entry in part.methods:
            for init in entry._inits:
                if not isinstance(init, str):
                    out.append((prefix + init[1].where, init[1], part))
    return list({(w, id(src)): (w, src, p) for w, src, p in out}.values())


def load_suite(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    grids: list[str] | None = None,
    max_runs: int | None = None,
) -> Suite:
    """Read and validate a suite file; ``overrides`` are merged into its top-level sections; ``grids``
    keeps only the sub-grids of those names; ``max_runs`` as in :func:`parse_suite`."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(str(path), [("", "file not found")])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(str(path), [("", f"not valid YAML: {exc}")]) from None
    if grids and isinstance(data, dict):
        data = select_grids(data, grids, str(path))
    if overrides and isinstance(data, dict):
        data = apply_overrides(data, overrides)
    return parse_suite(data, str(path), max_runs, path.parent)


def select_grids(data: dict[str, Any], names: list[str], source: str = "<suite>") -> dict[str, Any]:
    """The suite data with only the named sub-grids (run identities are unchanged)."""
    grids = data.get("grids")
    if not isinstance(grids, list):
        raise SuiteError(source, [("grids", "this suite has no grids to select from")])
    known = [g.get("name", "") for g in grids if isinstance(g, dict)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SuiteError(
            source,
            [("grids", f"no grid named {n!r}{did_you_mean(n, known)}; grids: {', '.join(known)}") for n in unknown],
        )
    keep = set(names)
    while True:  # and the grids whose full runs the selected ones start from (harness.pretrained)
        more = {n for g in grids if isinstance(g, dict) and g.get("name", "") in keep for n in source_grids(data, g)}
        if more <= keep:
            break
        keep |= more
    return {**data, "grids": [g for g in grids if isinstance(g, dict) and g.get("name", "") in keep]}


def source_grids(data: dict[str, Any], grid: dict[str, Any]) -> set[str]:
    """The grids a sub-grid's runs start from (``initializations: [{from: {grid: NAME}}]``, its own or the suite's,
    or a method's), read from the raw suite data."""
    lists = [grid.get("initializations") or data.get("initializations") or []]
    methods = grid.get("methods") if grid.get("methods") is not None else data.get("methods")
    lists += [m.get("initializations") or [] for m in methods or [] if isinstance(m, dict)]
    out = set()
    for inits in lists:
        for init in inits if isinstance(inits, list) else []:
            src = init.get("from") if isinstance(init, dict) else None
            if isinstance(src, dict) and isinstance(src.get("grid"), str):
                out.add(src["grid"])
    return out


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge overrides: dict sections (training, budget) are updated key by key, others replaced.

    In a suite with ``grids``, a dict section is merged into every grid too (the override wins over what
    a grid sets), and ``models`` / ``datasets`` select among the grids' own: grids left with none are
    dropped, and a name no grid lists is an error.
    """
    grids = data.get("grids")
    gridded = isinstance(grids, list) and all(isinstance(g, dict) for g in grids)
    selections = {k: overrides[k] for k in ("models", "datasets") if k in overrides} if gridded else {}
    out = dict(data)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        elif key not in selections:
            out[key] = value
    if not gridded or not isinstance(grids, list):
        return out
    listed: dict[str, set[str]] = {k: set() for k in selections}
    out["grids"] = []
    for grid in grids:
        g = dict(grid)
        for key, value in overrides.items():
            if isinstance(value, dict):
                g[key] = {**(g.get(key) or {}), **value}
        for key, wanted in selections.items():
            own: list[str] = list(g[key] if g.get(key) is not None else data.get(key) or [])
            listed[key].update(own)
            g[key] = [n for n in own if n in wanted]
        if all(g[k] for k in selections):
            out["grids"].append(g)
    for key, wanted in selections.items():
        unknown = [n for n in wanted if n not in listed[key]]
        if unknown:
            raise SuiteError(
                "--" + key, [(key, f"{unknown} not in this suite's grids; it has: {', '.join(sorted(listed[key]))}")]
            )
    return out


Results = Mapping[str, Mapping[str, Any]]


def expand(suite: Suite, results: Results | None = None) -> list[RunSpec]:
    """All runs of a suite (every grid of it), in grid order, without duplicates.

    A tuned grid gives its trials, and, for each setting whose trials are all settled in ``results`` (stored runs
    by id), the runs of the chosen setting with the suite's seeds (see :mod:`harness.tuning`)."""
    return list(iter_runs(suite, results))


def iter_runs(suite: Suite, results: Results | None = None) -> Iterator[RunSpec]:
    """The runs of :func:`expand`, made one at a time (only their ids are kept, to drop duplicates)."""
    seen: set[str] = set()
    for part in suite.parts or [suite]:
        for spec in _expand_grid(part, results):
            if spec.id not in seen:
                seen.add(spec.id)
                yield spec


def _expand_grid(suite: Suite, results: Results | None) -> Iterator[RunSpec]:
    training = identity_dump(suite.training)
    budget = identity_dump(suite.budget)
    if budget["epochs"] is not None:
        training["epochs"] = min(training["epochs"], budget["epochs"])
    validation = validation_identity(suite.validation)
    for dataset, model, entry in itertools.product(suite.datasets, suite.models, suite.methods):
        if not entry._settings:
            raise ValueError("expand a suite read by parse_suite or load_suite (they resolve its parameters)")
        cls = METHODS.get(entry.name)
        for params in entry._settings:  # resolved once, by parse_suite
            for init in entry._inits:  # a name, or (the name, the trained model the runs start from)
                base: dict[str, Any] = {
                    "dataset": dataset,
                    "model": model,
                    "method": entry.name,
                    "params": params,
                    "initialization": init if isinstance(init, str) else init[0],
                    "seed": 0,
                    "training": training,
                    "budget": budget,
                }
                if validation is not None:
                    base["validation"] = validation
                if not isinstance(init, str):  # its source's identity (a run's id, a file's digest), never a path
                    for seed in suite.seeds:
                        yield RunSpec.of({**base, "seed": seed, "pretrained": init[1].identity(dataset, model, seed)})
                elif suite.tuning is None:
                    for seed in suite.seeds:
                        yield RunSpec.of({**base, "seed": seed})
                else:
                    yield from _tuned(suite.tuning, entry, cls, base, suite.seeds, results)


def tuning_space(tuning: Tuning, entry: MethodEntry) -> Any:
    """The space a method entry is tuned over: the suite's, with the entry's own keys added."""
    return tuning.space.merged(entry.tuning.space if entry.tuning else None)


def _tuned(
    tuning: Tuning, entry: MethodEntry, cls: Any, base: dict[str, Any], seeds: list[int], results: Results | None
) -> Iterator[RunSpec]:
    """A tuned setting's trials, then (once they are all settled in ``results``) its chosen setting's runs."""
    space = tuning_space(tuning, entry)
    tid = tuning.ident(space)
    settings = sample(space, tuning)
    keys = [f"{section}.{key}" for section, key, _ in space.dimensions()]
    about = {
        "tuning": tid,
        "setting": run_id(base)[:10],  # the setting tuned (a sweep may tune several with one space)
        "space": space.describe(),
        "keys": keys,
        "trials": tuning.trials,
        "metric": tuning.metric,
    }
    trials = [
        RunSpec.of({**trial_config(base, s, cls.Params, tuning), "trial": {**about, "index": i}})
        for i, s in enumerate(settings)
    ]
    yield from trials
    if results is None:
        return
    try:
        scores = [score(results.get(t.id), tuning.metric) for t in trials]
    except KeyError:  # a trial not yet settled: nothing is chosen yet
        return
    best = choose(scores)
    if best is None:
        return
    chosen = with_setting(base, settings[best], cls.Params)
    for seed in seeds:
        tuned = {"tuning": tid, "setting": about["setting"], "trial": best, "keys": keys}
        yield RunSpec.of({**chosen, "seed": seed, "tuned": tuned})
