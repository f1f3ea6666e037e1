"""aframe-lib: the ml4gw-plus layer of aframe.

What other ML4GW projects ``pip install`` to train gravitational-wave detectors:

- :mod:`aframe_lib.data`: the background/waveform HDF5 contract (local or ``s3://``), synthetic
  data, and the :class:`~aframe_lib.data.AframeDataset` LightningDataModule base (on-device
  sampling, PSD estimation, whitening, injection with sky projection and SNR rescaling,
  timeslide validation).
- :mod:`aframe_lib.metrics`: the timeslide AUROC validation metric.
- :mod:`aframe_lib.augmentations`: channel swap/mute augmentations (ml4gw has the rest).
- :mod:`aframe_lib.callbacks`: export at the end of training, validation plots (PNG or one W&B
  table per run), a LightningCLI config saver that fills ``wandb.config`` with secrets redacted.
- :mod:`aframe_lib.export`: TorchScript and ONNX export checked against the eager model.
- :mod:`aframe_lib.utils.fs`: local and ``s3://`` paths, atomic writes, retries.

Importing this package is cheap: nothing heavy (torch, ml4gw, h5py, s3fs, ray, wandb) is
imported until a submodule that needs it is.
"""

__version__ = "0.1.0"
