"""The Dataset base end to end on a tiny synthetic data set: shapes, labels, validation, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from helpers.tiny_data import SAMPLE_RATE, SYNTHETIC, dataset_kwargs

from aframe_lib.data import AframeDataset
from aframe_lib.data.background import BackgroundError
from aframe_lib.data.config import DataConfigError


@pytest.fixture(scope="module")
def data_dir(tiny_data_dir):
    return tiny_data_dir


def make(data_dir, **kwargs):
    defaults = dataset_kwargs(
        data_dir=str(data_dir), batch_size=32, batches_per_epoch=4, valid_livetime=300.0,
        num_valid_views=3,
    )  # fmt: skip
    return AframeDataset(**{**defaults, **kwargs})


def test_training_batch_shapes_and_label_fraction(data_dir):
    ds = make(data_dir, batch_size=512, waveform_prob=0.3, swap_prob=0.1, mute_prob=0.1)
    ds.setup("fit")
    raw = ds.sampler(512)
    # PSD + up to 1 s (the default psd.cadence) of PSD age + kernel + whitening padding
    assert ds.psd_staleness == int(SAMPLE_RATE) - 1
    assert raw.shape == (512, 2, int((4.0 + 1.0 + 1.0) * SAMPLE_RATE) + ds.psd_staleness)
    X, y = ds.augment(raw)
    assert X.shape == (512, 2, int(SAMPLE_RATE)) and X.dtype == torch.float32
    assert y.shape == (512, 1) and set(y.unique().tolist()) <= {0.0, 1.0}
    assert torch.isfinite(X).all()
    # swapped/muted injections are relabelled as noise, so waveform_prob is what ends up signal
    assert y.mean().item() == pytest.approx(0.3, abs=0.06)


def test_injected_samples_carry_the_signal(data_dir):
    """At a loud SNR the samples labelled 1 have far more whitened power than the others."""
    loud = torch.distributions.Uniform(199.0, 200.0)
    ds = make(
        data_dir, batch_size=256, waveform_prob=0.5, swap_prob=0.0, mute_prob=0.0, snr_sampler=loud
    )
    ds.setup("fit")
    X, y = ds.augment(ds.sampler(256))
    power = (X**2).sum(-1).sum(-1)  # ~ kernel_size * num_ifos for noise, + SNR^2 for signals
    noise, signal = power[y[:, 0] == 0], power[y[:, 0] == 1]
    assert noise.median() < 2 * X.shape[-1] * 2
    # most of an SNR-200 signal lands in the 1 s kernel: rho^2 = 4e4 >> noise power ~ 512 * 1.3
    assert signal.median() > 0.3 * 200**2


def test_validation_batches(data_dir):
    ds = make(data_dir)
    ds.setup("fit")
    loader = ds.val_dataloader()
    batch = ds.validation_batch(*next(iter(loader)))
    assert batch["background"].shape == (16, 2, int(SAMPLE_RATE))
    assert batch["foreground"].shape == (16, 3, 2, int(SAMPLE_RATE))
    assert batch["snr"].shape == (16,) and ((batch["snr"] >= 10) & (batch["snr"] <= 20)).all()
    assert torch.isfinite(batch["foreground"]).all()
    # the same windows get the same injections every epoch (fixed sky positions and SNRs)
    again = ds.validation_batch(*next(iter(ds.val_dataloader())))
    torch.testing.assert_close(again["foreground"], batch["foreground"])
    # enough windows for the requested livetime, with no zero shift
    windows = ds.valid_windows
    assert windows.num_windows * ds.valid_stride >= 300.0 * 0.9
    assert all(any(s != 0 for s in t.shifts) for t in windows.timeslides)


def test_validation_snrs_follow_valid_snr_sampler_whatever_the_training_snrs(data_dir):
    """With valid_snr_sampler set, two Datasets that train on different SNRs validate on the
    same injections (a tuned or scheduled snr_sampler keeps valid_auroc comparable); without
    it the validation SNRs are the training distribution's, as before."""
    from ml4gw.distributions import PowerLaw

    valid = PowerLaw(30.0, 40.0, -3.0)
    batches = []
    for training in (PowerLaw(4.0, 5.0, -3.0), PowerLaw(60.0, 80.0, -3.0)):
        ds = make(data_dir, snr_sampler=training, valid_snr_sampler=valid)
        ds.setup("fit")
        batches.append(ds.validation_batch(*next(iter(ds.val_dataloader()))))
        assert ((ds.valid_snrs >= 30) & (ds.valid_snrs <= 40)).all()
        assert "valid_snr_sampler" not in ds.hparams  # an object, like snr_sampler
    torch.testing.assert_close(batches[0]["snr"], batches[1]["snr"])
    torch.testing.assert_close(batches[0]["foreground"], batches[1]["foreground"])
    default = make(data_dir, snr_sampler=PowerLaw(60.0, 80.0, -3.0))
    default.setup("fit")
    assert ((default.valid_snrs >= 60) & (default.valid_snrs <= 80)).all()


