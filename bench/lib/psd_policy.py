"""What the PSD length costs and buys: the measurement behind the default ``data.psd`` policy.

Run by ``nox -s bench`` as ``python bench/lib/psd_policy.py [--duration 600]``.

For PSD lengths of 4-64 s (the quickstart's shape: 2 IFOs, 512 Hz, kernel 1 s, fduration 1 s,
Welch segments of 2 s, highpass 32 Hz, cadence 1 s), over ``--duration`` s of coloured Gaussian
noise from the aLIGO design PSD (``aframe_lib.data.noise``, whose true PSD is known):

- ``whitened_variance_ratio_psd<L>``: mean variance of the search's whitened windows divided by
  the same windows whitened with the true PSD (1 = as good as knowing the PSD; training and
  search share it by construction, so this is the scale *both* see);
- ``snr_bias_psd<L>``: mean ratio of an injection's network SNR measured against each window's
  PSD estimate (what training rescales to) to its SNR against the true PSD (IMRPhenomD BBHs);
- ``train_psd_whiten_ms_psd<L>``: PSD estimate + whitening of a 64-sample training batch (ms),
  and ``..._2048hz`` the same for 32 samples of the shipped ResNet1D shape (2048 Hz, 2.5 s FFT);
- ``search_preprocess_realtime_factor_psd<L>``: the search's preprocessing alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
import _common  # noqa: E402

IFOS = ["H1", "L1"]
LENGTHS = (4.0, 8.0, 16.0, 32.0, 64.0)


def measure(length: float, noise, true_psd, responses, rate: float) -> dict[str, float]:
    import torch

    from aframe_lib.data import AframeDataset, Injector
    from aframe_lib.data.psd import PsdPolicy
    from aframe_lib.search import StreamingWhitener

    policy = PsdPolicy(length=length, cadence=1.0)
    out: dict[str, float] = {}
    w = StreamingWhitener(rate, 1.0, 1.0, policy, int(rate / 4), highpass=32.0)
    X = torch.as_tensor(noise)
    windows = w(X)
    raw = X[:, w.psd_size :].unfold(-1, w.window_size, w.stride).transpose(0, 1)
    reference = w.whitener(raw, true_psd)
    out["whitened_variance_ratio"] = float(
        windows[-len(reference) :].var(-1).mean() / reference.var(-1).mean()
    )
    # SNRs against each PSD the search uses (its own estimates) vs the true PSD
    psds = w.psds(X, 0, w.psd_of(w.num_windows(X.shape[-1]) - 1) + 1)
    injector = Injector(IFOS, rate, highpass=32.0)
    estimated = torch.stack([injector.snr(responses, p) for p in psds[:: max(1, len(psds) // 64)]])
    out["snr_bias"] = float((estimated / injector.snr(responses, true_psd)).mean())
    out["search_preprocess_realtime_factor"] = (X.shape[-1] / rate) / _common.median(
        _common.time_calls(lambda: sum(len(b) for b in w.batches(X, 128)), repeats=3)
    )

    for suffix, sr, fft, batch in (("", rate, None, 64), ("_2048hz", 2048.0, 2.5, 32)):
        with tempfile.TemporaryDirectory() as tmp:
            ds = AframeDataset(
                tmp, IFOS, sr, kernel_length=1.0 if fft is None else 1.5, fduration=1.0,
                highpass=32.0, psd=PsdPolicy(length=length, fftlength=fft, cadence=1.0),
            )  # fmt: skip
        sample = torch.randn(batch, 2, ds.sample_size) * 1e-21

        def step(ds=ds, sample=sample) -> None:
            kernels, psd = ds.psd_estimator(sample)
            ds.whitener(kernels, psd)

        out[f"train_psd_whiten_ms{suffix}"] = 1e3 * _common.median(
            _common.time_calls(step, repeats=3)
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of noise")
    args = parser.parse_args()
    import h5py
    import numpy as np
    import torch

    from aframe_lib.data import Injector, read_segment
    from aframe_lib.data.background import list_segments
    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.synthetic import generate_waveforms

    rate = 512.0
    with tempfile.TemporaryDirectory() as tmp:
        generate_background(tmp, IFOS, args.duration, rate, args.duration, seed=1)
        noise = read_segment(list_segments(tmp, IFOS)[0], IFOS).astype(np.float64)
        with h5py.File(Path(tmp, "psd.hdf5")) as f:
            true_psd = torch.as_tensor(np.stack([f[i][:] for i in IFOS]))
        waveforms = generate_waveforms(str(Path(tmp, "w.hdf5")), 32, rate, 4.0, 3.0, seed=2)
    torch.manual_seed(0)
    responses = Injector(IFOS, rate).project(
        torch.as_tensor(waveforms.cross), torch.as_tensor(waveforms.plus)
    )
    for length in LENGTHS:
        for key, value in measure(length, noise, true_psd, responses, rate).items():
            _common.headline(f"{key}_psd{length:g}", value)


if __name__ == "__main__":
    main()
