"""The tiny synthetic data set shared by the tests (256 Hz, H1/L1, minutes of strain)."""

from __future__ import annotations

SAMPLE_RATE = 256.0
SYNTHETIC = dict(
    background_duration=768.0,
    segment_duration=256.0,
    num_waveforms=64,
    num_val_waveforms=16,
    waveform_duration=4.0,
    coalescence_time=3.0,
)
# `aframe-train fit` overrides of the quickstart config for a few-step run on the tiny data set
TINY_FIT = [
    "--trainer.enable_progress_bar=false",
    "--data.init_args.batches_per_epoch=4",
    "--data.init_args.batch_size=16",
    "--data.init_args.valid_livetime=300",
    "--data.init_args.valid_batch_size=32",
    "--data.init_args.synthetic.background_duration=768",
    "--data.init_args.synthetic.segment_duration=256",
    "--data.init_args.synthetic.num_waveforms=64",
    "--data.init_args.synthetic.num_val_waveforms=16",
]


def dataset_kwargs(**overrides) -> dict:
    """An ``AframeDataset``'s arguments for the tiny data set (1 s kernels, 4 s PSDs, small
    batches); each test module overrides what it needs."""
    from ml4gw.distributions import PowerLaw

    kwargs = dict(
        ifos=["H1", "L1"],
        sample_rate=SAMPLE_RATE,
        kernel_length=1.0,
        fduration=1.0,
        psd_length=4.0,
        highpass=20.0,
        batch_size=8,
        batches_per_epoch=2,
        valid_frac=0.34,
        valid_livetime=100.0,
        valid_stride=1.0,
        valid_batch_size=16,
        num_valid_views=2,
        snr_sampler=PowerLaw(10.0, 20.0, -3.0),
    )
    return {**kwargs, **overrides}
