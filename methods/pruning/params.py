"""The parameters of the pruning methods and their validation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PruningParams(BaseModel):
    """Parameters every pruning method takes."""

    model_config = ConfigDict(extra="forbid")

    sparsity: float = Field(
        0.9,
        description="fraction of the selected layers' weights removed, in [0, 1): ceil(sparsity * N) of their N "
        "weights, chosen over all selected layers together (global pruning)",
    )
    layers: list[str] | None = Field(
        None,
        description="shell patterns of the layers to prune (in a suite a list of lists); default: every conv and "
        "linear except the first conv and the last linear, as for the factorized methods",
    )

    @field_validator("sparsity")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(
                f"sparsity must lie in [0, 1) (the fraction of the selected layers' weights removed), got {v}"
            )
        return v


class ScoreParams(PruningParams):
    """Parameters of the methods that score connections at initialization (SNIP, GraSP)."""

    score_batches: int = Field(1, ge=1, description="training batches the scores are computed on (their mean)")


class IMPParams(PruningParams):
    """Parameters of iterative magnitude pruning with rewinding."""

    rounds: int = Field(
        3,
        description="train-prune-rewind rounds before the final training (each prunes the same fraction of the "
        "weights left); the run trains rounds + 1 full passes",
    )
    rewind: int | float = Field(
        0.03,
        description="where the kept weights are rewound to: an int is an iteration (step) of the first pass (0: the "
        "initialization, as in Frankle & Carbin 2019), a float in [0, 1) that fraction of its steps, rounded down",
    )

    @field_validator("rounds")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"rounds must be at least 1 (one train-prune-rewind round), got {v}")
        return v

    @field_validator("rewind", mode="before")
    @classmethod
    def _iteration_or_fraction(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(
                f"rewind must be an iteration (int >= 0) or a fraction of the first pass in [0, 1), got {v!r}"
            )
        if isinstance(v, int) and v < 0:
            raise ValueError(f"rewind iteration must be at least 0, got {v}")
        if isinstance(v, float) and not 0.0 <= v < 1.0:
            raise ValueError(
                f"rewind as a fraction of the first pass must lie in [0, 1) (an int is an iteration), got {v}"
            )
        return v
