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
