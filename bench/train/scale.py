"""Training memory over a data set of many GB on disk: the chunked path at the user's scale.

Run by ``nox -s bench`` as ``python bench/train/scale.py`` (``--size-gb`` 8 writes 8.6 GB of
files first: give ``--data-dir`` to keep them for later runs, else a temporary directory is
used and removed).

Data: ``--size-gb`` of background files, 2 IFOs (H1, L1) at ``--sample-rate`` Hz (default 2048)
in files of ``--segment`` s (default 4096, 64 MiB each), holding white Gaussian noise (a
stand-in for fetched strain: the loader reads bytes, whatever they hold), plus the quickstart's
synthetic waveforms at that rate. One training run (a fresh process, the quickstart model and
data module built by ``AframeCLI`` as ``aframe-train fit`` builds them, no validation loop)
over ``--batches`` batches with ``background_loading: chunked``, ``max_memory`` ``--max-memory``
GiB and ``chunks_per_epoch`` as many as can be drawn, so that one epoch reads (nearly) every
chunk of every training file. The files are dropped from the page cache first
(``POSIX_FADV_DONTNEED``), so they are read from disk.

Headlines (``name: value``):

- ``train_rss_at_scale_gb``: peak RSS of the training process tree (every descendant, summed,
  sampled from /proc every 0.2 s), GB (goal <= 2.0);
- ``train_chunk_loads_at_scale``: chunk loads read in the run (each ``chunks_per_load`` chunks);
- ``train_files_loaded_fraction``: training files of which at least one chunk was loaded, over
  all training files (1.0: every file was read);
- ``train_rss_fixed_gb``: what the process costs besides its data: peak RSS of the same run with
  ``max_memory`` ``--small-memory`` GiB (default 0.1), less those GiB (torch, lightning, the model,
  a training step; the same at any data size);
- ``train_rss_per_max_memory``: (peak at ``--max-memory`` - peak at ``--small-memory``) / the
  difference in ``max_memory``: how much of ``max_memory`` the process really takes (<= 1: the
  knob bounds the data, validation set included).

Notes give the data size, the chunks read and the run's wall time (setup's NaN/inf scan of every
file included).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/train/: memory
import _common as common  # noqa: E402
import memory  # noqa: E402

IFOS = ("H1", "L1")
IMPORTS = ("import resource, aframe_train.cli; "
           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")  # fmt: skip


def make_data(root: Path, args: argparse.Namespace) -> int:
    """Write the data set into ``root`` (reused when ``scale.json`` says it is this one)."""
    import numpy as np

    from aframe_lib.data.background import background_fname, write_background
    from aframe_lib.data.synthetic import ensure_synthetic_dataset

    size = round(args.segment * args.sample_rate)
    file_bytes = len(IFOS) * size * 4
    num_files = math.ceil(args.size_gb * 1e9 / file_bytes)
    spec = {"files": num_files, "segment": args.segment, "sample_rate": args.sample_rate}
    marker = root / "scale.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        common.note(f"reusing {num_files} files in {root}")
        return num_files * file_bytes
    root.mkdir(parents=True, exist_ok=True)
    with common.stopwatch(f"waveforms at {args.sample_rate:g} Hz"):
        aux = root / "aux"
        ensure_synthetic_dataset(
            str(aux), ifos=list(IFOS), sample_rate=args.sample_rate, background_duration=128.0,
            segment_duration=64.0, **memory.SYNTHETIC,
        )  # fmt: skip
        for name in ("waveforms.hdf5", "val_waveforms.hdf5"):
            shutil.copy(aux / name, root / name)
        shutil.rmtree(aux)
    with common.stopwatch(f"{num_files} background files ({num_files * file_bytes / 1e9:.1f} GB)"):
        t0 = 1_300_000_000
        for k in range(num_files):
            path = root / background_fname(t0 + k * args.segment, args.segment)
            if path.is_file():
                continue
            rng = np.random.default_rng([7, k])
            strain = {ifo: rng.standard_normal(size, dtype=np.float32) for ifo in IFOS}
            write_background(str(path), strain, t0 + k * args.segment, args.sample_rate)
            del strain
    marker.write_text(json.dumps(spec))
    return num_files * file_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data-dir", type=Path, help="where the data set is written (kept); default: a temp dir")
    add("--size-gb", type=float, default=8.0, help="GB of background files")
    add("--segment", type=float, default=4096.0, help="seconds per background file")
    add("--sample-rate", type=float, default=2048.0)
    add("--max-memory", type=float, default=1.0, help="GiB (data.max_memory)")
    add("--chunk-length", type=float, default=256.0, help="s (data.chunk_length)")
    add("--batches", type=int, default=40, help="batches in the epoch (>= the loads)")
    add("--batch-size", type=int, default=32)
    add("--small-memory", type=float, default=0.1, help="GiB of the fixed-cost run (0: skip)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aframe-bench-scale-") as tmp:
        root = args.data_dir or Path(tmp) / "data"
        data_bytes = make_data(root, args)
        valid_frac = 1.5 * args.segment * args.sample_rate * len(IFOS) * 4 / data_bytes
        run_args = argparse.Namespace(
            batches=args.batches, batch_size=args.batch_size, max_memory=args.max_memory,
            chunk_length=args.chunk_length,
            set=[f"--data.init_args.sample_rate={args.sample_rate:g}",
                 f"--data.init_args.valid_frac={valid_frac:.6f}",  # the latest 2 files
                 "--data.init_args.test_frac=0", "--data.init_args.chunks_per_epoch=1000000"],
        )  # fmt: skip
        result = memory.run_child(root, Path(tmp) / "run", "chunked", run_args)
        loaded = result["files_loaded"] / max(result["training_files"], 1)
        common.note(
            f"{data_bytes / 1e9:.2f} GB of background on disk ({IFOS} at {args.sample_rate:g} "
            f"Hz, files of {args.segment:g} s); max_memory={args.max_memory:g} GiB, "
            f"chunk_length={args.chunk_length:g} s: {result['chunk_loads']} loads, "
            f"{result['chunks_read']} chunks ({result['chunks_read'] * args.chunk_length:.0f} s "
            f"of strain), {result['files_loaded']} of {result['training_files']} training files "
            f"loaded; fit {result['fit_s']:.0f} s wall; peak RSS of the main process "
            f"{result['peak_bytes'] / 1e9:.2f} GB; peak anonymous RSS of the tree (without the "
            f"shared libraries mapped from disk) {result['tree_anon_peak_bytes'] / 1e9:.2f} GB"
        )
        code, out, *_ = common.run_watched([sys.executable, "-c", IMPORTS])
        if code == 0:
            common.note(f"RSS of a process that only imports aframe_train.cli (torch, lightning, "
                        f"ml4gw): {float(out.split()[-1]) / 1e9:.2f} GB")  # fmt: skip
        common.headline("train_rss_at_scale_gb", result["tree_peak_bytes"] / 1e9, ".3f")
        common.headline("train_chunk_loads_at_scale", result["chunk_loads"])
        common.headline("train_files_loaded_fraction", loaded, ".3f")
        if args.small_memory > 0:
            small_args = argparse.Namespace(**{**vars(run_args), "max_memory": args.small_memory})
            small = memory.run_child(root, Path(tmp) / "run-small", "chunked", small_args)
            GiB = 2**30
            common.note(f"max_memory={args.small_memory:g} GiB: peak RSS of the tree "
                        f"{small['tree_peak_bytes'] / 1e9:.2f} GB (anonymous "
                        f"{small['tree_anon_peak_bytes'] / 1e9:.2f} GB), {small['chunk_loads']} "
                        f"loads")  # fmt: skip
            fixed = small["tree_peak_bytes"] - args.small_memory * GiB
            slope = (result["tree_peak_bytes"] - small["tree_peak_bytes"]) / (
                (args.max_memory - args.small_memory) * GiB
            )
            common.headline("train_rss_fixed_gb", fixed / 1e9, ".3f")
            common.headline("train_rss_per_max_memory", slope, ".3f")


if __name__ == "__main__":
    main()
