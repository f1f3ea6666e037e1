"""The PSD policy: how each window's whitening PSD is estimated, in training and in the search.

One :class:`PsdPolicy` is given to the Dataset (``data.psd``), used by its training and
validation batches (:class:`~aframe_lib.data.preprocessing.PsdEstimator`), written to
``model.json`` at export (key ``psd``) and read back by the search
(:class:`~aframe_lib.search.whitening.StreamingWhitener`), so the network is deployed on inputs
whitened exactly as in training: the same PSD length, Welch segments, average and bias
correction, and the same *staleness*.

Staleness: the search estimates one PSD every ``cadence`` seconds and whitens all windows that
start in the following ``cadence`` seconds with it (PSD cost / ``cadence * inference rate``), so
a window's PSD segment ends between 0 and ``cadence`` seconds before the window. Training draws
that gap uniformly from the same range (each sample is ``length + cadence + kernel_length +
fduration`` seconds long), so both see the same distribution of PSD ages. ``cadence: 0`` means
every window gets the PSD of the data immediately before it (the pre-policy behaviour).

The estimate is Welch's method (Hann window, ``fftlength`` segments, ``overlap``), averaged with
the median and divided by scipy's median bias (or the mean); the whitened variance it gives is
a property of the estimator (about ``1.3`` for 5 segments, ``1.0`` for ~60) that training and
search share, so no further correction is applied.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from .config import DataConfigError


@dataclass(frozen=True)
class PsdPolicy:
    """How every window's PSD is estimated (see the module docstring).

    Args:
        length: Seconds of strain per PSD estimate.
        fftlength: Welch segment length (s); ``None`` means ``kernel_length + fduration``.
        overlap: Welch overlap (s); ``None`` means ``fftlength / 2``.
        average: ``"median"`` (robust to glitches; scipy's bias correction) or ``"mean"``.
        cadence: Seconds between PSD updates in the search; training draws each window's PSD
            age uniformly from ``[0, cadence)``. ``0``: a fresh PSD for every window.
    """

    length: float = 16.0
    fftlength: float | None = None
    overlap: float | None = None
    average: Literal["median", "mean"] = "median"
    cadence: float = 1.0

    def resolve(self, kernel_length: float, fduration: float) -> PsdPolicy:
        """The policy with ``fftlength`` and ``overlap`` filled in for this window."""
        fftlength = self.fftlength or kernel_length + fduration
        overlap = fftlength / 2 if self.overlap is None else self.overlap
        return replace(self, fftlength=fftlength, overlap=overlap)

    def psd_size(self, sample_rate: float) -> int:
        """Samples per PSD estimate."""
        return int(round(self.length * sample_rate))

    def cadence_size(self, sample_rate: float) -> int:
        """Samples between PSD updates (0: every window)."""
        return int(round(self.cadence * sample_rate))

    def max_staleness(self, sample_rate: float) -> int:
        """Largest gap (samples) between a PSD segment's end and its window's start."""
        return max(0, self.cadence_size(sample_rate) - 1)

    def check(
        self,
        kernel_length: float,
        fduration: float,
        where: str = "data.psd",
        names: dict[str, str] | None = None,
    ) -> None:
        """Raise :class:`DataConfigError` naming the field (``where.<field>``, or
        ``names[field]`` for a field given under another name) for an unusable policy."""

        def fail(name: str, value: Any, why: str) -> None:
            field = (names or {}).get(name, f"{where}.{name}")
            raise DataConfigError(f"{field}={value!r}: {why}")

        for name in ("length", "cadence"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                fail(name, value, "must be a number >= 0")
        if self.average not in ("median", "mean"):
            fail("average", self.average, "must be 'median' or 'mean'")
        if self.fftlength is not None and not self.fftlength > 0:
            fail("fftlength", self.fftlength, "must be positive (or null)")
        resolved = self.resolve(kernel_length, fduration)
        if not 0 <= resolved.overlap < resolved.fftlength:
            fail("overlap", self.overlap, f"must be in [0, fftlength={resolved.fftlength})")
        if resolved.fftlength > self.length:
            fail(
                "length",
                self.length,
                f"must be at least the FFT length ({resolved.fftlength} s) so the PSD can be "
                "estimated; raise the PSD length or lower fftlength",
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (as stored in ``model.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "psd") -> PsdPolicy:
        """The policy from :meth:`to_dict` output; unknown keys raise naming ``where``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DataConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def resolve_policy(
    psd: PsdPolicy | dict[str, Any] | None,
    psd_length: float | None = None,
    fftlength: float | None = None,
) -> PsdPolicy:
    """The Dataset's policy: ``data.psd`` with the shorthands ``data.psd_length`` (its
    ``length``) and ``data.fftlength`` (its ``fftlength``) applied; a shorthand that
    contradicts ``data.psd`` is refused (two values for one setting)."""
    policy = coerce_policy(psd)
    for short, name, value in (
        ("psd_length", "length", psd_length),
        ("fftlength", "fftlength", fftlength),
    ):
        if value is None:
            continue
        if psd is not None and getattr(policy, name) != value:
            raise DataConfigError(
                f"data.{short}={value!r}: data.psd is given too; set data.psd.{name} instead"
            )
        policy = replace(policy, **{name: value})
    return policy


def coerce_policy(value: PsdPolicy | dict[str, Any] | None, where: str = "data.psd") -> PsdPolicy:
    """``value`` as a :class:`PsdPolicy` (``None``: the default policy)."""
    if value is None:
        return PsdPolicy()
    if isinstance(value, PsdPolicy):
        return value
    if isinstance(value, dict):
        return PsdPolicy.from_dict(value, where)
    raise DataConfigError(f"{where}={value!r}: give a mapping such as {{length: 16, cadence: 1}}")
