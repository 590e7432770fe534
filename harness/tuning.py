"""Tuning: every method gets the same number of trials over a declared search space, chosen on validation.

A suite's ``tuning:`` (suite-wide; a method entry may add to its ``space``) declares the space (lists: values to
choose among; ``{low, high, log}``: a range), the number of trials (the same for every method), the sampler
(scipy's scrambled Sobol sequence, uniform random, or the full grid of the lists), the metric the trials are
scored by (validation accuracy; a failed or diverged trial scores nothing) and the trials' own epoch budget.

The trials are ordinary runs in the store (resumable, trained exactly once), marked in their configuration with
``trial: {tuning, index}``. Once every trial of a setting (dataset, model, method setting, initialization) is
settled, the arg-max of the metric (ties: the earlier trial) is trained with the suite's seeds; those runs carry
``tuned: {tuning, trial}``. The trials of every method are drawn with the same seed, so methods whose spaces have
the same dimensions are tried at the same points.

This module knows the schema and the rules only: it reads stored results through the mapping it is given.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError, model_validator

from harness.config import Budget, RunStatus, Strict, Training, did_you_mean, identity_dump, stored_settings

SECTIONS = ("training", "params")


class Range(Strict):
    """A range to sample from: ``low`` to ``high``, uniform or (``log``) log-uniform; ``integer`` rounds."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low >= self.high:
            raise ValueError(f"a range needs low < high, got low={self.low:g}, high={self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low:g}")
        return self

    def at(self, u: float) -> float | int:
        """The value at ``u`` in [0, 1): uniform or log-uniform between low and high, 4 significant digits."""
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        return round(v) if self.integer else float(f"{v:.4g}")


Dimension = list[Any] | Range


def _dimension(value: Any) -> Dimension:
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list of values: give at least one")
        return value
    if isinstance(value, dict):
        return Range.model_validate(value)
    raise ValueError(f"a dimension is a list of values or a range {{low, high, log}}, got {value!r}")


class Space(Strict):
    """A search space: training settings and method parameters, each a list of values or a range."""

    training: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)

    def dimensions(self) -> list[tuple[str, str, Dimension]]:
        """(section, key, dimension), in a fixed order: training keys then params keys, each sorted (raises
        ValueError for a value that is neither a list of values nor a range: :func:`check_space` says which)."""
        return [(s, k, _dimension(getattr(self, s)[k])) for s in SECTIONS for k in sorted(getattr(self, s))]

    def merged(self, other: Space | None) -> Space:
        """This space with ``other``'s keys added (replacing the same keys)."""
        if other is None:
            return self
        training, params = {**self.training, **other.training}, {**self.params, **other.params}
        return Space.model_construct(training=training, params=params)

    def describe(self) -> str:
        """``training.lr: 0.01..0.1 (log); params.tau: [0.1, 0.2]``."""
        parts = []
        for section, key, dim in self.dimensions():
            if isinstance(dim, Range):
                what = f"{dim.low:g}..{dim.high:g}" + (" (log)" if dim.log else "") + (" int" if dim.integer else "")
            else:
                what = json.dumps(dim)
            parts.append(f"{section}.{key}: {what}")
        return "; ".join(parts)


class MethodTuning(Strict):
    """A method entry's own tuning: keys added to the suite's space (the number of trials is the suite's)."""

    space: Space = Field(default_factory=Space)


class Tuning(Strict):
    """A suite's tuning: the same number of trials for every method, over a declared space, chosen on validation."""

    trials: int = Field(ge=1)
    space: Space = Field(default_factory=Space)
    sampler: Literal["sobol", "random", "grid"] = "sobol"
    seed: int = Field(0, ge=0)
    metric: Literal["best_val_acc", "final_val_acc"] = "best_val_acc"
    epochs: int | None = Field(None, ge=1)  # the trials' own epochs (default: the grid's)
    budget: Budget | None = None  # the trials' own budget (default: the grid's)

    def ident(self, space: Space) -> str:
        """A short hash of what decides the trials (space, trials, sampler, seed, metric, epochs, budget)."""
        blob = {
            "space": {s: {k: _plain(d) for _, k, d in space.dimensions() if _ == s} for s in SECTIONS},
            **self.model_dump(mode="json", exclude={"space"}),
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:10]


def _plain(d: Dimension) -> Any:
    return d.model_dump() if isinstance(d, BaseModel) else d


