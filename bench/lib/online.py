"""Latency and memory of the online road: replay -> aframe-online -> a GraceDB stand-in.

Run by ``nox -s bench`` as ``python bench/lib/online.py [--injections 50] [--memory 1800]``.

1. The quickstart-shape network (ResNet1D [1, 1], 512 Hz, kernel 1 s, untrained: latency does
   not depend on the weights) is exported as training exports it (``bench/lib/search.py``),
   and its timeslide background is searched with the online settings
   (``aframe_lib.online.service.ONLINE_DEFAULTS``: 1 s clustering, batches of 16).
2. Latency: ``aframe-data replay --speed 1`` writes noise with ``--injections`` waveforms
   (every 4 s; at least 50) while ``aframe-online`` (its own process, CPU, default backend)
   uploads every event (``--far_threshold`` above every FAR) to the https GraceDB stand-in of
   the tests (``tests/helpers/gracedb_api.py``). The replay logs when its first GPS second
   begins in wall-clock time, which fixes the GPS-to-wall-clock mapping. Each event's latency
   is the stand-in's acknowledgement time less the wall time of the event's GPS time (for an
   untrained network the events are noise; for a trained one an injection's event time is its
   merger time within ``var``). ``online_decision_delay_s`` (median) is what the design must
   wait for: the event's output kernel ends ``time_offset`` after the event, clustering waits
   ``cluster_window / 2`` more, the window's whitening padding ``fduration / 2`` more, and the
   frame holding that sample is written when its second ends. ``online_processing_p50_s`` is
   the median of latency less decision delay (reading, whitening, inference, upload). Events
   in the replay's first ``psd.length`` + window seconds are left out (counted in a note):
   a segment's first windows are whitened with the PSD of the data that follow its start, as
   the offline search does, so they are decided ``psd.length`` seconds late by design.
3. Memory: the same service on ``--memory`` seconds of noise replayed as fast as it keeps up
   (``--speed 0``), its ``status:`` lines giving its peak RSS every ``--memory / 6`` seconds of
   data; ``online_memory_growth`` is the peak after all of it over the peak after the first
   sixth (the issue's 6 h vs 1 h, scaled to fit the benchmark's time; ``--memory 21600`` for
   the real thing).

4. Sensitivity cost of the online settings: the tests' energy-detector oracle (no training, so
   the comparison isolates the settings) searched with the online and the offline settings
   over the same timeslide background (20 000 s) and 200 injections; the ratio of their
   detection efficiencies at 1e4 false alarms per year (what that background can measure).

Headlines: ``online_latency_p50_s``, ``online_latency_p90_s``, ``online_decision_delay_s``,
``online_processing_p50_s``, ``online_events_measured``, ``online_memory_growth``,
``online_sensitivity_ratio``. ``--parts latency,memory,sensitivity`` picks what runs.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/lib: search (export)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # helpers: stand-in
import _common  # noqa: E402

IFOS = ["H1", "L1"]
RATE = 512.0
YEAR = 365.25 * 86400


def script(name: str, module: str) -> list[str]:
    path = Path(sys.executable).parent / name
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def prepare(root: Path, injections: int, spacing: float, memory: float) -> dict:
    from search import export

    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.synthetic import generate_waveforms
    from aframe_lib.online.service import ONLINE_DEFAULTS
    from aframe_lib.search import Search, SearchSettings, find_spans, timeslide_spans
    from aframe_lib.search.events import write_events

    model = export("quickstart", root)
    search = Search.from_exported(str(model), SearchSettings(**ONLINE_DEFAULTS))
    generate_background(str(root / "bg"), IFOS, 600.0, RATE, 300.0, seed=1)
    spans = find_spans(str(root / "bg"), IFOS, RATE)
    bg = search.run(timeslide_spans(spans, 2.0, 6000.0, search.livetime_of), progress=False)
    write_events(str(root / "background_events.hdf5"), bg.events,
                 {**search.settings(), "livetime": bg.livetime})  # fmt: skip
    start = 24.0
    duration = start + injections * spacing + 8.0
    generate_background(str(root / "noise"), IFOS, duration, RATE, duration, seed=2)
    generate_waveforms(str(root / "waveforms.hdf5"), injections, RATE, waveform_duration=4.0,
                       coalescence_time=3.0, seed=3)  # fmt: skip
    generate_background(str(root / "long"), IFOS, memory, RATE, memory, seed=4)
    return {"model": str(model), "search": search, "livetime": bg.livetime, "start": start}


def online_cmd(setup, root: Path, frames: Path, server, extra: list[str]) -> list[str]:
    return [*script("aframe-online", "aframe_lib.online.service"), "--model", setup["model"],
            "--frames", str(frames), "--background", str(root / "background_events.hdf5"),
            "--outbox", str(frames) + "-outbox", "--gracedb", server.url, "--group", "Test",
            "--far_threshold", "1e12", "--late", "0.5", "--timeout", "5", *extra]  # fmt: skip


def latency(setup, root: Path, server, env, spacing: float) -> None:
    import numpy as np

    frames = root / "frames"
    frames.mkdir()
    log = root / "online.log"
    with open(log, "w") as err:
        service = subprocess.Popen(
            online_cmd(setup, root, frames, server, ["--exit_after_idle", "8"]), env=env,
            stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    # start the replay once the service watches the directory (its model loaded)
    while "watching" not in log.read_text():
        if service.poll() is not None:
            raise RuntimeError(f"aframe-online exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    replay = subprocess.run(
        [*script("aframe-data", "aframe_lib.data.cli"), "replay", "--data", str(root / "noise"),
         "--out", str(frames), "--speed", "1", "--injections", str(root / "waveforms.hdf5"),
         "--injection_spacing", str(spacing), "--injection_start", str(setup["start"])],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if replay.returncode:
        raise RuntimeError(replay.stderr[-2000:])
    gps0, wall0 = map(float, re.search(r"GPS (\d+) begins at unix time ([\d.]+)",
                                       replay.stderr).groups())  # fmt: skip
    if service.wait(timeout=120):
        raise RuntimeError(log.read_text()[-2000:])
    s = setup["search"]
    w = s.whitener
    lat, delay, warm = [], [], 0
    for event in server.events.values():
        t = float(event["gpstime"])
        if t < gps0 + s.psd_length + s.kernel_length + s.fduration:
            warm += 1  # decided once the segment's first PSD is there, by design
            continue
        lat.append(event["created"] - (wall0 + (t - gps0)))
        needed = t + s.time_offset + s.cluster_size / s.rate / 2 + w.pad / s.sample_rate
        delay.append(math.floor(needed) + 1 - t)
    lat, delay = np.array(lat), np.array(delay)
    _common.headline("online_latency_p50_s", float(np.percentile(lat, 50)))
    _common.headline("online_latency_p90_s", float(np.percentile(lat, 90)))
    _common.headline("online_decision_delay_s", float(np.median(delay)))
    _common.headline("online_processing_p50_s", float(np.median(lat - delay)))
    _common.headline("online_events_measured", len(lat))
    _common.note(f"{warm} events in the first psd.length + window of the replay (decided "
                 "when the first PSD is complete) are left out")  # fmt: skip
    _common.note(f"processing p90 {np.percentile(lat - delay, 90):.3f} s; "
                 f"duplicates at the stand-in: {server.duplicates}")  # fmt: skip


def memory(setup, root: Path, server, env, seconds: float) -> None:
    frames = root / "frames-long"
    replay = subprocess.Popen(
        [*script("aframe-data", "aframe_lib.data.cli"), "replay", "--data", str(root / "long"),
         "--out", str(frames), "--speed", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    proc = subprocess.run(
        online_cmd(setup, root, frames, server,
                   ["--exit_after_idle", "10", "--heartbeat", str(seconds / 6),
                    "--far_threshold", "1"]),
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    replay.wait()
    rss = [float(x) for x in re.findall(r"max_rss_mb=([\d.]+)", proc.stdout)]
    if len(rss) < 2:
        raise RuntimeError(f"too few status lines: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    _common.headline("online_memory_growth", rss[-1] / rss[0])
    _common.note(f"peak RSS {rss[0]:.0f} MiB after {seconds / 6:.0f} s of data, {rss[-1]:.0f} MiB "
                 f"after {seconds * (len(rss)) / 6:.0f} s")  # fmt: skip


def sensitivity(root: Path, far_per_yr: float = 1e4) -> None:
    """Detection efficiency at ``far_per_yr`` with the online settings over the offline ones,
    for the energy-detector oracle of the tests (``tests/helpers/search.py``: a network-free
    detector whose response does not depend on training, so the ratio isolates what the
    shorter clustering window costs), on the same background and injections."""
    from helpers.search import IFOS as OIFOS
    from helpers.search import SAMPLE_RATE, export_oracle
    from ml4gw.distributions import PowerLaw

    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.synthetic import WaveformPopulation, generate_waveforms
    from aframe_lib.online.service import ONLINE_DEFAULTS
    from aframe_lib.search import (
        Search,
        SearchSettings,
        find_spans,
        inject_population,
        timeslide_spans,
    )  # fmt: skip
    from aframe_lib.search import metrics as m

    model = export_oracle(root / "oracle.pt")
    generate_background(str(root / "sbg"), OIFOS, 1200.0, SAMPLE_RATE, 600.0, seed=5)
    waveforms = generate_waveforms(
        str(root / "swf.hdf5"), 200, SAMPLE_RATE, waveform_duration=4.0, coalescence_time=3.0,
        population=WaveformPopulation(distance=PowerLaw(200.0, 1500.0, 2)), seed=6,
    )  # fmt: skip
    table = inject_population(str(root / "sbg"), str(root / "sfg"), waveforms, OIFOS, 10.0,
                              24.0, highpass=32.0, seed=7)  # fmt: skip
    eff = {}
    for name, fields in (("online", ONLINE_DEFAULTS), ("offline", {})):
        search = Search.from_exported(str(model), SearchSettings(**fields, device="cpu"))
        spans = find_spans(str(root / "sbg"), OIFOS, SAMPLE_RATE)
        bg = search.run(timeslide_spans(spans, 2.0, 20_000.0, search.livetime_of),
                        progress=False)  # fmt: skip
        fg = search.run(find_spans(str(root / "sfg"), OIFOS, SAMPLE_RATE), progress=False)
        found = m.match_injections(table["time"], fg.events.time, fg.events.stat, fg.events.var)
        threshold = m.threshold_at_far(bg.events.stat, bg.livetime, far_per_yr / YEAR)
        eff[name] = m.efficiency(found, threshold)
        _common.note(f"{name} settings: {len(bg.events)} background events in "
                     f"{bg.livetime:.0f} s; efficiency at {far_per_yr:g}/yr {eff[name]:.3f} "
                     f"of {len(found)} injections")  # fmt: skip
    _common.headline("online_sensitivity_ratio", eff["online"] / max(eff["offline"], 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--injections", type=int, default=50)
    parser.add_argument("--spacing", type=float, default=4.0)
    parser.add_argument("--memory", type=float, default=1800.0, help="s of data for memory")
    parser.add_argument("--parts", default="latency,memory,sensitivity")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    from helpers.gracedb_api import GraceDbStandIn

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        root = Path(tmp)
        if parts & {"latency", "memory"}:
            setup = prepare(root, args.injections, args.spacing, args.memory)
        if "latency" in parts:
            with GraceDbStandIn(root) as server:
                env = {**os.environ, "REQUESTS_CA_BUNDLE": str(server.cert)}
                latency(setup, root, server, env, args.spacing)
        if "memory" in parts:
            with GraceDbStandIn(root) as server:
                env = {**os.environ, "REQUESTS_CA_BUNDLE": str(server.cert)}
                memory(setup, root, server, env, args.memory)
        if "sensitivity" in parts:
            sensitivity(root)


if __name__ == "__main__":
    main()
