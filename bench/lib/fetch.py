"""Memory and speed of ``aframe-data fetch`` over frames found through gwdatafind.

Run by ``nox -s bench`` as ``python bench/lib/fetch.py``. Setup: GWF frames of 16384 Hz float64
strain for H1 and L1 (files of ``--file-duration`` s, written with aframe_lib.data.frames), a
frame-file list, and the real ``gwdatafind-server`` application on 127.0.0.1 over it (the
stand-in of the tests, ``tests/helpers/gwdata_servers.py``). Then ``aframe-data fetch`` runs as
its own process (``--jobs`` worker processes) twice over one segment each: 1x = ``--chunks``
chunks of ``--file-duration`` s, and 8x the same. The frames are in the page cache (just
written), so this measures the CPU cost: reading GWF (lalframe), resampling 16384 -> 2048 Hz
(torchaudio's kaiser_best filter by FFT) and writing HDF5.

Headlines (``name: value``):
    fetch_memory_growth      peak RSS of the fetch's process tree (the command and its workers,
                             summed, sampled every 50 ms from /proc) for 8x the data / for 1x
                             (goal <= 1.1: memory bounded by jobs x one chunk)
    fetch_peak_rss_gb        that peak for 8x (GB)
    fetch_realtime_factor    seconds of 2-IFO strain written per wall second, 8x run (a CPU
                             bound: the frames are in the page cache)
    fetch_month_hours        a month (30 days) of 2 IFOs at this rate, extrapolated (hours)

Notes give the wall times and the size written.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import _common  # noqa: E402

T0 = 1_300_000_000 - 1_300_000_000 % 4096
CHANNEL = "{ifo}:GDS-CALIB_STRAIN"


def fetch(out: Path, start: float, end: float, args, env) -> tuple[float, int]:
    """Run ``aframe-data fetch`` over ``[start, end)``; (wall seconds, peak tree RSS bytes)."""
    cmd = [sys.executable, "-c", "from aframe_lib.data.cli import main; main()", "fetch",
           "--data_dir", str(out), "--ifos=[H1,L1]", "--sample_rate", "2048",
           "--start", str(start), "--end", str(end), "--max_duration", str(args.file_duration),
           "--jobs", str(args.jobs), "--frametypes=[H1_HOFT_C00,L1_HOFT_C00]",
           f"--channels=[{CHANNEL.format(ifo='H1')},{CHANNEL.format(ifo='L1')}]"]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]

    def watch():
        while proc.poll() is None:
            peak[0] = max(peak[0], _common.tree_rss(proc.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    watcher.join()
    if proc.returncode:
        raise SystemExit(f"aframe-data fetch failed:\n{err.decode()[-2000:]}")
    return time.perf_counter() - t, peak[0]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file-duration", type=int, default=32, help="s per frame file and chunk")
    p.add_argument("--chunks", type=int, default=4, help="chunks of the 1x run (>= 4)")
    p.add_argument("--jobs", type=int, default=2, help="aframe-data fetch --jobs")
    args = p.parse_args(argv)
    from helpers.gwdata_servers import DatafindServer, write_ffl, write_frames

    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        root = Path(tmp)
        span = args.file_duration * args.chunks
        files = []
        with _common.stopwatch("write frames"):
            for ifo in ("H1", "L1"):
                files += write_frames(root / "frames", ifo, CHANNEL.format(ifo=ifo), "HOFT_C00",
                                      [(T0, T0 + 8 * span)], args.file_duration)  # fmt: skip
        write_ffl(root / "frames" / "frames.ffl", files)
        server = DatafindServer(root / "frames", root)
        env = dict(os.environ, GWDATAFIND_SERVER=server.url)
        try:
            wall1, rss1 = fetch(root / "x1", T0, T0 + span, args, env)
            wall8, rss8 = fetch(root / "x8", T0, T0 + 8 * span, args, env)
        finally:
            server.stop()
        size = sum(f.stat().st_size for f in (root / "x8").glob("background-*"))
        _common.note(f"1x: {span} s of H1+L1 in {wall1:.1f} s, peak {rss1 / 1e9:.2f} GB")
        _common.note(f"8x: {8 * span} s in {wall8:.1f} s, peak {rss8 / 1e9:.2f} GB, "
                     f"{size / 1e6:.0f} MB written, jobs={args.jobs}")  # fmt: skip
        rate = 8 * span / wall8
        _common.headline("fetch_memory_growth", rss8 / rss1)
        _common.headline("fetch_peak_rss_gb", rss8 / 1e9)
        _common.headline("fetch_realtime_factor", rate)
        _common.headline("fetch_month_hours", 30 * 86400 / rate / 3600)
        if rss8 / rss1 > 1.1:
            _common.note("fetch_memory_growth above its goal of 1.1")


if __name__ == "__main__":
    main()
