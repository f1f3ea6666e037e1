"""The Dataset's settings, declared: :class:`DatasetSettings`.

``AframeDataset(sample_rate=..., ...)`` (``data.init_args.sample_rate`` in a config) builds one
``DatasetSettings``; each setting is a typed field here, checked when it is built
(:mod:`~aframe_lib.data.config`, the same ``data.<field>=<value>: why`` errors), and the sizes
derived from the settings (``sample_size``, ``num_ifos``, window lengths ...) are properties.
The Dataset exposes every field and property read-only under the same name
(``dataset.sample_rate`` is ``dataset.settings.sample_rate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ml4gw.distributions import PowerLaw
from torch.distributions import Distribution

from .config import check_settings
from .psd import PsdPolicy, resolve_policy


@dataclass(frozen=True, kw_only=True)
class DatasetSettings:
    """The checked settings of an :class:`~aframe_lib.data.AframeDataset`.

    The fields are the Dataset's arguments (documented there, with their defaults) after
    resolution: ``ifos`` a list, ``psd`` the resolved :class:`~aframe_lib.data.psd.PsdPolicy`
    (``data.psd`` with the ``psd_length``/``fftlength`` shorthands applied), ``psd_length``
    and ``fftlength`` its values, ``snr_sampler`` the default ``PowerLaw(4, 100, -3)`` when
    none was given.

    Raises:
        DataConfigError: naming the field, its value and the fix (see
            :func:`~aframe_lib.data.config.check_settings`).
    """

    data_dir: str
    ifos: list[str]
    sample_rate: float
    kernel_length: float
    fduration: float
    psd_length: float | None
    fftlength: float | None
    highpass: float | None
    lowpass: float | None
    batch_size: int
    batches_per_epoch: int
    waveform_prob: float
    swap_prob: float
    mute_prob: float
    inversion_prob: float
    reversal_prob: float
    snr_sampler: Distribution | None
    dec: Distribution | None
    psi: Distribution | None
    phi: Distribution | None
    left_pad: float
    right_pad: float
    valid_frac: float
    test_frac: float
    test_dir: str | None
    valid_stride: float
    valid_livetime: float
    timeslide_step: float | None
    num_valid_views: int
    valid_batch_size: int | None
    max_valid_waveforms: int | None
    cache_dir: str | None
    background_loading: str
    max_memory: float
    chunk_length: float
    chunks_per_epoch: int | None
    synthetic: dict[str, Any] | None
    seed: int
    psd: PsdPolicy | dict[str, Any] | None
    #: the resolved PSD policy (``psd`` after resolution; the name the search and export use)
    psd_policy: PsdPolicy = field(init=False, repr=False)

    def __post_init__(self) -> None:
        policy = resolve_policy(self.psd, self.psd_length, self.fftlength)
        set_ = object.__setattr__  # frozen: resolution happens once, here
        set_(self, "psd_policy", policy)
        check_settings(self)  # the errors name data.<field> as written in a config
        set_(self, "ifos", list(self.ifos))
        set_(self, "psd", policy)
        set_(self, "psd_length", policy.length)
        set_(self, "fftlength", policy.resolve(self.kernel_length, self.fduration).fftlength)
        if self.snr_sampler is None:
            set_(self, "snr_sampler", PowerLaw(4.0, 100.0, -3.0))

    # ---------------------------------------------------------------- derived sizes
    @property
    def num_ifos(self) -> int:
        return len(self.ifos)

    @property
    def kernel_size(self) -> int:
        """Samples the network sees (``kernel_length * sample_rate``)."""
        return int(round(self.kernel_length * self.sample_rate))

    @property
    def window_size(self) -> int:
        """Samples of a window before whitening: kernel plus the ``fduration`` padding."""
        return int(round((self.kernel_length + self.fduration) * self.sample_rate))

    @property
    def psd_size(self) -> int:
        """Samples per PSD estimate (``psd_length * sample_rate``)."""
        return int(round(self.psd_policy.length * self.sample_rate))

    @property
    def psd_staleness(self) -> int:
        """Most samples between a PSD segment's end and its window (the policy's cadence)."""
        return self.psd_policy.max_staleness(self.sample_rate)

    @property
    def sample_size(self) -> int:
        """Samples of background per training sample: window, PSD segment and its age."""
        return self.window_size + self.psd_size + self.psd_staleness

    @property
    def sample_length(self) -> float:
        """Seconds of background per training sample (``sample_size / sample_rate``)."""
        return self.sample_size / self.sample_rate

    @property
    def inject_prob(self) -> float:
        """The injection probability that leaves ``waveform_prob`` of each batch labelled
        signal after swapping and muting (checked to be at most 1)."""
        keep = (1 - self.swap_prob) * (1 - self.mute_prob)
        return self.waveform_prob / keep if keep > 0 else math.inf

    @property
    def slide_step(self) -> float:
        """Seconds between successive timeslide shifts (``timeslide_step``, or by default
        ``ceil(kernel_length + fduration)``)."""
        if self.timeslide_step:
            return self.timeslide_step
        return float(math.ceil(self.kernel_length + self.fduration))

    @property
    def valid_stride_size(self) -> int:
        """Samples between validation windows (``valid_stride * sample_rate``)."""
        return int(round(self.valid_stride * self.sample_rate))
