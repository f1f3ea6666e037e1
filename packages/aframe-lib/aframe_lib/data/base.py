"""The training Dataset base: a LightningDataModule that other ML4GW projects subclass.

Data flow (everything after loading runs batched on the training device)::

    background windows (psd.length + psd.cadence + kernel + fduration)   BackgroundSampler
    -> PSD of psd.length s ending 0..cadence s before the window     PsdEstimator (ml4gw)
    -> inversion / reversal                                          ml4gw augmentations
    -> inject into a fraction of the batch: sample waveforms, sky projection, SNR rescaling
       against that sample's PSD, place coalescence in the kernel, swap/mute (relabel as noise)
    -> whiten with the background PSD                                ml4gw Whiten
    -> ``transform`` hook (identity; e.g. a spectrogram in a subclass)

Validation uses held-out background files, shifted IFO-against-IFO (timeslides) to build
``valid_livetime`` seconds of background, and the same windows with validation waveforms injected
at ``num_valid_views`` positions (foreground). Subclasses usually override only
:attr:`transform` (an ``nn.Module``, exported with the network); :meth:`augment` and
:meth:`validation_batch` can be overridden too.
"""

# ruff: noqa: F722 - jaxtyping shapes ("batch ifo time") are not forward references
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import numpy as np
import torch
from jaxtyping import Float, Float32, Int
from ml4gw.transforms import Whiten
from torch import Tensor

from ..augmentations import (
    ChannelMuter,
    ChannelSwapper,
    GlitchAdder,
    SignalInverter,
    SignalReverser,
)
from ..utils import fs
from .background import check_finite, list_segments, localize, read_segment
from .chunked import ChunkBudget, ChunkedTrainingData, ChunkTable, GiB, waveform_shape
from .config import DataConfigError, check_chunk_length
from .injection import Injector, slice_around
from .loaders import RankBatches
from .preprocessing import PsdEstimator
from .sampling import BackgroundSampler
from .settings import SETTING_NAMES, DatasetSettings
from .snr import SnrCurriculum
from .splits import check_disjoint, split_segments
from .timeslides import TimeslideWindows, make_timeslides
from .waveforms import read_waveforms

logger = logging.getLogger(__name__)


# arguments kept out of hparams: objects (the distributions), and ``psd``, which is added as a dict
_NOT_HPARAMS = ("snr_sampler", "valid_snr_sampler", "dec", "psi", "phi", "psd")

if TYPE_CHECKING:
    # for type checkers the Dataset has the settings' typed, read-only (frozen) attributes;
    # at run time they are read through ``__getattr__`` below
    _SettingsView = DatasetSettings
else:
    _SettingsView = object


