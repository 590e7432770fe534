"""When a rank-adaptive method changes its layers: a basis (augmentation) step, then truncation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TruncationSchedule:
    """A cycle of ``period`` batches: the first takes the basis step (augmentation), the others in-place steps;
    truncation follows the last one, and the end of an epoch closes an open cycle (so evaluation and layer
    reports always see truncated layers). ``period`` 1 is ``every_step`` (basis step and truncation on every
    batch); ``period`` k is ``amortized``. With ``refresh`` (``periodic``) truncation follows the basis step on
    the cycle's first batch, and the other batches of the cycle are in-place steps at the truncated ranks::

        schedule = TruncationSchedule(period)
        # per batch:
        if schedule.basis_step: ...augment...
        ...step...
        if schedule.advance(): ...truncate...
        # end of epoch:
        if schedule.close(): ...truncate...
    """

    period: int = 1
    phase: int = 0  # batches taken in the open cycle
    refresh: bool = False  # truncate right after the basis step (periodic), not at the cycle's end

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"a truncation period must be at least 1 batch, got {self.period}")

    @classmethod
    def named(cls, schedule: str, amortize_steps: int = 10) -> TruncationSchedule:
        """``every_step`` (period 1), ``amortized`` or ``periodic`` (period ``amortize_steps``)."""
        if schedule == "every_step":
            return cls(1)
        if schedule == "amortized":
            return cls(amortize_steps)
        if schedule == "periodic":
            return cls(amortize_steps, refresh=True)
        raise ValueError(f"unknown schedule {schedule!r}; expected every_step, amortized or periodic")

    @property
    def basis_step(self) -> bool:
        """Whether the coming batch opens a cycle (takes the basis step)."""
        return self.phase == 0

    def advance(self) -> bool:
        """Count a batch taken; ``True`` when it closed the cycle, or (``refresh``) took the basis step: truncate
        now."""
        opened = self.phase == 0
        self.phase += 1
        if self.refresh:
            self.phase %= self.period
            return opened
        if self.phase >= self.period:
            self.phase = 0
            return True
        return False

    def close(self) -> bool:
        """End of an epoch: ``True`` when a cycle was open (truncate now); the next batch opens a new one."""
        was_open = self.phase != 0 and not self.refresh  # a refresh cycle never leaves layers augmented
        self.phase = 0
        return was_open
