"""Run configuration and records: the bottom of the house.

Everything that describes a run lives here and imports nothing else of harness: the training settings and the
budget a suite gives a run, the resolved run (:class:`RunSpec`) and its identity (:func:`run_id`), the run
status, the records a run produces (per epoch and at the end), and how a run is labelled. Suites, the store,
the training loop and the report all depend on this module, never the other way round.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

SettingsT = TypeVar("SettingsT", bound=BaseModel)


class RunStatus(str, Enum):
    """Where a run stands in the store. Values are the strings stored in the ``status`` column."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    @property
    def settled(self) -> bool:
        """Done or failed: the run will not train again unless asked."""
        return self in (RunStatus.DONE, RunStatus.FAILED)


STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)
UNFINISHED: tuple[str, ...] = (RunStatus.PENDING.value, RunStatus.RUNNING.value)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest known names, or ''."""
    import difflib

    close = difflib.get_close_matches(str(name), list(known), n=2, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


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


#: Marks a settings field added after runs were stored whose default reproduces the earlier behaviour:
#: ``Field(default, json_schema_extra=WHEN_SET)``. Such a field enters a run's identity only when it is set away
#: from its default, so adding it leaves the ids (and resumability) of every stored run unchanged.
WHEN_SET: dict[str, Any] = {"identity": "when_set"}


#: :data:`WHEN_SET`, for a setting that changes the numbers a run reports (the arithmetic precision): labels and
#: tables name it on every run that sets it, not only where it differs among the runs shown.
SHOWN_WHEN_SET: dict[str, Any] = {**WHEN_SET, "shown": "when_set"}


def changed_default(was: Any) -> dict[str, Any]:
    """Marks a settings field whose default changed (or that was added with a new behaviour as its default) after
    runs were stored: ``Field(new, json_schema_extra=changed_default(old))``. ``was`` is what every stored run that
    does not name the field ran with. The field enters a run's identity unless it equals ``was``: stored runs keep
    their ids, a suite that pins ``was`` finds them again, and runs at the new default get ids of their own. Read a
    stored configuration back with :func:`stored_settings`, which gives an unnamed field its ``was``."""
    return {**WHEN_SET, "was": was}


def is_when_set(info: Any) -> bool:
    """Whether a pydantic field (its ``FieldInfo``) carries the :data:`WHEN_SET` marker."""
    extra = info.json_schema_extra
    return isinstance(extra, dict) and extra.get("identity") == "when_set"


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
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="arithmetic of the forward passes and the loss (training and evaluation): fp32, or autocast to "
        "bfloat16 or float16 (fp16 with a gradient scaler, on CUDA only); parameters and optimizer state stay fp32",
        json_schema_extra=SHOWN_WHEN_SET,
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto",
        description="channels-last memory layout of the model and its batches; auto: on for convolutional models "
        "on CUDA only",
        json_schema_extra=WHEN_SET,
    )
    compile: bool = Field(
        False,
        description="torch.compile the model's forward (a method whose shapes change may decline, with a note)",
        json_schema_extra=WHEN_SET,
    )


class Budget(Strict):
    """Limits for CPU runs: subset sizes and an epoch cap. Recorded with every run."""

    train_subset: int | None = Field(None, ge=1)
    test_subset: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)


class Validation(Strict):
    """The validation split: carved from the training images with its own seed, before any budget applies.

    ``size`` below 1 is a fraction of the training images, from 1 on a count; 0 means no validation split (the
    earlier protocol: no epoch is selected, runs are judged by their final epoch). A run's identity holds the
    split only when there is one (:func:`validation_identity`)."""

    size: float = Field(0.1, ge=0)
    seed: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data is None or data is False:
            return {"size": 0}
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"size": data}
        return data

    @model_validator(mode="after")
    def _whole_count(self) -> Validation:
        if self.size >= 1 and not float(self.size).is_integer():
            raise ValueError(f"size {self.size:g}: a fraction is below 1, a count of images is a whole number")
        return self

    def count(self, n: int) -> int:
        """How many of ``n`` training images the split takes."""
        return round(self.size * n) if self.size < 1 else int(self.size)


def validation_identity(validation: Validation) -> dict[str, Any] | None:
    """The split as it enters a run's configuration: None for no split (so runs without one keep their ids)."""
    if validation.size == 0:
        return None
    size = int(validation.size) if validation.size >= 1 else validation.size
    return {"size": size, "seed": validation.seed}


# --------------------------------------------------------------------------------------------------------------
# a resolved run and its identity


