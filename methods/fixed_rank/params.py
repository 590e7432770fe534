"""The parameters every fixed-rank format takes, and their validation (see the package docstring).

Each format gets its own subclass of :class:`FixedRankParams` (``TuckerParams``, ``CPParams``, ...), made
when the format class is declared (:class:`harness_methods.fixed_rank.formats.Format`); the subclass knows its
format through the class variable ``format``, which says which per-mode rank lists the format accepts.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.config import WHEN_SET


class FixedRankParams(BaseModel):
    """Parameters shared by the fixed-rank formats (see the package docstring)."""

    model_config = ConfigDict(extra="forbid")

    rank: int | float | list[int] | None = Field(
        None,
        description="fraction of full rank in (0, 1] (1.0 = full rank), an explicit rank (int; 1 = rank "
        "one), or a per-mode list of ranks (in a suite a list of lists, a plain list is a "
        "sweep); default 0.5 unless compression is given",
    )
    compression: float | None = Field(
        None, description="target fraction of each factorized layer's parameters removed, in (0, 1); excludes rank"
    )
    layers: list[str] | None = Field(
        None,
        description="shell patterns of the layers to factorize (in a suite a list of lists); default: "
        "every conv and linear except the first conv and the last linear",
    )
    implementation: Literal["factorized", "reconstructed"] = Field(
        "factorized",
        description="contract the factors with the input, or rebuild the dense weight "
        "each forward (factorized was faster on CPU everywhere)",
    )
    decompose_iters: int = Field(
        2, ge=1, description="ALS (cp) / HOOI (tucker) sweeps of the decompose and spectral inits"
    )
    frobenius_decay: float | None = Field(
        None,
        ge=0,
        description="Frobenius decay (Khodak et al., ICLR 2021): the loss gains frobenius_decay / 2 * ||W||_F^2 of "
        "each factorized layer's weight W (the product of its factors) and its factors leave the suite's weight "
        "decay; null (default): the factors take the suite's weight decay like every parameter",
        json_schema_extra=WHEN_SET,
    )

    default_rank: ClassVar[float] = 0.5
    # The format class these parameters belong to (set on each format's own subclass): it answers
    # ``name``, ``rank_list_lengths(params)`` and ``rank_list_hint(params)``.
    format: ClassVar[Any] = None

    @field_validator("rank", mode="before")
    @classmethod
    def _rank_type(cls, v: Any) -> Any:
        ok = (
            v is None
            or (isinstance(v, int | float) and not isinstance(v, bool))
            or (isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v))
        )
        if not ok:
            raise ValueError(
                f"rank must be a fraction of full rank in (0, 1] (e.g. 0.5), an int (e.g. 16) "
                f"or a per-mode list of ints (e.g. [32, 16]), got {v!r}"
            )
        return v

    @model_validator(mode="after")
    def _check_rank(self) -> FixedRankParams:
        r, c = self.rank, self.compression
        if r is not None and c is not None:
            raise ValueError(f"give either rank or compression, not both (got rank={r!r}, compression={c!r})")
        if c is not None and not 0.0 < c < 1.0:
            raise ValueError(
                f"compression must lie strictly between 0 and 1 (the fraction of each factorized "
                f"layer's parameters removed), got {c}"
            )
        if isinstance(r, float) and not 0.0 < r <= 1.0:
            raise ValueError(
                f"rank {r} as a fraction of full rank must lie in (0, 1]; give an int for an explicit rank"
            )
        if isinstance(r, int) and r < 1:
            raise ValueError(f"rank must be at least 1, got {r}")
        if isinstance(r, list):
            self._check_rank_list(r)
        if r is None and c is None:
            self.rank = self.default_rank
        return self

    def _check_rank_list(self, r: list[int]) -> None:
        fmt = self.format.name if self.format else "this method"
        allowed = self.format.rank_list_lengths(self) if self.format else ()
        if not allowed:
            raise ValueError(f"{fmt} has a single rank per layer; give an int or a fraction, not the list {r}")
        if len(r) not in allowed:
            hint = self.format.rank_list_hint(self)
            raise ValueError(
                f"{fmt} takes a per-mode rank list of length "
                f"{' or '.join(map(str, allowed))}{hint}, got {len(r)} entries {r}"
            )
        if any(x < 1 for x in r):
            raise ValueError(f"every rank of the list must be at least 1, got {r}")


class ModesParams(FixedRankParams):
    """The fixed-rank parameters plus which conv modes are truncated (Tucker)."""

    modes: Literal["channels", "all"] = Field(
        "channels", description="truncate only the channel modes (Tucker-2) or all four conv modes"
    )
