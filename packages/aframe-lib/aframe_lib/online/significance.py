"""How significant an online event is: FAR from the timeslide background, and p_astro.

The background is ``aframe-train evaluate``'s ``background_events.hdf5`` (the search over
timeslides; attributes: ``livetime`` and the search settings it ran with,
:meth:`~aframe_lib.search.pipeline.Search.settings`). Beside it, evaluate's
``injection_results.hdf5`` (each injection's matched ``stat``, NaN when missed, and
``distance``) gives the foreground.

- **Settings**: a FAR only means something for events made as the background's were. Every
  setting the background records (the model's preprocessing, ``inference_sampling_rate``,
  ``integration_length``, ``cluster_window``, ``threshold``, ``time_offset``, ``var``, PSD
  policy...) must equal the online search's; only ``backend`` (TorchScript or ONNX, which agree
  to float rounding) may differ. :meth:`Background.check` refuses anything else, naming the
  setting, both values and the fix (re-run ``aframe-train evaluate`` with the online settings).
- **FAR** of a statistic ``s``: ``max(1, #{background events with stat >= s}) / T`` per year of
  livetime ``T`` (:func:`aframe_lib.search.metrics.false_alarm_rate`); an event louder than the
  whole background gets the bound ``1 / T`` rather than 0, the smallest FAR this background can
  state.
- **p_astro** ``= Λs f(s) / (Λs f(s) + Λb b(s))`` (a two-component Poisson mixture, computed
  with the ``p-astro`` package's ``p_astro_update``): over the events above ``s0``, the
  background's statistic at ``pastro_far`` (default 1 per day),

  - ``b(s)``: the density of the background events' statistic above ``s0``: a Gaussian KDE up
    to the ``tail``-th loudest event (default the 50th), an exponential beyond it fitted to
    those ``tail`` loudest (the maximum-likelihood rate of their excess over it), since a
    KDE's Gaussian tails fall faster than a background's and would make every loud event
    certain; ``Λb`` their rate, ``#{stat > s0} / T`` per year;
  - ``f(s)``: that of the found injections' statistic above ``s0``, ``Λs = R V(s0)`` with
    ``V(s0)`` the sensitive volume of the injections above ``s0`` (Euclidean, uniform in
    volume over their distance range, :func:`aframe_lib.search.metrics.sensitive_volume`)
    and ``R`` the BBH merger rate, by default 30 Gpc^-3 yr^-1, inside the 17.9-44 Gpc^-3
    yr^-1 (at z = 0.2) of the GWTC-3 population analysis (LVK, Phys. Rev. X 13, 011048
    (2023)).

  Below ``s0`` p_astro is not computed (0 is reported). The p-astro package's rate files and
  SNR thresholds are for matched-filter pipelines and are not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aframe_lib.search.metrics import SECONDS_PER_YEAR, false_alarm_rate, sensitive_volume
from aframe_lib.utils.errors import ConfigError, DataError

BBH_RATE = 30.0  # Gpc^-3 yr^-1, within GWTC-3's 17.9-44 (PRX 13, 011048)
IGNORED = ("backend",)


class BackgroundMismatch(ConfigError):
    """The background was made with other search settings than the online search's."""


@dataclass
class Background:
    """A timeslide background: statistics, livetime (s) and the settings it was made with."""

    stat: np.ndarray
    livetime: float
    settings: dict[str, Any]
    path: str = ""

    @classmethod
    def read(cls, path: str | Path) -> Background:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                stat = f["stat"][:].astype(np.float64)
                attrs = {k: _plain(v) for k, v in f.attrs.items()}
        except (OSError, KeyError) as exc:
            raise DataError(
                f"--background {path}: not an events file with a 'stat' dataset ({exc}); pass "
                "the background_events.hdf5 that `aframe-train evaluate` wrote"
            ) from exc
        livetime = attrs.pop("livetime", None)
        if not livetime or livetime <= 0:
            raise DataError(
                f"--background {path}: no positive 'livetime' attribute; pass the "
                "background_events.hdf5 that `aframe-train evaluate` wrote"
            )
        return cls(stat, float(livetime), attrs, str(path))

    def check(self, settings: dict[str, Any]) -> None:
        """Raise :class:`BackgroundMismatch` unless ``settings`` (the online search's
        :meth:`Search.settings`) equal the background's, ``backend`` aside."""
        for key, value in settings.items():
            if key in IGNORED:
                continue
            if key not in self.settings:
                raise BackgroundMismatch(
                    f"--background {self.path}: it does not record the search setting {key!r} "
                    f"(the online search uses {value!r}); re-run `aframe-train evaluate` so the "
                    "background records the settings it was made with"
                )
            theirs = _plain(self.settings[key])
            if not _same(theirs, _plain(value)):
                raise BackgroundMismatch(
                    f"--background {self.path}: made with {key}={theirs!r}, the online search "
                    f"uses {key}={value!r}: its FARs do not apply. Run `aframe-online` with "
                    f"the background's settings, or re-run `aframe-train evaluate` with "
                    f"--{key} {value}"
                )

    def far(self, stat: float | np.ndarray) -> np.ndarray:
        """FAR per year (see the module docstring)."""
        louder = false_alarm_rate(np.atleast_1d(stat), self.stat, 1.0)
        return np.maximum(louder, 1.0) / self.livetime * SECONDS_PER_YEAR


