"""An SNR curriculum: training SNRs whose minimum falls as training goes on.

Upstream aframe explores starting on loud signals and lowering the minimum SNR over training.
:class:`SnrCurriculum` is that schedule as a distribution the Dataset takes as ``snr_sampler``::

    snr_sampler:
      class_path: aframe_lib.data.SnrCurriculum
      init_args: {start_minimum: 12, minimum: 4, maximum: 50, index: -3, steps: 2000}

At training step ``s`` it samples ``ml4gw.distributions.PowerLaw(m(s), maximum, index)`` with
``m(s)`` falling linearly from ``start_minimum`` to ``minimum`` over ``steps`` optimiser steps,
then staying there. The Dataset sets the step from ``trainer.global_step`` before each training
batch, so every DDP rank draws from the same schedule and a resumed run continues it where it
stopped. Validation never follows the schedule: its SNRs come from ``valid_snr_sampler``, or
else from the schedule's end (:attr:`SnrCurriculum.target`), so ``valid_auroc`` is comparable
across epochs.
"""

from __future__ import annotations

import torch
from ml4gw.distributions import PowerLaw
from torch.distributions import Distribution, constraints

__all__ = ["SnrCurriculum"]


class SnrCurriculum(Distribution):
    """``PowerLaw(m, maximum, index)`` with ``m`` falling from ``start_minimum`` to ``minimum``
    linearly over ``steps`` training steps.

    Args:
        start_minimum: Minimum network SNR at step 0.
        minimum: Minimum network SNR from ``steps`` on (at most ``start_minimum``).
        maximum: Maximum network SNR (above ``start_minimum``).
        index: Power-law index (``p(rho) ~ rho**index``; not 0).
        steps: Optimiser steps over which the minimum falls (0: ``minimum`` from the start).
    """

    arg_constraints: dict = {}
    support = constraints.positive

    def __init__(
        self,
        start_minimum: float,
        minimum: float,
        maximum: float,
        index: float = -3.0,
        steps: int = 1000,
    ) -> None:
        problems = []
        if not 0 < minimum <= start_minimum:
            problems.append(
                f"minimum={minimum!r} must be positive and at most start_minimum={start_minimum!r}"
            )
        if not maximum > start_minimum:
            problems.append(f"maximum={maximum!r} must exceed start_minimum={start_minimum!r}")
        if index == 0:
            problems.append("index=0 is a uniform distribution; use a non-zero power")
        if not (isinstance(steps, int) and steps >= 0):
            problems.append(f"steps={steps!r} must be a whole number >= 0")
        if problems:
            raise ValueError("SnrCurriculum: " + "; ".join(problems))
        super().__init__(validate_args=False)
        self.start_minimum, self.minimum = float(start_minimum), float(minimum)
        self.maximum, self.index, self.steps = float(maximum), float(index), int(steps)
        self.step = 0
        self.target = PowerLaw(self.minimum, self.maximum, self.index)

    def at(self, step: int) -> SnrCurriculum:
        """Move the schedule to optimiser step ``step``; returns ``self``."""
        self.step = max(0, int(step))
        return self

    @property
    def current_minimum(self) -> float:
        """The minimum SNR at the current step."""
        if self.steps == 0 or self.step >= self.steps:
            return self.minimum
        frac = self.step / self.steps
        return self.start_minimum + frac * (self.minimum - self.start_minimum)

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:  # noqa: B008
        return PowerLaw(self.current_minimum, self.maximum, self.index).sample(sample_shape)

    def __repr__(self) -> str:
        return (
            f"SnrCurriculum(start_minimum={self.start_minimum:g}, minimum={self.minimum:g}, "
            f"maximum={self.maximum:g}, index={self.index:g}, steps={self.steps}, "
            f"step={self.step})"
        )
