"""Runs that start from the same seed's run of a stored setting form one group in the report across seeds."""

from __future__ import annotations

from harness.report.frames import seed_matched_sources


def _run(rid: str, seed: int, method: str = "full", source: str | None = None, lr: float = 0.05) -> dict:
    config = {"method": method, "seed": seed, "initialization": "decompose", "training": {"lr": lr}}
    if source is not None:
        config["pretrained"] = {"run": source}
    return {"id": rid, "config": config}


def test_runs_from_each_seeds_own_source_share_one_label_and_other_sources_do_not():
    runs = [
        _run("d0", 0), _run("d1", 1), _run("e0", 0, lr=0.01),  # dense sources: two settings
        _run("t0", 0, "tucker", "d0"), _run("t1", 1, "tucker", "d1"),  # each seed from its own seed's source
        _run("u0", 0, "tucker", "e0"),  # from the other setting
        _run("x1", 1, "tucker", "d0"),  # seed 1 from seed 0's model: a named run, not a per-seed source
        _run("f0", 0, "tucker", "missing"),  # a source not in this store
    ]  # fmt: skip
    labels = dict(zip([r["id"] for r in runs], seed_matched_sources(runs), strict=True))
    assert labels["d0"] is labels["d1"] is labels["e0"] is None
    assert labels["t0"] == labels["t1"] and labels["t0"].startswith("decompose@setting:")
    assert labels["u0"] != labels["t0"] and labels["u0"].startswith("decompose@setting:")
    assert labels["x1"] is None and labels["f0"] is None