def identity_dump(settings: BaseModel) -> dict[str, Any]:
    """The JSON form of validated settings (method params, training, budget) as it enters a run's identity:
    every field, except :data:`WHEN_SET` fields left at their default."""
    out = settings.model_dump(mode="json")
    for name, info in type(settings).model_fields.items():
        if is_when_set(info) and name in out and out[name] == _identity_baseline(info):
            del out[name]
    return out


def _identity_baseline(info: Any) -> Any:
    """The value at which a :data:`WHEN_SET` field stays out of a run's identity: its ``was`` where its default
    changed (:func:`changed_default`), else its default."""
    if "was" in info.json_schema_extra:
        return info.json_schema_extra["was"]
    default = info.get_default(call_default_factory=True)
    return default.value if isinstance(default, Enum) else default


def stored_settings(model: type[SettingsT], data: Mapping[str, Any]) -> SettingsT:
    """Settings read back from a stored run's configuration (an :func:`identity_dump`): a :data:`WHEN_SET` field it
    does not name takes the value the run ran with (its ``was`` where the default has changed since)."""
    missing = {
        name: _identity_baseline(info)
        for name, info in model.model_fields.items()
        if is_when_set(info) and name not in data
    }
    return model.model_validate({**missing, **data})


def run_id(config: Mapping[str, Any]) -> str:
    """Stable hash of a resolved run configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved run: its identity and configuration (dataset, model, method, params,
    initialization, seed, training, budget)."""

    id: str
    config: dict[str, Any]

    @classmethod
    def of(cls, config: dict[str, Any]) -> RunSpec:
        """The run of a resolved configuration, its id computed."""
        return cls(run_id(config), config)

    @property
    def label(self) -> str:
        """The run's full label (every parameter); see :func:`run_label` for a label of what distinguishes it."""
        return run_label(self.config)


# --------------------------------------------------------------------------------------------------------------
# labels: built from stored configurations only (never from a registry)


def plain(v: Any) -> str:
    """A config value as short text: 2000.0 -> 2000, lists and dicts as compact JSON."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list | dict):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def decode_params(params: Any) -> dict[str, Any]:
    """A run's params as a dict, whether stored as JSON text or already decoded."""
    if isinstance(params, str):
        try:
            out = json.loads(params)
        except json.JSONDecodeError:
            return {}
        return out if isinstance(out, dict) else {}
    return dict(params or {})