def test_split_across_ranks_gives_equal_batch_counts(data_dir):
    class FakeTrainer:  # only the two attributes the data module reads
        global_rank, world_size = 0, 3

    lengths, batches = set(), []
    for rank in range(3):
        ds = make(data_dir)
        FakeTrainer.global_rank = rank
        ds.trainer = FakeTrainer()
        ds.setup("fit")
        lengths.add((len(ds.val_dataloader()), len(ds.train_dataloader())))
        batches.append(ds.valid_windows[0][2])
    assert len(lengths) == 1  # every rank runs the same number of batches: no DDP hang
    assert not torch.equal(batches[0], batches[1])


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("ifos", ["H1", "X1"], r"data.ifos=.*unknown detector"),
        ("ifos", ["H1", "H1"], r"data.ifos=.*only once"),
        ("kernel_length", -1.0, r"data.kernel_length=-1.0: must be a positive number"),
        ("waveform_prob", 0.9, r"data.waveform_prob=0.9: .*swap_prob"),
        ("highpass", 500.0, r"data.highpass=500.0: must be in \(0, 128.0\)"),
        ("psd_length", 1.0, r"data.psd_length=1.0: must be at least the FFT length"),
        ("left_pad", 0.96, r"data.left_pad=0.96: .*kernel_length"),
        ("batch_size", 0, r"data.batch_size=0: must be a positive integer"),
    ],
)
def test_bad_config_values_fail_at_construction(data_dir, field, value, match):
    kwargs = {field: value}
    if field == "waveform_prob":
        kwargs.update(swap_prob=0.2, mute_prob=0.2)
    with pytest.raises(DataConfigError, match=match):
        make(data_dir, **kwargs)


def test_bad_data_fails_at_setup_naming_the_problem(data_dir, tmp_path):
    with pytest.raises(BackgroundError, match="does not exist"):
        make(tmp_path / "nowhere").setup("fit")
    with pytest.raises(BackgroundError, match="V1"):
        make(data_dir, ifos=["H1", "V1"]).setup("fit")
    with pytest.raises(BackgroundError, match="sample rate"):
        make(data_dir, sample_rate=512.0).setup("fit")
    with pytest.raises(BackgroundError, match="psd_length"):
        make(data_dir, psd_length=300.0).setup("fit")


def test_synthetic_data_generated_on_first_use_then_reused(tmp_path):
    ds = make(tmp_path / "data", synthetic=SYNTHETIC)
    ds.prepare_data()
    manifest = tmp_path / "data" / "synthetic.json"
    mtime = manifest.stat().st_mtime_ns
    ds.setup("fit")
    make(tmp_path / "data", synthetic=SYNTHETIC).prepare_data()
    assert manifest.stat().st_mtime_ns == mtime


def test_s3_data_dir_is_streamed_with_only_small_files_cached(data_dir, s3_bucket, tmp_path):
    from aframe_lib.utils import fs

    filesystem, inner = fs.filesystem(f"{s3_bucket}/data")
    for path in sorted(data_dir.iterdir()):
        filesystem.put_file(str(path), f"{inner}/{path.name}")
    ds = make(f"{s3_bucket}/data", cache_dir=str(tmp_path / "cache"))
    ds.prepare_data()
    ds.setup("fit")
    X, y = ds.augment(ds.sampler(8))
    assert X.shape == (8, 2, int(SAMPLE_RATE))
    local = sorted(p.name for p in (tmp_path / "cache").rglob("*.hdf5"))
    latest = sorted(p.name for p in data_dir.glob("background-*.hdf5"))[-1]
    assert [n for n in local if n.startswith("background-")] == [latest]  # not the data set
    assert {"val_waveforms.hdf5", "waveforms.hdf5"} <= set(local)
    assert all(s.path.startswith(f"{s3_bucket}/data/") for s in ds._split_paths["train"])
    # the same batches as from the local copy of the data
    here = make(data_dir)
    here.setup("fit")
    torch.testing.assert_close(here.sampler.data, ds.sampler.data, rtol=0, atol=0)
    shutil.rmtree(tmp_path / "cache")


def test_nan_in_background_is_reported_with_file_and_ifo(data_dir, tmp_path):
    import h5py

    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    victim = sorted(copy.glob("background-*.hdf5"))[0]
    with h5py.File(victim, "r+") as f:
        f["L1"][1000] = np.nan
    with pytest.raises(BackgroundError, match=rf"{victim.name}.*L1"):
        make(copy).setup("fit")