class AframeDataset(pl.LightningDataModule, _SettingsView):
    """LightningDataModule for aframe detectors (see the module docstring for the data path).

    Args:
        *args: The first arguments by position, in the order of the fields of
            :class:`~aframe_lib.data.settings.DatasetSettings` (``data_dir``, ``ifos``, ...).
        **settings: The arguments by keyword: the fields of
            :class:`~aframe_lib.data.settings.DatasetSettings`, where each is declared with its
            type, default and help (``data.init_args.<name>`` in a config; ``aframe-train fit
            --help`` lists them).

    The arguments are checked and kept as :attr:`settings` (a frozen
    :class:`~aframe_lib.data.settings.DatasetSettings`, with the derived sizes as properties);
    each is also readable, not writable, as ``dataset.<name>``.
    """

    settings: DatasetSettings

    def __init__(self, *args: Any, **settings: Any) -> None:
        super().__init__()
        # every argument, the defaults included, bound to this frame's ``settings``: what
        # save_hyperparameters keeps (checkpoints, model.json "data"), with a subclass's own
        # arguments; under LightningCLI it keeps the config's data section instead
        settings = DatasetSettings.arguments(*args, **settings)
        self.save_hyperparameters(ignore=_NOT_HPARAMS)
        self.settings = DatasetSettings(**settings)
        self.hparams["psd"] = self.psd_policy.to_dict()  # plain data: checkpoints, model.json
        self.psd_estimator = PsdEstimator.from_policy(
            self.psd_policy, self.kernel_length, self.fduration, self.sample_rate, self.highpass
        )
        self.whitener = Whiten(self.fduration, self.sample_rate, self.highpass, self.lowpass)
        self.injector = Injector(
            self.ifos, self.sample_rate, self.highpass, self.lowpass, self.snr_sampler,
            dec=self.dec, psi=self.psi, phi=self.phi,
        )  # fmt: skip
        self.inverter = SignalInverter(self.inversion_prob)
        self.reverser = SignalReverser(self.reversal_prob)
        self.swapper = ChannelSwapper(self.swap_prob)
        self.muter = ChannelMuter(self.mute_prob)
        # glitches from data.glitch_bank (read in setup) added to raw training windows
        self.glitcher = GlitchAdder(None, self.glitch_prob, self.glitch_one_ifo)
        # model-specific transform of whitened strain (batch, num_ifos, kernel_size): identity
        # here; a subclass assigns e.g. a spectrogram module. Exported models include it.
        self.transform: torch.nn.Module = torch.nn.Identity()
        self._device_cache: dict[str, Any] = {}
        self.chunked: ChunkedTrainingData | None = None
        self._live_waveforms: Tensor | None = None
        self._glitch_bank_path: str | None = None

    def __getattr__(self, name: str) -> Any:
        """``dataset.<setting>`` is ``dataset.settings.<setting>`` (only called for names that
        are not the Dataset's own attributes)."""
        if name in SETTING_NAMES and "settings" in self.__dict__:
            return getattr(self.settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SETTING_NAMES:
            raise AttributeError(
                f"{type(self).__name__}.{name} is a setting of the Dataset (read-only, from "
                f"DatasetSettings): pass {name}=... when building the Dataset"
            )
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ data on disk
    @property
    def local_dir(self) -> str:
        """``data_dir`` itself, or the local cache of an s3:// one.

        The cache holds the waveform files, the glitch bank and the latest background file (for
        the export's timing calibration), never the whole data set: the background files of an
        s3:// ``data_dir`` are streamed, each rank reading only the chunks it trains on (and
        the held-out files it validates on).
        """
        return self._local(self.data_dir)

    def _local(self, path: str) -> str:
        """``path`` itself, or the local cache of an s3:// one."""
        if not fs.is_remote(path):
            return path
        root = self.cache_dir or os.path.join(tempfile.gettempdir(), "aframe-cache")
        return os.path.join(root, hashlib.sha256(path.encode()).hexdigest()[:12])

    def prepare_data(self) -> None:
        """Generate synthetic data on first use (if asked) and cache the small files of s3://
        data (waveforms, glitch bank, the latest background file; rank 0 of each node)."""
        if self.synthetic is not None:
            from .synthetic import ensure_synthetic_dataset

            kwargs = {"ifos": self.ifos, "sample_rate": self.sample_rate, **self.synthetic}
            ensure_synthetic_dataset(self.data_dir, **kwargs)
        if fs.is_remote(self.data_dir):
            localize(self.data_dir, self.local_dir, latest=1)
        if self.test_dir is not None and fs.is_remote(self.test_dir):
            localize(self.test_dir, self._local(self.test_dir), latest=0)

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def setup(self, stage: str | None = None) -> None:
        """Read and check the data, split it, and build the samplers."""
        self._device_cache = {}
        rank, world_size = self._rank()
        if world_size > 1:
            # every rank starts from the same seed (so models initialise identically), but
            # training batches are drawn here in the main process from the global RNG: give
            # each rank its own stream, or all ranks would train on identical batches
            torch.manual_seed((torch.initial_seed() + 7919 * rank) % 2**63)
        segments = list_segments(
            self.data_dir,  # s3://: read in place (headers now, chunks when trained on)
            self.ifos,
            self.sample_rate,
            min_duration=self.sample_length,
            min_duration_desc=(
                f"data.psd.length (data.psd_length) + PSD age up to data.psd.cadence + "
                f"data.kernel_length + data.fduration = {self.psd_length} + "
                f"{self.psd_staleness / self.sample_rate:g} + {self.kernel_length} + "
                f"{self.fduration} s"
            ),
        )
        self._check_finite(segments)
        train, valid, test = self._split(segments)
        logger.info(
            "%d training, %d validation and %d test background files",
            len(train),
            len(valid),
            len(test),
        )
        self._split_paths = {"train": train, "valid": valid, "test": test}
        held_out, held_out_waveforms = (
            (test, self._test_waveforms()) if stage == "test" else (valid, None)
        )
        self._setup_training(train, self._held_out_bytes(held_out, held_out_waveforms))
        self._setup_glitches()
        self._setup_validation(held_out, held_out_waveforms)

    def _check_finite(self, segments: list) -> None:
        """Scan local files for NaN/inf now; s3:// files are checked as they are read (every
        read checks its samples), so no rank reads the whole data set at setup."""
        for segment in segments:
            if not fs.is_remote(segment.path):
                check_finite(segment, self.ifos)

    def _setup_glitches(self) -> None:
        """Read ``data.glitch_bank`` (a path, or a file name in ``data_dir``) for the
        glitch augmentation; nothing without one."""
        if not self.glitch_bank or self.glitch_prob == 0:
            return
        from .config import DataConfigError
        from .glitches import NoiseModelError, read_glitch_bank

        path = self.glitch_bank
        if "/" not in path and not os.path.exists(path):
            path = fs.join(self.local_dir, path)
        try:
            bank = read_glitch_bank(path, self.ifos, self.sample_rate)
        except NoiseModelError as exc:
            raise DataConfigError(f"data.glitch_bank={self.glitch_bank!r}: {exc}") from exc
        self.glitcher.bank = torch.from_numpy(bank)
        self._glitch_bank_path = path  # model.json records the bank (data_provenance)
        logger.info("glitch augmentation: %d glitches per IFO from %s", bank.shape[1], path)

    def data_provenance(self) -> dict[str, Any]:
        """Where the data of each split came from (:mod:`~aframe_lib.data.provenance`), as
        ``model.json`` records it: ``{"train" | "valid" | "test": [records], "unrecorded":
        {split: [files without a record]}, "waveforms": {"train" | "valid" | "test": record}}``
        and ``population``, the training waveforms' population (``None``: not recorded); with
        the glitch augmentation on, ``glitch_bank``: the bank's record, with the digest of its
        content (:func:`~aframe_lib.data.glitches.glitch_bank_record`: generator, noise model,
        gengli version), so an evaluation can tell its glitches from the ones trained on."""
        from . import provenance

        splits = getattr(self, "_split_paths", None)
        if splits is None:
            return {}
        out: dict[str, Any] = {"unrecorded": {}, "waveforms": {}}
        for name, segments in splits.items():
            out[name], missing = provenance.of_files([s.path for s in segments])
            if missing:
                out["unrecorded"][name] = missing
        files = {"train": fs.join(self.local_dir, "waveforms.hdf5"),
                 "valid": fs.join(self.local_dir, "val_waveforms.hdf5"),
                 "test": self._test_waveforms()}  # fmt: skip
        for name, path in files.items():
            if os.path.exists(path):
                out["waveforms"][name] = provenance.read(path)
        train = out["waveforms"].get("train") or {}
        out["population"] = train.get("population")
        bank = self._glitch_bank_path
        if bank is not None and self.glitch_prob > 0:
            from .glitches import glitch_bank_record

            out["glitch_bank"] = glitch_bank_record(bank)
        return out

    def _split(self, segments: list) -> tuple[list, list, list]:
        """Training, validation and test files (see :mod:`~aframe_lib.data.splits`)."""
        if self.test_dir is None:
            return split_segments(segments, self.valid_frac, self.test_frac)
        train, valid, _ = split_segments(segments, self.valid_frac)
        test = list_segments(
            self.test_dir, self.ifos, self.sample_rate, min_duration=self.sample_length
        )
        self._check_finite(test)
        check_disjoint(test, train + valid, f"data.test_dir={self.test_dir!r}")
        return train, valid, test

    def _test_waveforms(self) -> str:
        """The waveforms injected in the test split: the first ``test_waveforms.hdf5`` found."""
        dirs = [self._local(self.test_dir)] if self.test_dir is not None else []
        for folder in [*dirs, self.local_dir]:
            path = fs.join(folder, "test_waveforms.hdf5")
            if os.path.exists(path):
                return path
        logger.info("no test_waveforms.hdf5: the test split injects val_waveforms.hdf5")
        return fs.join(self.local_dir, "val_waveforms.hdf5")

    def _held_out_bytes(self, held_out: list, waveforms: str | None = None) -> int:
        """Host memory the validation (or test) set holds for the whole run: its background
        (the segments :meth:`_livetime_segments` keeps) and its projected waveforms."""
        if not held_out:
            return 0
        samples = sum(s.size for s in self._livetime_segments(held_out))
        path = waveforms or fs.join(self.local_dir, "val_waveforms.hdf5")
        rows, size, _ = waveform_shape(path, self.sample_rate)
        rows = min(rows, self.max_valid_waveforms or rows)
        return (samples + rows * size) * self.num_ifos * 4

    def _setup_training(self, train: list, held_out_bytes: int = 0) -> None:
        """Training background and waveforms, in memory or chunked (``background_loading``),
        in what ``max_memory`` leaves beside the ``held_out_bytes`` of validation data."""
        rank, world_size = self._rank()
        if self.chunked is not None:
            self.chunked.close()
        self.chunked, self._live_waveforms = None, None
        path = fs.join(self.local_dir, "waveforms.hdf5")
        num_waveforms, waveform_size, coalescence_time = waveform_shape(path, self.sample_rate)
        self.coalescence_index = int(round(coalescence_time * self.sample_rate))
        background_bytes = sum(s.size for s in train) * self.num_ifos * 4
        waveform_bytes = num_waveforms * 2 * waveform_size * 4
        self.loading = self.background_loading
        if self.loading == "auto":
            fits = background_bytes + waveform_bytes + held_out_bytes <= self.max_memory * GiB
            self.loading = "memory" if fits else "chunked"
        logger.info(
            "training data: %.3g GiB of background, %.3g GiB of waveforms, beside %.3g GiB of "
            "validation data: %s (max_memory=%g)", background_bytes / GiB,
            waveform_bytes / GiB, held_out_bytes / GiB, self.loading, self.max_memory,
        )  # fmt: skip
        waveform_rows = None
        if self.loading == "memory":
            self.sampler = BackgroundSampler(
                [read_segment(s, self.ifos) for s in train], self.sample_size, coincident=False
            )
        else:
            check_chunk_length(self.chunk_length, self.sample_length)
            chunk_size = int(round(self.chunk_length * self.sample_rate))
            table = ChunkTable.tile([s.size for s in train], self.sample_size, chunk_size)
            batches = -(-self.batches_per_epoch // world_size)
            budget = ChunkBudget.plan(
                max_memory=self.max_memory, chunk_size=chunk_size, num_ifos=self.num_ifos,
                table=table, chunks_per_epoch=self.chunks_per_epoch, world_size=world_size,
                batches_per_rank=batches, num_waveforms=num_waveforms,
                waveform_size=waveform_size, reserved_bytes=held_out_bytes,
            )  # fmt: skip
            trainer = getattr(self, "trainer", None)
            self.chunked = ChunkedTrainingData(
                train, self.ifos, self.sample_size, chunk_size, table, budget,
                self.batch_size, batches, rank=rank, world_size=world_size, seed=self.seed,
                waveform_file=path, num_waveforms=num_waveforms, sample_rate=self.sample_rate,
                epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
            )  # fmt: skip
            self.sampler = None
            waveform_rows = budget.waveform_rows
            logger.info("chunked background: %s of %d chunks", budget, len(table))
        self.train_waveforms = None
        if waveform_rows is None:
            waveforms = read_waveforms(path, sample_rate=self.sample_rate)
            self.train_waveforms = torch.as_tensor(np.stack([waveforms.cross, waveforms.plus], 1))

    def teardown(self, stage: str | None = None) -> None:
        """Stop the chunked path's background reader."""
        if self.chunked is not None:
            self.chunked.close()

    def _setup_validation(self, valid: list, waveforms: str | None = None) -> None:
        """Windows and injections of the held-out files ``valid`` (validation or test)."""
        if not valid:
            raise DataConfigError(
                "data.test_frac=0 and data.test_dir=None: there is no held-out test split to "
                "score (validation picked the checkpoint, so it cannot be the test); set "
                "data.test_frac (e.g. 0.2) or data.test_dir"
            )
        valid = self._livetime_segments(valid)
        rank, world_size = self._rank()
        background = [torch.as_tensor(read_segment(s, self.ifos)) for s in valid]
        timeslides = make_timeslides(
            [b.shape[-1] for b in background],
            self.num_ifos,
            self.sample_rate,
            livetime=self.valid_livetime,
            step=self.settings.slide_step,
            min_size=self.sample_size,
        )
        stride = self.settings.valid_stride_size
        self.valid_windows = TimeslideWindows(
            background,
            timeslides,
            self.sample_size,
            stride,
            self.valid_batch_size or self.batch_size,
            rank=rank,
            world_size=world_size,
        )
        # first window number of each timeslide: gives every window a global id, which
        # decides (identically on every rank) which validation waveform it receives
        counts = [max(0, (t.size - self.sample_size) // stride + 1) for t in timeslides]
        self.window_offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]))

        val = read_waveforms(
            waveforms or fs.join(self.local_dir, "val_waveforms.hdf5"),
            sample_rate=self.sample_rate,
        )
        keep = slice(0, self.max_valid_waveforms)  # "at most": fewer in the file is fine
        # fixed sky positions and SNRs, so the validation score is comparable across epochs
        # and equal on every rank
        with torch.random.fork_rng(devices=[]):
            # the test split's sky positions and SNRs are its own, not validation's
            torch.manual_seed(self.seed if waveforms is None else self.seed * 1000 + 4)
            cross, plus = torch.as_tensor(val.cross[keep]), torch.as_tensor(val.plus[keep])
            self.valid_responses = self.injector.project(cross, plus).float()
            sampler = self.valid_snr_sampler or self.snr_sampler
            if isinstance(sampler, SnrCurriculum):  # validation: the schedule's end, fixed
                sampler = sampler.target
            self.valid_snrs = sampler.sample((len(cross),))
        self.valid_coalescence_index = int(round(val.coalescence_time * self.sample_rate))

    def _livetime_segments(self, valid: list) -> list:
        """The first validation segments whose timeslides cover ``valid_livetime``.

        ``make_timeslides`` takes segments in order, so later ones would be read into memory but
        never scored: validation memory stays near ``valid_livetime`` (plus one segment) however
        much background is held out, and the timeslides are unchanged.
        """
        slides = make_timeslides(
            [s.size for s in valid],
            self.num_ifos,
            self.sample_rate,
            livetime=self.valid_livetime,
            step=self.settings.slide_step,
            min_size=self.sample_size,
        )
        return valid[: max(t.segment for t in slides) + 1]

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> torch.utils.data.DataLoader:
        if self.chunked is not None:
            # chunks stream through a background reader; windows are drawn on the device
            trainer = getattr(self, "trainer", None)
            if trainer is not None:
                self.chunked.device = trainer.strategy.root_device
            return torch.utils.data.DataLoader(self.chunked, batch_size=None)
        # background and waveforms already live in memory: each "batch" is only its number,
        # and the batch itself is drawn on the device in on_after_batch_transfer
        _, world_size = self._rank()
        per_rank = -(-self.batches_per_epoch // world_size)
        # iterable: no Trainer can split it again with a DistributedSampler (see .loaders)
        return torch.utils.data.DataLoader(RankBatches(torch.arange(per_rank)), batch_size=None)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """This rank's share of the validation batches, split by the Dataset, not the Trainer.

        The share is wrapped in an iterable dataset (:class:`~.loaders.RankBatches`), so the
        score is the same whatever the Trainer's ``use_distributed_sampler``.
        """
        _, world_size = self._rank()
        if self.valid_windows.world_size != world_size:
            raise RuntimeError(
                f"the validation set was split for {self.valid_windows.world_size} process(es) "
                f"but the trainer runs {world_size}: call setup() under this trainer (Lightning "
                "does so in fit/validate/test) before asking for the dataloaders"
            )
        return torch.utils.data.DataLoader(RankBatches(self.valid_windows), batch_size=None)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        """The test split (``setup("test")`` builds it in place of validation's windows)."""
        return self.val_dataloader()

    def _on_device(self, name: str, device: torch.device) -> Any:
        """``self.<name>`` on ``device``, copied there once (the cache is reset by setup)."""
        key = f"{name}:{device}"
        if key not in self._device_cache:
            self._device_cache[key] = getattr(self, name).to(device)
        return self._device_cache[key]

    def _move_transforms(self, device: torch.device) -> None:
        """Move the transforms' buffers (windows, detector geometry) to the batch's device."""
        if self._device_cache.get("transforms") != device:
            modules = (self.psd_estimator, self.whitener, self.injector, self.transform,
                       self.glitcher)  # fmt: skip
            for module in modules:
                module.to(device)
            self._device_cache["transforms"] = device

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        device = trainer.lightning_module.device if trainer is not None else torch.device("cpu")
        if trainer is not None and trainer.training:
            if isinstance(self.snr_sampler, SnrCurriculum):  # the same step on every rank
                self.snr_sampler.at(trainer.global_step)
            if self.chunked is not None:  # windows drawn on the device by the chunk iterator
                X, self._live_waveforms = batch
                return self.augment(X)
            return self.augment(self._on_device("sampler", device)(self.batch_size))
        return self.validation_batch(*batch)

    # ------------------------------------------------------------------ the data path
    def augment(
        self, X: Float[Tensor, "batch ifo sample"]
    ) -> tuple[Float[Tensor, "batch ifo *features"], Float[Tensor, "batch 1"]]:
        """Turn raw background windows into a training batch.

        Args:
            X: ``(batch, num_ifos, sample_size)`` background on the training device.

        Returns:
            ``transform(whitened)`` and labels ``(batch, 1)`` (1 = signal, 0 = noise).
        """
        X, y = self.whitened_batch(X)
        return self.transform(X), y

    def example_batch(
        self, num: int, device: torch.device | str = "cpu"
    ) -> Float32[Tensor, "num ifo kernel"]:
        """``num`` whitened training samples before :attr:`transform` (for tracing exports)."""
        device = torch.device(device)
        if self.chunked is not None:
            X, _ = self.whitened_batch(self.chunked.example_sampler(device)(num))
        else:
            X, _ = self.whitened_batch(self._on_device("sampler", device)(num))
        return X

    def _training_waveforms(self, device: torch.device) -> Tensor:
        """All training waveforms, or (chunked, when they exceed the budget) the current subset."""
        if self.train_waveforms is not None:
            return self._on_device("train_waveforms", device)
        if self._live_waveforms is None:  # outside training (e.g. a direct augment call)
            self._live_waveforms = self.chunked.waveform_subset(0, 0)
        return self._live_waveforms.to(device)

    def whitened_batch(
        self, X: Float[Tensor, "batch ifo sample"]
    ) -> tuple[Float32[Tensor, "batch ifo kernel"], Float[Tensor, "batch 1"]]:
        """:meth:`augment` without the final ``transform``: ``(batch, num_ifos, kernel_size)``."""
        self._move_transforms(X.device)
        X, _ = self.glitcher(X)  # raw strain: before the PSD estimate, as in real data
        X, psds = self.psd_estimator(X)
        X = self.reverser(self.inverter(X))
        y = torch.zeros((len(X), 1), device=X.device)
        mask = torch.rand(len(X), device=X.device) < self.inject_prob
        num = int(mask.sum())
        if num:
            waveforms = self._training_waveforms(X.device)
            idx = torch.randint(len(waveforms), (num,), device=X.device)
            responses = self.injector.project(waveforms[idx, 0], waveforms[idx, 1])
            responses, _ = self.injector.rescale(responses, psds[mask])
            lo, hi = self.coalescence_bounds
            positions = torch.randint(lo, hi + 1, (num,), device=X.device)
            kernels = slice_around(responses, self.coalescence_index, positions, X.shape[-1])
            kernels, swapped = self.swapper(kernels)
            kernels, muted = self.muter(kernels)
            labels = torch.ones(num, device=X.device)
            labels[swapped] = 0
            labels[muted] = 0
            X[mask] += kernels.to(X.dtype)
            y[mask, 0] = labels
        return self.whitener(X, psds).float(), y

    @property
    def coalescence_bounds(self) -> tuple[int, int]:
        """Sample indices in a window (kernel + whitening pad) where coalescence may land."""
        pad = self.fduration / 2
        lo = int(round((pad + self.left_pad) * self.sample_rate))
        hi = int(round((pad + self.kernel_length - self.right_pad) * self.sample_rate))
        return lo, hi

    def validation_batch(
        self,
        X: Float[Tensor, "batch ifo sample"],
        shift_id: Int[Tensor, " batch"],
        index: Int[Tensor, " batch"],
    ) -> dict[str, Tensor]:
        """Whitened background windows and their injected views.

        Args:
            X: ``(batch, num_ifos, sample_size)`` timeslid background.
            shift_id: ``(batch,)`` timeslide of each window (-1: padding, to be ignored).
            index: ``(batch,)`` window number within its timeslide.

        Returns:
            ``background`` ``(batch, ...)`` and ``foreground`` ``(batch, num_valid_views, ...)``
            (both after :meth:`transform`), ``snr`` ``(batch,)`` (network SNR of each
            foreground injection), and ``shift_id``/``index`` passed through.
        """
        self._move_transforms(X.device)
        offsets = self._on_device("window_offsets", X.device)
        window = offsets[shift_id.clamp_min(0)] + index
        # PSD ages as in training, fixed per window (a multiplicative hash of its id)
        staleness = (window * 2654435761) % (self.psd_staleness + 1)
        X, psds = self.psd_estimator(X, staleness)
        background = self.transform(self.whitener(X, psds).float())

        responses = self._on_device("valid_responses", X.device)
        snrs = self._on_device("valid_snrs", X.device)
        which = window % len(responses)
        injected, _ = self.injector.rescale(responses[which], psds, snrs[which])
        lo, hi = self.coalescence_bounds
        views = torch.linspace(lo, hi, self.num_valid_views, device=X.device).round().long()
        foreground = []
        for position in views:
            positions = position.expand(len(X))
            kernels = slice_around(injected, self.valid_coalescence_index, positions, X.shape[-1])
            foreground.append(self.transform(self.whitener(X + kernels.to(X.dtype), psds).float()))
        return {
            "background": background,
            "foreground": torch.stack(foreground, dim=1),
            "snr": snrs[which],
            "shift_id": shift_id,
            "index": index,
        }
