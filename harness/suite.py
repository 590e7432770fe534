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

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.registry import DATASETS, METHODS, MODELS, UnknownNameError, did_you_mean


class SuiteError(ValueError):
    """A suite that cannot be run; ``problems`` holds (key path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source, self.problems = source, problems
        lines = "\n".join(f"  {loc or '<top>'}: {msg}" for loc, msg in problems)
        super().__init__(f"invalid suite {source}:\n{lines}")


class Strict(BaseModel):
    """A model that rejects unknown keys with a did-you-mean suggestion."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = list(cls.model_fields)
            for key in data:
                if key not in known:
                    raise ValueError(
                        f"unknown key {key!r}{did_you_mean(str(key), known)}; allowed keys: {', '.join(known)}"
                    )
        return data


class Training(Strict):
    """Training settings shared by every run of a suite."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine", "step"] = "constant"
    warmup_epochs: int = Field(0, ge=0)
    step_size: int = Field(30, ge=1)
    gamma: float = Field(0.1, gt=0, le=1)
    augmentation: Literal["auto", "none", "crop_flip"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class Budget(Strict):
    """Limits for CPU runs: subset sizes and an epoch cap. Recorded with every run."""

    train_subset: int | None = Field(None, ge=1)
    test_subset: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)


class MethodEntry(Strict):
    """One method of the grid with its parameter grid (a list value means a sweep)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    initializations: list[str] | None = None

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


GRID_KEYS = ("datasets", "models", "methods", "initializations", "seeds", "training", "budget")


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


class Suite(Strict):
    """A YAML grid of runs (or, with ``grids``, several; ``parts`` holds them resolved)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    datasets: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    initializations: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    training: Training = Field(default_factory=Training)
    budget: Budget = Field(default_factory=Budget)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    references: str | None = None  # a file of published numbers the report shows beside these
    grids: list[Grid] | None = None
    parts: list[Suite] = Field(default_factory=list, exclude=True)

    @field_validator("methods", mode="before")
    @classmethod
    def _method_shorthand(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: list[str]) -> list[str]:
        return [_check_registered(DATASETS, n) for n in v]

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        return [_check_registered(MODELS, n) for n in v]


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved run of a suite."""

    id: str
    config: dict[str, Any]

    @property
    def label(self) -> str:
        c = self.config
        params = ",".join(f"{k}={v}" for k, v in sorted(c["params"].items()))
        return (
            f"{c['dataset']}/{c['model']}/{c['method']}"
            + (f"[{params}]" if params else "")
            + f"/{c['initialization']}/s{c['seed']}"
        )