@dataclass
class PAstro:
    """p_astro of a statistic (see the module docstring).

    Args:
        background: the timeslide background.
        found: statistics of the injections (NaN: missed).
        distance_range: ``(min, max)`` Mpc the injections were drawn from, uniform in volume.
        bbh_rate: BBH merger rate, Gpc^-3 yr^-1.
        pastro_far: FAR (per year) of the statistic ``s0`` above which p_astro is computed.
        tail: loudest background events the exponential tail of ``b`` is fitted to.
    """

    background: Background
    found: np.ndarray
    distance_range: tuple[float, float]
    bbh_rate: float = BBH_RATE
    pastro_far: float = 365.25
    tail: int = 50

    def __post_init__(self) -> None:
        from scipy.stats import gaussian_kde

        bg = np.sort(self.background.stat)[::-1]
        m = min(len(bg) - 1, max(0, math.floor(self.pastro_far / SECONDS_PER_YEAR
                                               * self.background.livetime)))  # fmt: skip
        self.s0 = float(bg[m]) if len(bg) else -math.inf
        above = bg[bg > self.s0]
        found = np.asarray(self.found, np.float64)
        found = found[np.isfinite(found)]
        signal = found[found > self.s0]
        if len(above) < 2 or len(signal) < 2:
            raise DataError(
                f"p_astro: {len(above)} background events and {len(signal)} found injections "
                f"lie above the statistic {self.s0:.4g} (FAR {self.pastro_far:g}/yr): too few "
                "for their densities; use a longer background or more injections, or a "
                "larger --pastro_far"
            )
        self.kde_b = gaussian_kde(above)
        self.f = gaussian_kde(signal)
        k = min(self.tail, len(above) - 1)
        self.s_tail = float(above[k])  # above is sorted loudest first
        excess = above[:k] - self.s_tail
        self.tail_rate = 1.0 / max(float(excess.mean()), 1e-12) if k else math.inf
        self.tail_mass = k / len(above)
        self.rate_b = len(above) / self.background.livetime * SECONDS_PER_YEAR
        volume = sensitive_volume(
            np.asarray(self.found, np.float64), self.s0, self.distance_range
        )  # Mpc^3
        self.rate_s = self.bbh_rate * volume * 1e-9

    def __call__(self, stat: float) -> float:
        from ligo.p_astro.computation import p_astro_update

        if not stat > self.s0:
            return 0.0
        f, b = float(self.f(stat)[0]), max(self.b(stat), 1e-300)
        counts = {"counts_Terrestrial": self.rate_b, "counts_BBH": self.rate_s}
        return float(p_astro_update("counts_BBH", {"counts_BBH": f / b}, counts))

    def b(self, stat: float) -> float:
        """Density of the background statistic above ``s0`` at ``stat``."""
        if stat <= self.s_tail:
            return float(self.kde_b(stat)[0])
        lam = self.tail_rate
        return self.tail_mass * lam * math.exp(-lam * (stat - self.s_tail))

    @classmethod
    def read(cls, background: Background, path: str | Path, **kwargs: Any) -> PAstro:
        """From evaluate's ``injection_results.hdf5`` (``stat``; ``distance_range`` attribute,
        else the range of its ``distance`` column)."""
        import h5py

        try:
            with h5py.File(path, "r") as f:
                found = f["stat"][:]
                if "distance_range" in f.attrs:
                    lo, hi = (float(x) for x in f.attrs["distance_range"])
                else:
                    d = f["distance"][:]
                    lo, hi = float(d.min()), float(d.max())
        except (OSError, KeyError) as exc:
            raise DataError(
                f"{path}: not evaluate's injection_results.hdf5 with 'stat' and 'distance' "
                f"({exc}); pass --injection_results, or --pastro false"
            ) from exc
        return cls(background, found, (lo, hi), **kwargs)


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)
