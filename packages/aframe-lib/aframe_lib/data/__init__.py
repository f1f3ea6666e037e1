"""The data layer: the HDF5 contract, synthetic data, and the training Dataset base.

- :mod:`~aframe_lib.data.background`: background strain files (``background-{t0}-{duration}.hdf5``),
  local or ``s3://``: discovery, validation, reading, writing, train/validation split.
- :mod:`~aframe_lib.data.waveforms`: waveform files (``waveforms.hdf5``, ``val_waveforms.hdf5``).
- :mod:`~aframe_lib.data.synthetic`: coloured Gaussian background and IMRPhenomD waveforms.
- :mod:`~aframe_lib.data.timeslides`: timeslides of validation background.
- :mod:`~aframe_lib.data.injection`: sky projection, SNR rescaling and injection (on device).
- :mod:`~aframe_lib.data.psd`: :class:`PsdPolicy`, how each window's PSD is estimated (shared
  by training and the search through ``model.json``).
- :mod:`~aframe_lib.data.snr`: :class:`SnrCurriculum`, training SNRs whose minimum falls over
  training (a ``snr_sampler``).
- :mod:`~aframe_lib.data.base`: :class:`AframeDataset`, the LightningDataModule to subclass.

Submodules are imported lazily: ``from aframe_lib.data import AframeDataset`` works, but
``import aframe_lib.data`` alone pulls in neither torch nor h5py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aframe_lib.utils.lazy import lazy_exports

_EXPORTS = {
    "AframeDataset": "base",
    "BackgroundSegment": "background",
    "BackgroundError": "background",
    "list_segments": "background",
    "read_segment": "background",
    "write_background": "background",
    "WaveformSet": "waveforms",
    "read_waveforms": "waveforms",
    "write_waveforms": "waveforms",
    "Injector": "injection",
    "PsdPolicy": "psd",
    "SnrCurriculum": "snr",
    "Timeslide": "timeslides",
    "make_timeslides": "timeslides",
}

if TYPE_CHECKING:
    from .background import (
        BackgroundError,
        BackgroundSegment,
        list_segments,
        read_segment,
        write_background,
    )
    from .base import AframeDataset
    from .injection import Injector
    from .psd import PsdPolicy
    from .snr import SnrCurriculum
    from .timeslides import Timeslide, make_timeslides
    from .waveforms import WaveformSet, read_waveforms, write_waveforms


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [  # noqa: F822 - resolved lazily by __getattr__
    "AframeDataset",
    "BackgroundError",
    "BackgroundSegment",
    "Injector",
    "PsdPolicy",
    "SnrCurriculum",
    "Timeslide",
    "WaveformSet",
    "list_segments",
    "make_timeslides",
    "read_segment",
    "read_waveforms",
    "write_background",
    "write_waveforms",
]