def params_text(params: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    """``rank=8, tau=0.1`` for ``keys`` of ``params`` (all keys, sorted, when ``keys`` is None)."""
    shown = sorted(params) if keys is None else [k for k in keys if k in params]
    return ", ".join(f"{k}={plain(params[k])}" for k in shown)


def distinguishing_params(methods: Iterable[str], params: Iterable[Any]) -> dict[str, list[str]]:
    """Per method, the parameter names whose values differ among the given runs of that method.

    This is what tells two runs of one method apart; a method run with one setting has none. It depends on
    the runs alone (their stored configurations), so the same runs are labelled the same way wherever they
    are shown, whatever plugins are installed.
    """
    by_method: dict[str, list[dict[str, Any]]] = {}
    for m, p in zip(methods, params, strict=True):
        by_method.setdefault(m, []).append(decode_params(p))
    return {m: _varying_keys(dicts) for m, dicts in by_method.items()}


def setting_label(method: str, params: Any, keys: Iterable[str] | None = None) -> str:
    """``tdlrt[tau=0.15]``: the method with the given parameters (all of them when ``keys`` is None)."""
    text = params_text(decode_params(params), keys)
    return method + (f"[{text}]" if text else "")


def run_label(config: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    """``dataset/model/method[params]/initialization/s<seed>`` (a tuning trial adds ``/trial<i>``, a run of a
    tuned setting ``/tuned``; a run from a trained model names its source, :func:`initialization_label`); ``keys``
    limits the parameters shown."""
    c = config
    role = f"/trial{c['trial']['index']}" if c.get("trial") else "/tuned" if c.get("tuned") else ""
    return (
        f"{c['dataset']}/{c['model']}/{setting_label(c['method'], c.get('params') or {}, keys)}"
        f"/{initialization_label(c)}/s{c['seed']}{role}"
    )


def initialization_label(config: Mapping[str, Any]) -> str:
    """A run's initialization; for a run that starts from a trained model, with its source: ``decompose@run:1a2b3c4d``
    (the source run's id) or ``decompose@file:9f8e7d6c`` (the model file's SHA-256), first 8 digits."""
    source = config.get("pretrained")
    if not source:
        return str(config["initialization"])
    kind, value = next(iter(source.items()))
    return f"{config['initialization']}@{kind}:{str(value).removeprefix('sha256:')[:8]}"


def run_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's training and budget settings under the export's column names (``training.lr``, ``budget.epochs``)."""
    return {f"{part}.{k}": v for part in ("training", "budget") for k, v in (config.get(part) or {}).items()}


def always_shown_settings() -> list[str]:
    """The training settings marked :data:`SHOWN_WHEN_SET` (``training.precision``), under their export names."""
    return [f"training.{name}" for name, info in Training.model_fields.items() if _shown_when_set(info)]


def _shown_when_set(info: Any) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and extra.get("shown") == "when_set"


def when_set_defaults() -> dict[str, Any]:
    """The defaults of the :data:`WHEN_SET` training settings under their export names: what a stored run that
    does not name one of them ran with."""
    return {f"training.{name}": info.get_default() for name, info in Training.model_fields.items() if is_when_set(info)}


def distinguishing_settings(configs: list[Mapping[str, Any]]) -> list[list[str]]:
    """Per run, the training and budget settings whose values differ among the runs of its dataset, model and
    method (runs of one grid share theirs: none), and the :func:`always_shown_settings` it sets."""
    group = [(c["dataset"], c["model"], c["method"]) for c in configs]
    by_group: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for g, c in zip(group, configs, strict=True):
        by_group.setdefault(g, []).append(run_settings(c))
    keys = {g: _varying_keys(ds) for g, ds in by_group.items()}
    always = always_shown_settings()
    out = []
    for g, c in zip(group, configs, strict=True):
        set_here = [k for k in always if k in run_settings(c) and k not in keys[g]]
        out.append(sorted([*keys[g], *set_here]))
    return out


def _varying_keys(dicts: list[dict[str, Any]]) -> list[str]:
    """The keys, sorted, whose values differ among ``dicts``."""
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({json.dumps(d.get(k), sort_keys=True) for d in dicts}) > 1]


def short_run_labels(configs: list[Mapping[str, Any]]) -> list[str]:
    """Labels of several runs naming only what tells them apart, never a default that all of them share.

    ``mnist/lenet5/dlrt[tau=0.1]/random/s0 (training.lr=0.01)``: the parameters that differ among the runs of
    the same method, and the training and budget settings that differ among the runs of the same dataset,
    model and method (a budget left unset is not named). Two different runs never share a label: where they
    still would, the label ends with the run's id (``#1a2b3c4d``)."""
    keys = distinguishing_params([c["method"] for c in configs], [c.get("params") or {} for c in configs])
    labels = []
    for c, shown in zip(configs, distinguishing_settings(configs), strict=True):
        settings = run_settings(c)
        text = ", ".join(f"{k}={plain(settings[k])}" for k in shown if settings.get(k) is not None)
        labels.append(run_label(c, keys[c["method"]]) + (f" ({text})" if text else ""))
    ids = [run_id(c) for c in configs]
    ids_of: dict[str, set[str]] = {}
    for x, i in zip(labels, ids, strict=True):
        ids_of.setdefault(x, set()).add(i)
    return [f"{x} #{i[:8]}" if len(ids_of[x]) > 1 else x for x, i in zip(labels, ids, strict=True)]


# --------------------------------------------------------------------------------------------------------------
# records a run produces


@dataclass
class EpochRecord:
    """What one finished epoch stores (``epoch`` counts from 0 in the store; layers: per-layer stats dicts)."""

    epoch: int
    train_loss: float
    test_acc: float
    test_loss: float
    seconds: float
    lr: float
    layers: list[dict[str, Any]] = field(default_factory=list)
    val_acc: float | None = None  # None: the run has no validation split
    val_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "test_acc": self.test_acc,
            "test_loss": self.test_loss,
            "seconds": self.seconds,
            "lr": self.lr,
            "layers": self.layers,
            "val_acc": self.val_acc,
            "val_loss": self.val_loss,
        }


@dataclass
class RunOutcome:
    """How a run ended: its status, its metrics when done, its error (one line, then detail) when failed."""

    status: RunStatus
    metrics: dict[str, Any] | None = None
    error: str | None = None
    detail: str | None = None

    @property
    def stored_error(self) -> str | None:
        """The error text as the store keeps it: the one-line error, a blank line, the traceback."""
        if self.error is None:
            return None
        return self.error + (f"\n\n{self.detail}" if self.detail else "")
