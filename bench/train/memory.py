"""Training memory against the amount of background, and chunked vs in-memory throughput.

Run by ``nox -s bench`` as ``python bench/train/memory.py``.

Two synthetic data sets differ only in the amount of background: 1x (``--duration`` s in files of
``--segment`` s) and 32x (32 times as many files); waveforms are the same. Each measurement is a
fresh subprocess (``--child``) that builds the quickstart model and data module with ``AframeCLI``
as ``aframe-train fit`` would, overrides only the data directory and loading mode, and trains one
epoch of ``--batches`` batches (no validation loop, no export). It reports its peak memory (peak
RSS on CPU, ``torch.cuda.max_memory_allocated`` on a GPU) and training samples/s after a warm-up.

Headlines (``name: value``):

- ``train_memory_growth``: peak memory training on 32x the background / on 1x, same config, the
  chunked path with ``--max-memory`` GiB (goal <= 1.15);
- ``chunked_vs_inmemory_throughput``: training samples per second chunked / in memory on the 1x
  data (goal >= 0.9), per second of process CPU time (all threads, the chunk reader included),
  median of ``--repeats`` (default 5) interleaved runs: on a shared machine wall-clock rates
  swing by 2x with other load;
- ``chunked_vs_inmemory_wall``: the same ratio per wall-clock second, median of the same runs.
  Before every run the data files are dropped from the page cache (``POSIX_FADV_DONTNEED`` per
  file), so each run reads its data from disk. (Timing starts after the warm-up batches, and
  ``setup`` scans every local file for NaN/inf first; the end-to-end wall times, setup
  included, are printed as a note.)

The in-memory path's own growth is printed as a note, for comparison. ``--set`` passes further
``aframe-train fit`` overrides to every run; ``bench/train/scale.py`` uses this module's runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
import _common as common  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart" / "train.yaml"
SYNTHETIC = dict(
    num_waveforms=200, num_val_waveforms=50, waveform_duration=4.0, coalescence_time=3.0
)
WARMUP = 3


def child(args: argparse.Namespace) -> None:
    """One training run; prints ``{"peak_bytes": ..., "samples_per_s": ...}`` as its last line."""
    import lightning.pytorch as pl
    import torch

    from aframe_lib.data import chunked
    from aframe_train.cli import AframeCLI

    times: list[tuple[float, float]] = []
    loads = {"loads": 0, "chunks": 0, "files": set(), "num_files": 0}
    read_chunks = chunked.read_chunks

    def counting(segments, ifos, table, ids, *rest, **kwargs):  # counts the chunk loads
        loads["loads"] += 1
        loads["chunks"] += len(ids)
        loads["files"] |= {segments[k].path for k in table.segment[ids]}
        loads["num_files"] = len(segments)
        return read_chunks(segments, ifos, table, ids, *rest, **kwargs)

    chunked.read_chunks = counting

    class Timer(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            times.append((time.perf_counter(), time.process_time()))

    cuda = torch.cuda.is_available()
    overrides = [
        f"--trainer.default_root_dir={args.out}",
        f"--trainer.logger.init_args.save_dir={args.out}",
        f"--trainer.accelerator={'gpu' if cuda else 'cpu'}",
        "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
        "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
        f"--data.init_args.data_dir={args.data}", "--data.init_args.synthetic=null",
        f"--data.init_args.batch_size={args.batch_size}",
        f"--data.init_args.batches_per_epoch={args.batches}",
        "--data.init_args.valid_livetime=300",
        f"--data.init_args.background_loading={args.loading}",
        f"--data.init_args.max_memory={args.max_memory}",
        f"--data.init_args.chunk_length={args.chunk_length}",
        *(args.set or []),
    ]  # fmt: skip
    start = time.perf_counter()
    cli = AframeCLI(args=["--config", str(QUICKSTART), *overrides], run=False)
    cli.trainer.callbacks.append(Timer())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    (wall0, cpu0), (wall1, cpu1) = times[WARMUP], times[-1]
    samples = args.batch_size * (len(times) - 1 - WARMUP)
    print(
        json.dumps(
            {
                "peak_bytes": peak,
                "samples_per_s": samples / (wall1 - wall0),
                "samples_per_cpu_s": samples / (cpu1 - cpu0),
                "fit_s": time.perf_counter() - start,
                "chunk_loads": loads["loads"],
                "chunks_read": loads["chunks"],
                "files_loaded": len(loads["files"]),
                "training_files": loads["num_files"],
            }
        )
    )


def run_child(data: Path, out: Path, loading: str, args: argparse.Namespace) -> dict:
    """One training run in a fresh process, its data first dropped from the page cache; its
    result plus ``tree_peak_bytes`` (peak RSS of its process tree, sampled from /proc)."""
    cmd = [
        sys.executable, __file__, "--child", f"--data={data}", f"--out={out}",
        f"--loading={loading}", f"--batches={args.batches}", f"--batch-size={args.batch_size}",
        f"--max-memory={args.max_memory}", f"--chunk-length={args.chunk_length}",
        *(f"--set={x}" for x in args.set or []),
    ]  # fmt: skip
    # OpenMP threads that spin while waiting make timings on a shared, oversubscribed machine
    # depend on unrelated thread activity; passive waiting keeps both paths comparable
    env = {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    common.drop_from_page_cache(sorted(Path(data).glob("*.hdf5")))
    code, out, err, _, tree_peak, anon_peak = common.run_watched(cmd, env, interval=0.2)
    if code != 0:
        raise RuntimeError(err[-3000:])
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "tree_peak_bytes": tree_peak, "tree_anon_peak_bytes": anon_peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--child", action="store_true", help=argparse.SUPPRESS)
    add("--data", type=Path)
    add("--out", type=Path)
    add("--loading", default="chunked")
    add("--duration", type=float, default=2048.0, help="seconds of 1x background")
    add("--segment", type=float, default=256.0, help="seconds per background file")
    add("--batches", type=int, default=30)
    add("--batch-size", type=int, default=32)
    add(
        "--max-memory",
        type=float,
        default=0.0067,
        help="GiB (data.max_memory): ~2.7 MiB of validation data + 4 MiB of chunk buffers",
    )
    add("--chunk-length", type=float, default=64.0)
    add("--repeats", type=int, default=5)
    add("--set", action="append", help="a further aframe-train fit override (repeatable)")
    args = parser.parse_args()
    if args.child:
        return child(args)

    from aframe_lib.data.synthetic import ensure_synthetic_dataset

    with tempfile.TemporaryDirectory(prefix="aframe-bench-memory-") as tmp:
        tmp = Path(tmp)
        data = {}
        with common.stopwatch("synthetic data (1x and 32x)"):
            for scale in (1, 32):
                data[scale] = tmp / f"data{scale}"
                ensure_synthetic_dataset(
                    str(data[scale]), ifos=["H1", "L1"], sample_rate=512.0,
                    background_duration=scale * args.duration, segment_duration=args.segment,
                    **SYNTHETIC,
                )  # fmt: skip
        runs: dict[tuple[int, str], list[dict]] = {}
        order = [(1, "chunked"), (1, "memory")] * args.repeats + [(32, "chunked"), (32, "memory")]
        for scale, loading in order:
            result = run_child(data[scale], tmp / "run", loading, args)
            runs.setdefault((scale, loading), []).append(result)
            common.note(
                f"{scale}x {loading}: peak {result['peak_bytes'] / 2**20:.0f} MiB, "
                f"{result['samples_per_s']:.1f} samples/s, "
                f"{result['samples_per_cpu_s']:.1f} samples per CPU-s"
            )
        peak = {k: min(r["peak_bytes"] for r in v) for k, v in runs.items()}
        rate = {k: common.median([r["samples_per_cpu_s"] for r in v]) for k, v in runs.items()}
        wall = {k: common.median([r["samples_per_s"] for r in v]) for k, v in runs.items()}
        fit = {k: common.median([r["fit_s"] for r in v]) for k, v in runs.items()}
        common.note(
            f"wall-clock samples/s (median of {args.repeats}, data dropped from the page cache "
            f"before each run): chunked {wall[1, 'chunked']:.1f}, in memory "
            f"{wall[1, 'memory']:.1f}; whole fit (setup included): chunked "
            f"{fit[1, 'chunked']:.1f} s, in memory {fit[1, 'memory']:.1f} s"
        )
        common.note(
            f"1x background = {args.duration:g} s of 2 IFOs at 512 Hz "
            f"({args.duration * 512 * 2 * 4 / 2**20:.0f} MiB); in-memory growth 32x/1x: "
            f"{peak[32, 'memory'] / peak[1, 'memory']:.2f}"
        )
        common.headline("train_memory_growth", peak[32, "chunked"] / peak[1, "chunked"], ".3f")
        common.headline(
            "chunked_vs_inmemory_throughput", rate[1, "chunked"] / rate[1, "memory"], ".3f"
        )
        common.headline("chunked_vs_inmemory_wall", wall[1, "chunked"] / wall[1, "memory"], ".3f")


if __name__ == "__main__":
    main()
