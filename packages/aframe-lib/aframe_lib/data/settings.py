"""The Dataset's arguments, declared once: :class:`DatasetSettings`.

Each argument of :class:`~aframe_lib.data.AframeDataset` (``data.init_args.<name>`` in a config)
is a field here, with its type, its default and its help (the ``Args:`` below, which
jsonargparse shows in ``aframe-train fit --help``): the Dataset takes ``**settings`` and builds
``DatasetSettings(**settings)``, a call jsonargparse follows to find the arguments. The
settings are checked when built (:mod:`~aframe_lib.data.config`, the same
``data.<field>=<value>: why`` errors), and the sizes derived from them (``sample_size``,
``num_ifos``, window lengths ...) are properties. The Dataset exposes every field and property
read-only under the same name (``dataset.sample_rate`` is ``dataset.settings.sample_rate``).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from ml4gw.distributions import PowerLaw
from torch.distributions import Distribution

from .config import check_settings
from .psd import PsdPolicy, resolve_policy


@dataclass(frozen=True)
class DatasetSettings:
    """The arguments of an :class:`~aframe_lib.data.AframeDataset`, checked and resolved.

    After resolution ``ifos`` is a list, ``psd`` the resolved
    :class:`~aframe_lib.data.psd.PsdPolicy` (``psd`` with the ``psd_length``/``fftlength``
    shorthands applied), ``psd_length`` and ``fftlength`` its values, and ``snr_sampler`` the
    default ``PowerLaw(4, 100, -3)`` when none was given.

    Args:
        data_dir: Directory (local or ``s3://bucket/prefix``) with ``background-*.hdf5``,
            ``waveforms.hdf5`` and ``val_waveforms.hdf5`` (see ``aframe_lib.data.background``).
        ifos: Detector codes, in channel order.
        sample_rate: Hz; must match the files.
        kernel_length: Seconds of whitened strain the network sees.
        fduration: Seconds of whitening filter; half is cropped from each side of a window.
        psd_length: Shorthand for ``psd.length`` (seconds of background per PSD estimate).
        fftlength: Shorthand for ``psd.fftlength`` (Welch segment length, s; ``None`` means
            ``kernel_length + fduration``).
        highpass: Hz; frequencies below are removed by whitening and ignored for SNRs.
        lowpass: Hz; ``None`` keeps everything up to Nyquist.
        batch_size: Training samples per batch (per device).
        batches_per_epoch: Training batches per epoch, over all devices.
        waveform_prob: Fraction of each batch that ends up labelled as signal.
        swap_prob: Probability that an injected sample has one IFO's signal swapped with
            another event's (relabelled noise).
        mute_prob: Probability that an injected sample has one IFO's signal removed
            (relabelled noise).
        inversion_prob: Probability of flipping the sign of each background channel.
        reversal_prob: Probability of time-reversing each background channel.
        snr_sampler: Distribution of target network SNRs; default ``PowerLaw(4, 100, -3)``.
        dec: Distribution of source declinations (rad) for injections (training and
            validation); default ``ml4gw.distributions.Cosine()`` (uniform on the sphere).
        psi: Distribution of polarisation angles (rad); default ``Uniform(0, pi)``.
        phi: Distribution of right ascensions relative to the geocentre's meridian (rad);
            default ``Uniform(-pi, pi)``.
        left_pad: Minimum seconds between the kernel's left edge and coalescence.
        right_pad: Minimum seconds between coalescence and the kernel's right edge.
        valid_frac: Fraction of the background duration (latest files) held out for validation.
        test_frac: Fraction of the background duration (the latest files, after which
            validation takes the next latest) held out for ``aframe-train test``; 0: none.
        test_dir: Directory (local or ``s3://``) of test background files instead of
            ``test_frac``; they must not overlap the training/validation data in time. Its
            ``test_waveforms.hdf5`` (else ``data_dir``'s, else ``val_waveforms.hdf5``) is injected.
        valid_stride: Seconds between validation windows.
        valid_livetime: Seconds of timeslid background to score each validation.
        timeslide_step: Seconds between successive shifts; ``None`` means
            ``ceil(kernel_length + fduration)`` (must exceed light travel time + kernel).
        num_valid_views: Positions of coalescence within the kernel for each foreground window.
        valid_batch_size: Validation windows per batch; ``None`` means ``batch_size``.
        max_valid_waveforms: Use at most this many validation waveforms; ``None``: all.
        cache_dir: Local cache of the small files of ``s3://`` data (waveforms, glitch bank,
            the latest background file; background files are streamed, not copied);
            ``None`` means the system temp dir.
        background_loading: ``memory`` holds all training background and waveforms in memory
            (and on the device); ``chunked`` streams background from HDF5 in chunks, a bounded
            buffer per rank (see :mod:`~aframe_lib.data.chunked`); ``auto`` picks ``memory``
            when the training background and waveforms fit in ``max_memory``.
        max_memory: GiB of host memory per rank for the data the Dataset holds: the
            validation set (its background and projected waveforms, held for the run) plus the
            training background and waveforms. The ``auto`` threshold, and in the chunked path
            the bound on the validation set plus the chunk buffers (two loads: the one in use
            and the next) plus waveforms (all of them when they fit in a quarter of what the
            validation set leaves, else a fresh random subset per load). The process itself
            (torch, the model, a training step) comes on top: see the real-data results.
        chunk_length: Seconds of background per chunk (chunked path); longer than a window.
        chunks_per_epoch: Chunks each rank reads per epoch (chunked path), read in loads that
            fit ``max_memory``; ``None``: one load per epoch, as many chunks as fit.
        synthetic: ``None`` reads existing data; a dict (``{}`` for defaults) generates synthetic
            data in ``data_dir`` on first use with those ``ensure_synthetic_dataset`` arguments.
        seed: Seed of the validation sky positions and SNRs.
        psd: The PSD policy (:class:`~aframe_lib.data.psd.PsdPolicy`: ``length``,
            ``fftlength``, ``overlap``, ``average``, ``cadence``) shared with the search through
            ``model.json``; ``None``: the default policy.
        valid_snr_sampler: Distribution of the validation injections' network SNRs; ``None``
            means ``snr_sampler``. Set it when ``snr_sampler`` is tuned or scheduled, so that
            ``valid_auroc`` is measured on the same signals whatever the training SNRs were.
        glitch_bank: Glitch bank file (``aframe-data glitches``; a path, or a file name in
            ``data_dir``) whose glitches are added to training background windows; ``None``:
            no glitch augmentation.
        glitch_prob: Probability that a training window gets a glitch in each IFO
            (independently), or with ``glitch_one_ifo`` in one of its IFOs.
        glitch_one_ifo: At most one IFO per window gets a glitch (never coincident glitches).

    Raises:
        DataConfigError: naming the field, its value and the fix (see
            :func:`~aframe_lib.data.config.check_settings`).
    """

    data_dir: str  # the arguments may be given by position, in this order
    ifos: list[str] = field(default_factory=lambda: ["H1", "L1"])
    sample_rate: float = 2048.0
    kernel_length: float = 1.5
    fduration: float = 1.0
    psd_length: float | None = None
    fftlength: float | None = None
    highpass: float | None = 32.0
    lowpass: float | None = None
    batch_size: int = 384
    batches_per_epoch: int = 200
    waveform_prob: float = 0.277
    swap_prob: float = 0.014
    mute_prob: float = 0.055
    inversion_prob: float = 0.5
    reversal_prob: float = 0.5
    snr_sampler: Distribution | None = None
    dec: Distribution | None = None
    psi: Distribution | None = None
    phi: Distribution | None = None
    left_pad: float = 0.25
    right_pad: float = 0.05
    valid_frac: float = 0.25
    test_frac: float = 0.0
    test_dir: str | None = None
    valid_stride: float = 0.5
    valid_livetime: float = 3600.0
    timeslide_step: float | None = None
    num_valid_views: int = 4
    valid_batch_size: int | None = None
    max_valid_waveforms: int | None = None
    cache_dir: str | None = None
    background_loading: str = "auto"
    max_memory: float = 4.0
    chunk_length: float = 256.0
    chunks_per_epoch: int | None = None
    synthetic: dict[str, Any] | None = None
    seed: int = 0
    psd: PsdPolicy | None = None
    valid_snr_sampler: Distribution | None = None
    glitch_bank: str | None = None
    glitch_prob: float = 0.0
    glitch_one_ifo: bool = False
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

    @classmethod
    def arguments(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``DatasetSettings(*args, **kwargs)``'s arguments as given, with the defaults of the
        others, in field order, before resolution (what the Dataset keeps as hparams)."""
        given = inspect.signature(cls).bind(*args, **kwargs).arguments
        return {f.name: given.get(f.name, _default(f)) for f in fields(cls) if f.init}

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


def _default(f: Field) -> Any:
    """A field's default (``None`` for the one without: ``data_dir``, which is always given)."""
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


#: the names a Dataset reads from its settings: the fields and the derived sizes
SETTING_NAMES = frozenset(
    [f.name for f in fields(DatasetSettings)]
    + [name for name, value in vars(DatasetSettings).items() if isinstance(value, property)]
)
