"""Published (quoted) numbers: read from a YAML or CSV file and set beside the measured settings they match."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.config import decode_params, params_text

from .cells import missing
from .errors import ReportError

REFERENCE_FIELDS = (
    "dataset",
    "model",
    "method",
    "setting",
    "params",
    "initialization",
    "acc_mean",
    "acc_std",
    "compression",
    "citation",
    "note",
)
_COMPARISON_COLUMNS = (
    "dataset",
    "model",
    "method",
    "setting",
    "quoted_acc_mean",
    "quoted_acc_std",
    "quoted_compression",
    "measured",
    "n",
    "acc_mean",
    "acc_std",
    "compression",
    "diff_acc",
    "citation",
    "note",
)


class Reference(BaseModel):
    """One published result: accuracy and compression in percent, as papers quote them."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    model: str
    method: str
    setting: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    initialization: str | None = None
    acc_mean: float | None = Field(None, ge=0, le=100)  # None: the source quotes a compression only
    acc_std: float | None = Field(None, ge=0)
    compression: float | None = Field(None, le=100)
    citation: str
    note: str = ""

    @model_validator(mode="after")
    def _something_quoted(self):
        if self.acc_mean is None and self.compression is None:
            raise ValueError("a reference quotes an accuracy (acc_mean), a compression, or both")
        return self


def _read_csv(path: Path) -> list[dict[str, Any]]:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    items = [{k: v for k, v in r.items() if v != ""} for r in df.to_dict("records")]
    for item in items:
        if "params" in item:
            try:
                item["params"] = json.loads(item["params"])
            except json.JSONDecodeError as exc:
                raise ReportError(
                    f'reference file {path}: params {item["params"]!r} is not JSON (write e.g. {{"rank": 8}}): {exc}'
                ) from None
    return items


def _read_items(path: Path) -> Any:
    import yaml

    try:
        if path.suffix.lower() == ".csv":
            return _read_csv(path)
        items = yaml.safe_load(path.read_text())
        return items["references"] if isinstance(items, dict) and "references" in items else items
    except (OSError, yaml.YAMLError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ReportError(f"reference file {path} cannot be read: {exc}") from None


def load_references(path: str | Path) -> pd.DataFrame:
    """Read a file of published numbers (YAML list, YAML with a ``references`` list, or CSV)."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"reference file {path} not found")
    items = _read_items(path)
    if not isinstance(items, list):
        raise ReportError(
            f"reference file {path}: expected a list of rows (or a mapping with a "
            f"'references' list), got {type(items).__name__}"
        )
    rows, problems = [], []
    for i, item in enumerate(items):
        try:
            ref = Reference.model_validate(item)
        except ValidationError as err:
            for e in err.errors():
                loc = ".".join(str(p) for p in e["loc"])
                problems.append(f"  row {i + 1}{' ' + loc if loc else ''}: {e['msg']}")
            continue
        row = ref.model_dump()
        params = row.pop("params")
        row["params_json"] = json.dumps(params, sort_keys=True)
        row["setting"] = row["setting"] or params_text(params)
        row["file"] = str(path)
        rows.append(row)
    if problems:
        raise ReportError(
            f"invalid reference file {path}:\n" + "\n".join(problems) + f"\nfields: {', '.join(REFERENCE_FIELDS)}"
        )
    return pd.DataFrame(rows, columns=[*REFERENCE_FIELDS[:4], "params_json", *REFERENCE_FIELDS[5:], "file"])


def load_all(paths) -> pd.DataFrame:
    """Every row of the given reference files (each read once), empty when there are none."""
    frames = [load_references(p) for p in dict.fromkeys(str(p) for p in paths)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _params_match(wanted_json: str, have_json: str) -> bool:
    wanted, have = decode_params(wanted_json or "{}"), decode_params(have_json or "{}")
    return all(
        k in have and json.dumps(have[k], sort_keys=True) == json.dumps(v, sort_keys=True) for k, v in wanted.items()
    )


def _matches(measured: pd.DataFrame, ref: pd.Series) -> pd.DataFrame:
    """The measured settings a reference row matches: same dataset, model and method; its params, when
    given, a subset of the measured params; its initialization, when given, the same."""
    if not len(measured):
        return measured
    hits = measured[
        (measured["dataset"] == ref["dataset"])
        & (measured["model"] == ref["model"])
        & (measured["method"] == ref["method"])
    ]
    if len(hits):
        hits = hits[[_params_match(ref["params_json"], p) for p in hits["params_json"]]]
    if len(hits) and not missing(ref["initialization"]):
        hits = hits[hits["initialization"] == ref["initialization"]]
    return hits


def compare_references(summary: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Each published row beside each measured setting it matches. A reference that matches nothing is
    still listed, with empty measured columns."""
    rows = []
    measured = summary[summary["n"] > 0] if len(summary) else summary
    for _, ref in references.iterrows():
        base = {
            "dataset": ref["dataset"],
            "model": ref["model"],
            "method": ref["method"],
            "setting": ref["setting"],
            "quoted_acc_mean": ref["acc_mean"],
            "quoted_acc_std": ref["acc_std"],
            "quoted_compression": ref["compression"],
            "citation": ref["citation"],
            "note": ref["note"],
        }
        hits = _matches(measured, ref)
        if not len(hits):
            rows.append({**base, "measured": "(no measured run)", "n": 0})
            continue
        for _, m in hits.iterrows():
            what = ", ".join(
                x
                for x in (m["params"], m["initialization"], f"budget {m['budget']}" if m["budget"] != "none" else "")
                if x
            )
            rows.append(
                {
                    **base,
                    "measured": what,
                    "n": m["n"],
                    "acc_mean": m["acc_mean"],
                    "acc_std": m["acc_std"],
                    "compression": m["compression"],
                    "diff_acc": m["acc_mean"] - ref["acc_mean"] if not missing(ref["acc_mean"]) else None,
                }
            )
    out = pd.DataFrame(rows, columns=list(_COMPARISON_COLUMNS))
    out["n"] = out["n"].fillna(0).astype(int)
    return out