def test_settings_are_declared_once_and_readable_not_writable(tmp_path):
    """Each argument is a typed DatasetSettings field, which jsonargparse (LightningCLI) reads
    through ``AframeDataset(**settings)`` with its type, default and help; it is read back as
    ``dataset.<name>``, with the sizes derived from independent arithmetic; the settings are
    frozen and the Dataset refuses assigning them."""
    import dataclasses
    import typing

    from jsonargparse import ArgumentParser

    from aframe_lib.data.psd import PsdPolicy
    from aframe_lib.data.settings import DatasetSettings

    fields = [f.name for f in dataclasses.fields(DatasetSettings) if f.init]
    parser = ArgumentParser()
    parser.add_class_arguments(AframeDataset, "data")
    cli_defaults = parser.get_defaults()["data"].as_dict()
    assert list(cli_defaults) == fields  # the CLI's names (data.init_args.<name>) are the fields'
    assert cli_defaults["sample_rate"] == 2048.0 and cli_defaults["ifos"] == ["H1", "L1"]
    help_text = " ".join(parser.format_help().split())
    assert "--data.sample_rate SAMPLE_RATE Hz; must match the files. (type: float" in help_text
    hints = typing.get_type_hints(DatasetSettings)  # resolvable: type checkers can follow them
    assert hints["sample_rate"] is float and hints["ifos"] == list[str]

    psd = PsdPolicy(length=4.0, cadence=0.5)
    dataset = make(tmp_path, psd_length=None, psd=psd, kernel_length=1.0, fduration=0.5)
    s = dataset.settings
    for name in [*fields, "psd_policy"]:
        assert getattr(dataset, name) is getattr(s, name), name
    assert s.psd_length == 4.0 and s.fftlength == 1.5 and s.psd_policy == psd
    assert s.num_ifos == dataset.num_ifos == 2
    assert s.kernel_size == dataset.kernel_size == SAMPLE_RATE * 1.0
    assert s.window_size == SAMPLE_RATE * 1.5
    assert s.psd_staleness == SAMPLE_RATE * 0.5 - 1  # PSD ages in [0, cadence)
    assert s.sample_size == dataset.sample_size == SAMPLE_RATE * (1.5 + 4.0 + 0.5) - 1
    assert s.sample_length == dataset.sample_length == s.sample_size / SAMPLE_RATE
    assert s.inject_prob == pytest.approx(s.waveform_prob / (1 - s.swap_prob) / (1 - s.mute_prob))
    assert s.slide_step == 2.0  # ceil(kernel_length + fduration) without timeslide_step
    with pytest.raises(AttributeError, match="sample_rate is a setting of the Dataset"):
        dataset.sample_rate = 512.0
    with pytest.raises(AttributeError, match="sample_size is a setting of the Dataset"):
        dataset.sample_size = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sample_rate = 512.0
    with pytest.raises(AttributeError, match="no attribute 'sample_rat'"):
        dataset.sample_rat  # noqa: B018 - a typo is an error, not a setting
    # checkpoints keep every argument as given (defaults included), before resolution
    assert dataset.hparams["sample_rate"] == SAMPLE_RATE and dataset.hparams["psd_length"] is None
    assert dataset.hparams["max_memory"] == 4.0 and dataset.hparams["psd"] == psd.to_dict()
    assert "snr_sampler" not in dataset.hparams


def test_data_provenance_names_each_split_and_the_population(data_dir):
    """What ExportModel writes into model.json: each split's records (the training files'
    GPS spans, not the validation files'), the waveform sets' streams and the population."""
    from aframe_lib.data import provenance

    ds = make(data_dir)
    ds.setup("fit")
    record = ds.data_provenance()
    (train,), (valid,) = record["train"], record["valid"]
    assert (train["seed"], train["stream"]) == (0, 0) and not record["unrecorded"]
    assert provenance.same_data(train, valid) is None  # disjoint in time
    assert train["spans"]["H1"] == [[s.t0, s.t0 + s.duration] for s in ds._split_paths["train"]]
    streams = {k: v["stream"] for k, v in record["waveforms"].items()}
    assert streams == {"train": 1, "valid": 2, "test": 4}
    assert record["population"]["masses"]["init_args"] == {"low": 10.0, "high": 80.0}


def test_the_test_split_injects_its_own_waveforms_snrs_and_sky_positions(data_dir):
    """Item 3 of issue 21: the test split is scored on test_waveforms.hdf5 with SNRs and sky
    positions of its own, not the validation set that chose the checkpoint."""
    fit, test = make(data_dir), make(data_dir, test_frac=0.3, valid_frac=0.3)
    fit.setup("fit")
    test.setup("test")
    assert test._test_waveforms().endswith("test_waveforms.hdf5")
    n = min(len(fit.valid_snrs), len(test.valid_snrs))
    assert not torch.allclose(fit.valid_snrs[:n], test.valid_snrs[:n])
    assert not torch.equal(fit.valid_responses[:n], test.valid_responses[:n])