# -- checking ---------------------------------------------------------------------------------------------------
def check_space(space: Space, tuning: Tuning, params_model: type[BaseModel], method: str) -> list[tuple[str, str, str]]:
    """Problems of one method's space as (section, key, message); key '' for the space as a whole: empty, a key
    the method or the training settings do not take, a value they refuse, a grid that is not ``trials`` points."""
    problems = []
    dims = []
    for section in SECTIONS:
        for key, value in sorted(getattr(space, section).items()):
            try:
                dims.append((section, key, _dimension(value)))
            except ValidationError as err:
                problems += [(section, key, e["msg"].removeprefix("Value error, ")) for e in err.errors()]
            except ValueError as exc:
                problems.append((section, key, str(exc)))
    if not dims and not problems:
        return [("", "", "the search space is empty: give training settings or method parameters to tune")]
    if problems:
        return problems
    for section, key, dim in dims:
        model: type[BaseModel] = Training if section == "training" else params_model
        if key not in model.model_fields:
            known = ", ".join(model.model_fields) or "(none)"
            hint = did_you_mean(key, list(model.model_fields))
            if section == "training":
                msg = f"no training setting {key!r}{hint}; the training settings: {known}"
            else:
                msg = f"method {method!r} takes no parameter {key!r}{hint}; it takes: {known}"
            problems.append((section, key, msg))
            continue
        values = [dim.low, dim.high] if isinstance(dim, Range) else dim
        for v in values:
            try:
                model.model_validate({key: v})
            except ValidationError as err:
                msg = "; ".join(e["msg"] for e in err.errors())
                problems.append((section, key, f"value {v!r} refused: {msg}"))
    if tuning.sampler == "grid":
        ranges = [f"{s}.{k}" for s, k, d in dims if isinstance(d, Range)]
        if ranges:
            problems.append(("", "", f"the grid sampler takes lists only; {', '.join(ranges)} is a range"))
        else:
            size = math.prod([len(d) for _, _, d in dims if isinstance(d, list)])
            if size != tuning.trials:
                problems.append(
                    (
                        "",
                        "",
                        f"the grid has {size} points but trials is {tuning.trials}: with the grid sampler every "
                        "method tries the whole grid, so trials must equal its size",
                    )
                )
    return problems


# -- sampling ---------------------------------------------------------------------------------------------------
def unit_points(n: int, d: int, sampler: str, seed: int) -> np.ndarray:
    """``n`` points in [0, 1)^d: scipy's scrambled Sobol sequence, or uniform random, seeded."""
    if sampler == "sobol":
        from scipy.stats import qmc

        with warnings.catch_warnings():  # balance properties want a power of two; any n is still a valid design
            warnings.simplefilter("ignore", UserWarning)
            return qmc.Sobol(d, scramble=True, seed=seed).random(n)
    return np.random.default_rng(seed).random((n, d))


def sample(space: Space, tuning: Tuning) -> list[dict[str, dict[str, Any]]]:
    """The ``trials`` settings of a space: ``[{"training": {...}, "params": {...}}, ...]``, in trial order."""
    dims = space.dimensions()
    if tuning.sampler == "grid":
        combos = itertools.product(*(d for _, _, d in dims))  # type: ignore[misc]
        points = [list(c) for c in combos]
    else:
        unit = unit_points(tuning.trials, len(dims), tuning.sampler, tuning.seed)
        points = [[_value(d, float(u)) for (_, _, d), u in zip(dims, row, strict=True)] for row in unit]
    out = []
    for values in points:
        setting: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        for (section, key, _), v in zip(dims, values, strict=True):
            setting[section][key] = v
        out.append(setting)
    return out


def _value(dim: Dimension, u: float) -> Any:
    if isinstance(dim, Range):
        return dim.at(u)
    return dim[min(int(u * len(dim)), len(dim) - 1)]


# -- runs -------------------------------------------------------------------------------------------------------
def trial_config(
    base: dict[str, Any], setting: dict[str, dict[str, Any]], params_model: type[BaseModel], tuning: Tuning
) -> dict[str, Any]:
    """A trial's run configuration: ``base`` (a resolved run) with the trial's setting, epochs and budget."""
    config = with_setting(base, setting, params_model)
    if tuning.budget is not None:
        config["budget"] = identity_dump(tuning.budget)
    epochs = tuning.epochs or config["training"]["epochs"]
    cap = config["budget"].get("epochs")
    config["training"]["epochs"] = min(epochs, cap) if cap is not None else epochs
    config["seed"] = tuning.seed
    return config


def with_setting(
    base: dict[str, Any], setting: Mapping[str, Mapping[str, Any]], params_model: type[BaseModel]
) -> dict[str, Any]:
    """``base`` with a tuned setting's training settings and method parameters, validated and resolved."""
    training = stored_settings(Training, {**base["training"], **setting.get("training", {})})
    params = stored_settings(params_model, {**base["params"], **setting.get("params", {})})
    return {**base, "training": identity_dump(training), "params": identity_dump(params)}


def score(run: Mapping[str, Any] | None, metric: str) -> float | None:
    """A settled trial's score (None: failed, diverged, or without the metric); raises KeyError if unsettled."""
    if run is None or not RunStatus(run["status"]).settled:
        raise KeyError("unsettled")
    if run["status"] != RunStatus.DONE:
        return None
    value = (run.get("metrics") or {}).get(metric)
    return None if value is None or not math.isfinite(value) else float(value)


def choose(scores: list[float | None]) -> int | None:
    """The trial with the highest score (the earliest of equals); None when every trial failed."""
    best = None
    for i, s in enumerate(scores):
        if s is not None and (best is None or s > scores[best]):  # type: ignore[operator]
            best = i
    return best