def run_id(config: dict[str, Any]) -> str:
    """Stable hash of a resolved run configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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


def _check_methods(suite: Suite) -> list[tuple[str, str]]:
    problems = []
    for i, entry in enumerate(suite.methods):
        cls = METHODS.get(entry.name)
        for combo in sweep(entry.params):
            try:
                cls.Params.model_validate(combo)
            except ValidationError as err:
                for loc, msg in _problems(err, f"methods[{i}].params"):
                    problems.append((loc, msg.replace("Extra inputs are not permitted", _extra_message(cls, loc))))
        inits = entry.initializations or suite.initializations
        for j, init in enumerate(inits):
            try:
                cls.resolve_initialization(init)
            except ValueError as exc:
                where = f"methods[{i}].initializations[{j}]" if entry.initializations else f"initializations[{j}]"
                problems.append((where, str(exc)))
    return problems


def _extra_message(cls, loc: str) -> str:
    key = loc.rsplit(".", 1)[-1]
    known = list(cls.Params.model_fields)
    return (
        f"method {cls.name!r} takes no parameter {key!r}{did_you_mean(key, known)}; "
        f"it takes: {', '.join(known) or '(none)'}"
    )


def _check_shapes(suite: Suite) -> list[tuple[str, str]]:
    """Build every (model, dataset) pair on the meta device and push one batch through it."""
    import torch

    from harness.models import create_model

    problems = []
    for m, mname in enumerate(suite.models):
        for dname in suite.datasets:
            spec = DATASETS.get(dname)
            try:
                with torch.device("meta"):
                    model = create_model(
                        mname, in_channels=spec.channels, num_classes=spec.num_classes, image_size=spec.image_size
                    )
                    model(torch.empty(2, spec.channels, spec.image_size, spec.image_size))
            except Exception as exc:
                problems.append((f"models[{m}]", f"model {mname!r} cannot take dataset {dname!r}: {exc}"))
    return problems


def parse_suite(data: Any, source: str = "<suite>") -> Suite:
    """Validate suite data (a dict); raise :class:`SuiteError` listing every problem found."""
    if not isinstance(data, dict):
        raise SuiteError(source, [("", f"a suite must be a mapping of keys, got {type(data).__name__}")])
    if data.get("grids") is None:
        suite = _parse_grid(data, source, "")
        suite.parts = [suite]
        return suite
    grids = data["grids"]
    if not isinstance(grids, list) or not grids:
        raise SuiteError(source, [("grids", "grids must be a non-empty list of sub-grids")])
    problems: list[tuple[str, str]] = []
    parts: list[Suite] = []
    checked: list[Grid] = []
    for i, grid in enumerate(grids):
        try:
            checked.append(Grid.model_validate(grid))
        except ValidationError as err:
            problems += _problems(err, f"grids[{i}]")
            continue
        try:
            parts.append(_parse_grid(grid_data(data, grid), source, f"grids[{i}]"))
        except SuiteError as exc:
            problems += exc.problems
    if problems:
        raise SuiteError(source, list(dict.fromkeys(problems)))
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


def _parse_grid(data: dict[str, Any], source: str, prefix: str) -> Suite:
    try:
        suite = Suite.model_validate(data)
    except ValidationError as err:
        raise SuiteError(source, _problems(err, prefix)) from None
    found = _check_methods(suite) + _check_shapes(suite)
    problems = [(f"{prefix}.{loc}" if prefix else loc, msg) for loc, msg in found]
    problems = list(dict.fromkeys(problems))  # a sweep repeats them
    if problems:
        raise SuiteError(source, problems)
    return suite


def load_suite(path: str | Path, overrides: dict[str, Any] | None = None, grids: list[str] | None = None) -> Suite:
    """Read and validate a suite file; ``overrides`` are merged into its top-level sections; ``grids``
    keeps only the sub-grids of those names."""
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
    return parse_suite(data, str(path))


def select_grids(data: dict[str, Any], names: list[str], source: str = "<suite>") -> dict[str, Any]:
    """The suite data with only the named sub-grids (run identities are unchanged)."""
    grids = data.get("grids")
    if not isinstance(grids, list):
        raise SuiteError(source, [("grids", "this suite has no grids to select from")])
    known = [g.get("name", "") for g in grids if isinstance(g, dict)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SuiteError(source, [("grids", f"no grid named {n!r}{did_you_mean(n, known)}; grids: "
                                            f"{', '.join(known)}") for n in unknown])
    return {**data, "grids": [g for g in grids if isinstance(g, dict) and g.get("name", "") in names]}


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
    if not gridded:
        return out
    listed: dict[str, set[str]] = {k: set() for k in selections}
    out["grids"] = []
    for grid in grids:
        g = dict(grid)
        for key, value in overrides.items():
            if isinstance(value, dict):
                g[key] = {**(g.get(key) or {}), **value}
        for key, wanted in selections.items():
            own = g.get(key) if g.get(key) is not None else data.get(key) or []
            listed[key].update(own)
            g[key] = [n for n in own if n in wanted]
        if all(g[k] for k in selections):
            out["grids"].append(g)
    for key, wanted in selections.items():
        unknown = [n for n in wanted if n not in listed[key]]
        if unknown:
            raise SuiteError("--" + key, [(key, f"{unknown} not in this suite's grids; it has: "
                                                f"{', '.join(sorted(listed[key]))}")])
    return out


def expand(suite: Suite) -> list[RunSpec]:
    """All runs of a suite (every grid of it), in grid order, without duplicates."""
    runs: dict[str, RunSpec] = {}
    for part in suite.parts or [suite]:
        for spec in _expand_grid(part):
            runs.setdefault(spec.id, spec)
    return list(runs.values())


def _expand_grid(suite: Suite) -> list[RunSpec]:
    training = suite.training.model_dump()
    budget = suite.budget.model_dump()
    if budget["epochs"] is not None:
        training["epochs"] = min(training["epochs"], budget["epochs"])
    runs: dict[str, RunSpec] = {}
    for dataset, model, entry in itertools.product(suite.datasets, suite.models, suite.methods):
        cls = METHODS.get(entry.name)
        for combo in sweep(entry.params):
            params = cls.Params.model_validate(combo).model_dump(mode="json")
            for init in entry.initializations or suite.initializations:
                for seed in suite.seeds:
                    config = {
                        "dataset": dataset,
                        "model": model,
                        "method": entry.name,
                        "params": params,
                        "initialization": cls.resolve_initialization(init),
                        "seed": seed,
                        "training": training,
                        "budget": budget,
                    }
                    rid = run_id(config)
                    runs.setdefault(rid, RunSpec(rid, config))
    return list(runs.values())
