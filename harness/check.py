"""Accuracy regression checks: compare a seeded suite's stored results with a committed baseline.

A baseline is a JSON file::

    {"suite": "smoke", "tolerance": {"final_acc": 0.01, "compression": 1e-06}, "threads": 2,
     "runs": {"<run label>": {"id": "...", "final_acc": 0.91, "compression": 0.0}, ...}}

``threads`` is the torch thread count the baseline was trained with: a check trains with it again, since
floating-point sums differ with the thread count and a rank-adaptive run's ranks (and compression) follow them.

Runs are matched by their full label (dataset/model/method[params]/initialization/seed, see
:func:`harness.config.run_label`), so a change to a default that alters run ids still compares like with like;
the id is kept to show when configurations moved. Baselines written before labels joined parameters with
``", "`` (they used ``","``) still match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import RunStatus, run_label

DEFAULT_TOLERANCE = {"final_acc": 0.01, "compression": 1e-6}


@dataclass
class Difference:
    run: str
    metric: str
    baseline: Any
    measured: Any
    tolerance: float | None

    def __str__(self) -> str:
        if self.metric.startswith("run ("):
            return f"{self.run}: in the baseline but {self.metric[5:-1]} here"
        if self.baseline is None:
            return f"{self.run}: not in the baseline (run with --update to add it)"
        if self.measured is None:
            return f"{self.run}: {self.metric} missing from the measured run (baseline {self.baseline})"
        delta = self.measured - self.baseline
        return (
            f"{self.run}: {self.metric} {self.measured:.6g} vs baseline {self.baseline:.6g} "
            f"(change {delta:+.6g}, tolerance ±{self.tolerance:g})"
        )


def _key(label: str) -> str:
    """A label as baselines match it: parameters joined by "," or by ", " alike."""
    return label.replace(", ", ",")


def snapshot(suite_name: str, runs: list[dict[str, Any]], tolerance: dict[str, float], threads: int) -> dict[str, Any]:
    """The baseline document for finished runs trained with ``threads`` torch threads."""
    out = {}
    for r in sorted(runs, key=lambda r: run_label(r["config"])):
        m = r["metrics"] or {}
        out[run_label(r["config"])] = {"id": r["id"], **{k: m.get(k) for k in tolerance}}
    return {"suite": suite_name, "tolerance": tolerance, "threads": threads, "runs": out}


def compare(baseline: dict[str, Any], runs: list[dict[str, Any]]) -> list[Difference]:
    """Every metric of every run that moved beyond tolerance, every run missing on either side."""
    tolerance = baseline.get("tolerance", DEFAULT_TOLERANCE)
    measured = {_key(run_label(r["config"])): r for r in runs}
    diffs: list[Difference] = []
    for label, expected in sorted(baseline["runs"].items()):
        run = measured.get(_key(label))
        if run is None or run["status"] != RunStatus.DONE:
            state = "missing" if run is None else run["status"]
            diffs.append(Difference(label, f"run ({state})", RunStatus.DONE.value, None, None))
            continue
        for metric, tol in tolerance.items():
            got = (run["metrics"] or {}).get(metric)
            want = expected.get(metric)
            if got is None or want is None or abs(got - want) > tol:
                diffs.append(Difference(label, metric, want, got, tol))
    known = {_key(label) for label in baseline["runs"]}
    for key in sorted(set(measured) - known):
        diffs.append(Difference(run_label(measured[key]["config"]), "run", None, "new", None))
    return diffs


def load_baseline(path: Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise ValueError(f"{path} is not a baseline file (expected a JSON object with a 'runs' mapping)")
    return data


def write_baseline(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
