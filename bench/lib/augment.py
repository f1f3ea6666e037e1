"""Throughput of the training augmentation path, against a per-sample gwpy/numpy baseline.

Run by ``nox -s bench`` as ``python bench/lib/augment.py``. Shape: the ``AframeDataset`` defaults
(2 IFOs H1/L1, 2048 Hz, kernel_length 1.5 s, fduration 1 s, psd_length 8 s, fftlength 2.5 s,
median PSD, highpass 32 Hz, batch 384, waveform_prob 0.277, swap 0.014, mute 0.055, inversion
and reversal 0.5 each), on a small synthetic dataset (4 segments of 256 s, 200 training and 50
validation waveforms) generated into a temporary directory.

Ours (timed: ``ds.augment(ds.sampler(384))``, one batch, everything batched in torch):
    draw 384 x 2 windows of 10.5 s (8 s PSD segment + 1.5 s kernel + 1 s filter padding) from
    the in-memory background -> ml4gw SpectralDensity (Welch median, 2.5 s FFTs) of the first 8 s
    -> inversion/reversal -> for the ~30 % injected samples: index waveforms, sky projection
    (ml4gw compute_observed_strain: antenna patterns + light-travel shift), network SNR against
    that sample's PSD (ml4gw compute_network_snr), rescale to a PowerLaw(4, 100, -3) SNR, slice
    so coalescence lands in the kernel, swap/mute, add -> ml4gw Whiten (1 s FIR, 32 Hz highpass,
    crops 0.5 s each side) -> (384, 2, 3072) float32 and labels.

Baseline (what a user would otherwise write; timed per sample on fewer samples, scaled):
    per sample and per IFO: slice a 10.5 s window from the numpy background; gwpy
    ``TimeSeries(psd_segment).asd(fftlength=2.5, method="median")``; numpy sign flip / reversal.
    For the same injection fraction: numpy sky projection per sample (F+/Fx from the detector
    tensors of ``ml4gw.gw.get_ifo_geometry``, light-travel delay from its vertices, ``np.roll``),
    numpy SNR per IFO against the gwpy PSD (rfft of the 8 s response, ``np.interp`` of the PSD onto
    its grid, integral above 32 Hz), rescale to a numpy-drawn PowerLaw(4, 100, -3) SNR, slice
    around a random coalescence position, numpy swap/mute over the batch, add into the window.
    Then per sample and per IFO: gwpy ``TimeSeries(window).whiten(asd=asd, fduration=1,
    highpass=32)`` and crop 0.5 s each side -> the same (N, 2, 3072) float32 and labels.

Training step (timed: forward + backward + AdamW step, BCE-with-logits loss) of the default
time-domain model ``ml4gw.nn.resnet.resnet_1d.ResNet1D(in_channels=2, layers=[3, 4, 6, 3],
classes=1, norm_layer=GroupNorm1DGetter(groups=16))`` on the augmented batch. On CPU a full
384-sample step takes minutes, so ``--train-batch`` (32) samples of the batch are timed and the
time is scaled linearly to 384; CPU cost grows faster than linearly with the batch, so this is a
lower bound on the full step (and the share below an upper bound). ``--train-batch 384`` times
the real thing.

Timing: ``--rounds`` (5) interleaved rounds of one batch of ours and ``--baseline-samples`` (32)
baseline samples after a warm-up of each, so load from other processes hits both alike; medians.

Headlines (``name: value``):
    augment_samples_per_s       ours, CPU, torch's default thread count (``--threads N``: N)
    baseline_samples_per_s      gwpy/numpy, per sample (single thread of Python)
    augment_speedup             augment_samples_per_s / baseline_samples_per_s (target >= 10)
    train_step_s                one training step on a 384 batch, CPU (scaled, see above)
    augment_step_share          t_augment / t_step for one batch (target <= 0.10): the time to
                                make a batch relative to the step that consumes it
    glitch_step_share           only with ``--glitch-prob``: the glitch augmentation's own
                                time over the training step's
    augment_samples_per_s_cuda  ours on CUDA          } only when a GPU is available; the step
    train_step_s_cuda           full 384 step on CUDA } is then timed on the whole batch
    augment_step_share_cuda     the share on CUDA     }

``--glitch-prob P`` adds the glitch augmentation to both sides: a bank of 200 glitches per IFO
(``aframe-data glitches``' function, coloured with the data's PSD; blips only when gengli is
installed), a random row added to the raw window of each (sample, IFO) with probability ``P``
(ours on the batch, the baseline per sample in numpy).

The machine is shared (2 cores): numbers are noisy (2x between runs is common). Notes (lines
starting with ``#``) give the per-round times, a PSD / whitening / rest breakdown, and missed
targets; ``--profile`` prints a torch.profiler table of the augmentation path.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
import _common as common  # noqa: E402

IFOS = ["H1", "L1"]
SAMPLE_RATE = 2048.0
SPEED_OF_LIGHT = 299792458.0  # m/s, as in ml4gw.constants.C


# ---------------------------------------------------------------------------------- baseline
class GwpyBaseline:
    """The per-sample gwpy/numpy equivalent of ``AframeDataset.augment`` (see module docstring)."""

    def __init__(self, ds, rng: np.random.Generator) -> None:
        from ml4gw.gw import get_ifo_geometry

        self.rng = rng
        self.fs = float(ds.sample_rate)
        self.num_ifos = ds.num_ifos
        self.psd_size = ds.psd_size
        self.sample_size = ds.sample_size
        self.window_size = ds.window_size
        self.pad = int(round(ds.fduration / 2 * self.fs))
        self.fftlength = ds.fftlength or ds.kernel_length + ds.fduration
        self.fduration = ds.fduration
        self.highpass = ds.highpass
        self.inject_prob = ds.inject_prob
        self.swap_prob, self.mute_prob = ds.swap_prob, ds.mute_prob
        self.inversion_prob, self.reversal_prob = ds.inversion_prob, ds.reversal_prob
        self.bounds = ds.coalescence_bounds
        # the same in-memory background as the sampler, split back into its segments
        data = ds.sampler.data.cpu().numpy()
        offsets = ds.sampler.offsets.cpu().numpy()
        ends = list(offsets[1:]) + [data.shape[-1]]
        self.segments = [data[:, a:b] for a, b in zip(offsets, ends, strict=True)]
        counts = np.array([s.shape[-1] - self.sample_size + 1 for s in self.segments], float)
        self.segment_p = counts / counts.sum()
        waveforms = ds.train_waveforms.cpu().numpy().astype(np.float64)
        self.cross, self.plus = waveforms[:, 0], waveforms[:, 1]
        self.coalescence_index = ds.coalescence_index
        tensors, vertices = get_ifo_geometry(*ds.ifos)
        self.tensors = tensors.double().numpy()
        self.vertices = vertices.double().numpy()
        self.snr_min, self.snr_max, self.snr_index = 4.0, 100.0, -3.0  # the default sampler
        # glitch augmentation: the same bank, the same probability per sample and IFO
        self.glitch_prob = ds.glitch_prob if ds.glitcher.bank is not None else 0.0
        self.bank = ds.glitcher.bank.cpu().numpy().astype(np.float64) if self.glitch_prob else None

    # ---- pieces, each per sample
    def draw_window(self, ifo: int) -> np.ndarray:
        seg = self.segments[self.rng.choice(len(self.segments), p=self.segment_p)]
        start = self.rng.integers(seg.shape[-1] - self.sample_size + 1)
        return seg[ifo, start : start + self.sample_size].astype(np.float64)

    def sample_target_snr(self) -> float:
        a = self.snr_index + 1
        u = self.rng.random()
        return (self.snr_min**a + u * (self.snr_max**a - self.snr_min**a)) ** (1 / a)

    def project(self, cross: np.ndarray, plus: np.ndarray) -> np.ndarray:
        """Responses ``(num_ifos, time)`` for one random sky position (numpy, one sample)."""
        dec = math.asin(2 * self.rng.random() - 1)
        psi = self.rng.uniform(0, math.pi)
        phi = self.rng.uniform(-math.pi, math.pi)
        theta = math.pi / 2 - dec
        st, ct, sp, cp = math.sin(theta), math.cos(theta), math.sin(phi), math.cos(phi)
        u = np.array([cp * ct, ct * sp, -st])
        v = np.array([-sp, cp, 0.0])
        m = -u * math.sin(psi) - v * math.cos(psi)
        n = -u * math.cos(psi) + v * math.sin(psi)
        e_plus = np.outer(m, m) - np.outer(n, n)
        e_cross = np.outer(m, n) + np.outer(n, m)
        omega = np.array([st * cp, st * sp, ct])
        out = np.empty((self.num_ifos, len(plus)))
        for i in range(self.num_ifos):
            f_plus = float((e_plus * self.tensors[i]).sum())
            f_cross = float((e_cross * self.tensors[i]).sum())
            delay = int(-(omega @ self.vertices[i]) * self.fs / SPEED_OF_LIGHT)  # truncated
            out[i] = np.roll(f_plus * plus + f_cross * cross, delay)
        return out

    def network_snr(self, responses: np.ndarray, asds: list) -> float:
        size = responses.shape[-1]
        freqs = np.fft.rfftfreq(size, 1 / self.fs)
        keep = freqs >= self.highpass if self.highpass else np.ones_like(freqs, bool)
        total = 0.0
        for i, asd in enumerate(asds):
            psd = np.interp(freqs, asd.frequencies.value, asd.value**2)
            h = np.abs(np.fft.rfft(responses[i])) / self.fs
            total += 4 * np.sum(h[keep] ** 2 / psd[keep]) * self.fs / size
        return math.sqrt(total)

    def slice_around(self, responses: np.ndarray, position: int) -> np.ndarray:
        out = np.zeros((self.num_ifos, self.window_size))
        start = self.coalescence_index - position  # response index at window index 0
        lo, hi = max(0, -start), min(self.window_size, responses.shape[-1] - start)
        if hi > lo:
            out[:, lo:hi] = responses[:, start + lo : start + hi]
        return out

    def __call__(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        from gwpy.timeseries import TimeSeries

        rng = self.rng
        windows, asds, kernels = [], [], {}
        for b in range(batch_size):
            row, row_asds = [], []
            for ifo in range(self.num_ifos):
                x = self.draw_window(ifo)
                if self.glitch_prob and rng.random() < self.glitch_prob:  # into the raw strain
                    glitch = self.bank[ifo, rng.integers(self.bank.shape[1])][: len(x)]
                    at = rng.integers(len(x) - len(glitch) + 1)
                    x[at : at + len(glitch)] += glitch
                asd = TimeSeries(x[: self.psd_size], sample_rate=self.fs).asd(
                    fftlength=self.fftlength, method="median"
                )
                w = x[-self.window_size :]  # after the PSD segment (and up to a cadence of age)
                if rng.random() < self.inversion_prob:
                    w = -w
                if rng.random() < self.reversal_prob:
                    w = w[::-1]
                row.append(w)
                row_asds.append(asd)
            windows.append(row)
            asds.append(row_asds)
            if rng.random() < self.inject_prob:
                k = rng.integers(len(self.plus))
                responses = self.project(self.cross[k], self.plus[k])
                weight = self.sample_target_snr() / self.network_snr(responses, row_asds)
                position = rng.integers(self.bounds[0], self.bounds[1] + 1)
                kernels[b] = self.slice_around(responses * weight, position)
        labels = np.zeros((batch_size, 1), np.float32)
        injected = list(kernels)
        labels[injected] = 1
        # swap one IFO between pairs of injected samples, mute one IFO: both relabel as noise
        swap = [b for b in injected if rng.random() < self.swap_prob]
        rng.shuffle(swap)
        swap = swap[: len(swap) // 2 * 2]
        half = len(swap) // 2
        for first, second in zip(swap[:half], swap[half:], strict=True):
            c = rng.integers(self.num_ifos)
            kernels[first][c], kernels[second][c] = kernels[second][c].copy(), kernels[first][c]
            labels[[first, second]] = 0
        for b in injected:
            if rng.random() < self.mute_prob:
                kernels[b][rng.integers(self.num_ifos)] = 0
                labels[b] = 0
        out = np.empty((batch_size, self.num_ifos, self.window_size - 2 * self.pad), np.float32)
        for b in range(batch_size):
            for ifo in range(self.num_ifos):
                w = windows[b][ifo] + kernels[b][ifo] if b in kernels else windows[b][ifo]
                white = TimeSeries(w, sample_rate=self.fs).whiten(
                    asd=asds[b][ifo], fduration=self.fduration, highpass=self.highpass
                )
                out[b, ifo] = white.value[self.pad : -self.pad]
        return out, labels


# ---------------------------------------------------------------------------------- ours
def make_dataset(data_dir: str, glitch_prob: float = 0.0):
    synthetic = common.import_when_ready("aframe_lib.data.synthetic")
    base = common.import_when_ready("aframe_lib.data.base")
    with common.stopwatch("synthetic dataset (4 x 256 s, 200 + 50 waveforms)"):
        synthetic.ensure_synthetic_dataset(
            data_dir,
            ifos=IFOS,
            sample_rate=SAMPLE_RATE,
            background_duration=1024.0,
            segment_duration=256.0,
            num_waveforms=200,
            num_val_waveforms=50,
        )
    glitches = {}
    if glitch_prob > 0:
        gl = common.import_when_ready("aframe_lib.data.glitches")
        try:
            import gengli  # noqa: F401

            types = None  # the reference mix, blips included
        except ImportError:
            types = {"glitch_types": {"sine_gaussian": 1.0, "scattered_light": 1.0}}
            common.note("gengli not installed: the bank has no blips")
        bank = os.path.join(data_dir, "glitch_bank.hdf5")
        with common.stopwatch("glitch bank (200 per IFO)"):
            psd = os.path.join(data_dir, "psd.hdf5")
            gl.generate_glitch_bank(bank, IFOS, 200, SAMPLE_RATE, psd_file=psd, noise=types)
        glitches = dict(glitch_bank=bank, glitch_prob=glitch_prob)
    ds = base.AframeDataset(
        data_dir=data_dir, ifos=IFOS, sample_rate=SAMPLE_RATE, psd_length=8.0, **glitches
    )
    with common.stopwatch("AframeDataset.setup('fit') (incl. validation)"):
        ds.setup("fit")
    return ds


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def compare(ds, baseline: GwpyBaseline, batch_size: int, num_base: int, rounds: int):
    """Interleaved rounds (one batch of ours, ``num_base`` baseline samples), so that load from
    other processes on the shared machine hits both sides alike. Returns the median seconds per
    batch (ours), per ``num_base`` samples (baseline), the number of batches with non-finite
    values, and the last batch."""
    ds.augment(ds.sampler(batch_size))  # warm-up
    baseline(2)  # warm-up: imports, scipy/gwpy caches
    ours, base, nonfinite = [], [], 0
    for _ in range(rounds):
        t, (X, y) = _timed(lambda: ds.augment(ds.sampler(batch_size)))
        ours.append(t)
        nonfinite += int(not bool(torch.isfinite(X).all()))
        t, (Xb, _) = _timed(lambda: baseline(num_base))
        base.append(t)
    common.note("ours: " + ", ".join(f"{t:.3f}" for t in ours) + f" s per {batch_size}")
    common.note("baseline: " + ", ".join(f"{t:.3f}" for t in base) + f" s per {num_base}")
    common.note(
        f"ours: X {tuple(X.shape)} {X.dtype} std {X.std():.3f}, signal fraction "
        f"{y.mean():.3f}; baseline: X {Xb.shape} {Xb.dtype} std {Xb.std():.3f}"
    )
    return common.median(ours), common.median(base), nonfinite, (X, y)


def breakdown(ds, batch_size: int, t_total: float) -> None:
    """Median time of the two batched transforms alone; the rest is injection and glue."""
    X = ds.sampler(batch_size)
    t_sample = common.median(common.time_calls(lambda: ds.sampler(batch_size), repeats=3))
    t_psd = common.median(common.time_calls(lambda: ds.psd_estimator(X), repeats=3))
    Xw, psds = ds.psd_estimator(X)
    t_white = common.median(common.time_calls(lambda: ds.whitener(Xw, psds), repeats=3))
    rest = t_total - t_sample - t_psd - t_white
    common.note(
        f"breakdown per batch of {batch_size}: sampler {t_sample:.3f} s, PSD "
        f"{t_psd:.3f} s, whitening {t_white:.3f} s, rest (augmentations, injection) "
        f"~{rest:.3f} s of {t_total:.3f} s"
    )


def make_model(num_ifos: int) -> torch.nn.Module:
    from ml4gw.nn.norm import GroupNorm1DGetter
    from ml4gw.nn.resnet.resnet_1d import ResNet1D

    with warnings.catch_warnings():  # GroupNorm1DGetter is deprecated in ml4gw 0.8
        warnings.simplefilter("ignore", DeprecationWarning)
        norm_layer = GroupNorm1DGetter(groups=16)
    return ResNet1D(in_channels=num_ifos, layers=[3, 4, 6, 3], classes=1, norm_layer=norm_layer)


def time_train_step(X: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward + backward + AdamW step on ``(X, y)``."""
    model = make_model(X.shape[1]).to(X.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()

    sync = torch.cuda.synchronize if X.device.type == "cuda" else None
    times = common.time_calls(step, repeats=repeats, warmup=1, sync=sync)
    common.note(
        f"train step on {len(X)} samples ({X.device}): "
        + ", ".join(f"{t:.2f}" for t in times)
        + " s"
    )
    return common.median(times)


def time_cuda(ds, batch_size: int, repeats: int, train_repeats: int) -> None:
    device = torch.device("cuda")
    sampler = ds._on_device("sampler", device)
    try:
        ds.augment(sampler(batch_size))
    except RuntimeError as exc:  # a device mismatch is a bug of the Dataset: say so, go on
        common.note(f"augment on cuda failed as the Dataset leaves it: {exc}")
        common.note("moving psd_estimator, whitener and injector to cuda by hand")
        for name in ("psd_estimator", "whitener", "injector"):
            getattr(ds, name).to(device)
    times = common.time_calls(
        lambda: ds.augment(sampler(batch_size)),
        repeats=repeats,
        warmup=1,
        sync=torch.cuda.synchronize,
    )
    t_aug = common.median(times)
    common.headline("augment_samples_per_s_cuda", batch_size / t_aug)
    X, y = ds.augment(sampler(batch_size))
    t_step = time_train_step(X, y, train_repeats)
    common.headline("train_step_s_cuda", t_step)
    common.headline("augment_step_share_cuda", t_aug / t_step)


def profile_augment(ds, batch_size: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    ds.augment(ds.sampler(batch_size))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            ds.augment(ds.sampler(batch_size))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=384)
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleaved rounds of (one batch of ours, baseline samples)",
    )
    parser.add_argument("--baseline-samples", type=int, default=32, help="per round")
    parser.add_argument(
        "--train-batch",
        type=int,
        default=32,
        help="samples of the timed CPU training step (scaled to --batch-size)",
    )
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for ours (default: torch's own count); 1 compares core for core "
        "with the single-threaded baseline, which a loaded shared machine makes the fairer test",
    )
    parser.add_argument(
        "--glitch-prob",
        type=float,
        default=0.0,
        help="glitch augmentation (a 200-glitch bank per IFO) at this probability per sample "
        "and IFO, in ours and in the baseline; 0: none",
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    common.note(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cpus; shared machine: timings are noisy"
    )
    with tempfile.TemporaryDirectory(prefix="aframe-bench-augment-") as tmp:
        ds = make_dataset(tmp, args.glitch_prob)  # setup() reads everything into memory
    B = args.batch_size
    n = args.baseline_samples

    baseline = GwpyBaseline(ds, np.random.default_rng(0))
    t_ours, t_base, nonfinite, (X, y) = compare(ds, baseline, B, n, args.rounds)
    ours_rate, base_rate = B / t_ours, n / t_base
    if nonfinite:
        common.note(f"WARNING: {nonfinite} of {args.rounds} augmented batches hold NaN/inf")
    breakdown(ds, B, t_ours)

    # training step: on CPU a 384-sample step of this ResNet takes minutes, so a sub-batch is
    # timed and scaled linearly (CPU cost grows faster than linearly with the batch: the scaled
    # value is a lower bound on the full step, so the share below is an upper bound)
    sub = min(args.train_batch, B)
    t_step = time_train_step(X[:sub], y[:sub], args.train_repeats) * B / sub
    if sub < B:
        common.note(f"train_step_s scaled from {sub} to {B} samples")
    speedup = ours_rate / base_rate
    share = t_ours / t_step

    common.headline("augment_samples_per_s", ours_rate)
    common.headline("baseline_samples_per_s", base_rate)
    common.headline("augment_speedup", speedup)
    common.headline("train_step_s", t_step)
    common.headline("augment_step_share", share)
    if args.glitch_prob > 0:  # the glitch augmentation's own time, alone on a raw batch
        raw = ds.sampler(B)
        t_glitch = common.median(common.time_calls(lambda: ds.glitcher(raw), repeats=5))
        common.note(f"glitch augmentation: {t_glitch:.4f} s per batch of {B}, "
                    f"{t_glitch / t_ours:.3f} of the augmentation")  # fmt: skip
        common.headline("glitch_step_share", t_glitch / t_step)
    if torch.cuda.is_available():
        time_cuda(ds, B, args.rounds, args.train_repeats)
    else:
        common.note("no CUDA device: augment_samples_per_s_cuda not measured")

    if speedup < 10:
        common.note(f"target missed: augment_speedup {speedup:.1f} < 10")
    if share > 0.10:
        common.note(f"target missed: augment_step_share {share:.3f} > 0.10")
    if args.profile:
        profile_augment(ds, B)
    return 0


if __name__ == "__main__":
    sys.exit(main())
