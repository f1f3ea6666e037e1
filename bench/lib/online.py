"""Latency and memory of the online road: replay -> aframe-online -> a GraceDB stand-in.

Run by ``nox -s bench`` as ``python bench/lib/online.py [--injections 50] [--memory 1800]``;
with a trained model, ``python bench/lib/online.py --model quickstart-run/model.pt`` (what
``nox -s quickstart`` or ``aframe-train fit --config projects/quickstart/train.yaml`` leaves).

1. The model: ``--model``, a trained export, or by default the quickstart-shape network
   (ResNet1D [1, 1], 512 Hz, kernel 1 s) untrained, exported as training exports it
   (``bench/lib/search.py``). Its timeslide background is searched with the online settings
   (``aframe_lib.online.service.ONLINE_DEFAULTS``: 1 s clustering, batches of 16).
2. Latency: ``aframe-data replay --speed 1`` writes noise with ``--injections`` waveforms
   (every 4 s; at least 50) while ``aframe-online`` (its own process, CPU, default backend)
   uploads every event (``--far_threshold`` above every FAR) to the https GraceDB stand-in of
   the tests (``tests/helpers/gracedb_api.py``). The replay logs when its first GPS second
   begins in wall-clock time, which fixes the GPS-to-wall-clock mapping. Each event's latency
   is the stand-in's acknowledgement time less the wall time of the event's GPS time (for an
   untrained network the events are noise). With a trained ``--model`` the latency is measured
   from each found injection's merger GPS time (``OUT/injections.hdf5`` of the replay; found:
   an event within ``max(var, 0.5 s)``), as SGNL's 5.4 s median is, and
   ``online_injections_found`` counts them. ``online_decision_delay_s`` (median) is what the
   design must wait for: the event's output kernel ends ``time_offset`` after the event,
   clustering waits ``cluster_window / 2`` more, the window's whitening padding
   ``fduration / 2`` more, and the frame holding that sample is written when its second ends.
   ``online_processing_p50_s`` is the median of latency less decision delay (reading,
   whitening, inference, upload). Events in the replay's first ``psd.length`` + window seconds
   are left out (counted in a note): a segment's first windows are whitened with the PSD of
   the data that follow its start, as the offline search does, so they are decided
   ``psd.length`` seconds late by design.
3. Memory: the same service on ``--memory`` seconds of noise replayed as fast as it keeps up
   (``--speed 0``), its ``status:`` lines giving its peak RSS every ``--memory / 6`` seconds of
   data; ``online_memory_growth`` is the peak after all of it over the peak after the first
   sixth (the issue's 6 h vs 1 h, scaled to fit the benchmark's time; ``--memory 21600`` for
   the real thing).

4. Sensitivity cost of the online settings: the model (``--model``; without one the tests'
   energy-detector oracle, whose response needs no training) searched with the online and the
   offline settings over the same timeslide background (``--sens_livetime``, 20 000 s) and
   200 injections; the ratio of their detection efficiencies at ``--sens_far`` false alarms
   per year (1e4: what that background can measure).

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


def model_data(model: Path) -> tuple[list[str], float]:
    """The IFOs and sample rate of an exported model (its ``model.json``)."""
    import json

    data = json.loads(model.with_name("model.json").read_text())["data"]
    return list(data["ifos"]), float(data["sample_rate"])


def prepare(root: Path, injections: int, spacing: float, memory: float, model=None) -> dict:
    from ml4gw.distributions import PowerLaw
    from search import export

    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.synthetic import WaveformPopulation, generate_waveforms
    from aframe_lib.online.service import ONLINE_DEFAULTS
    from aframe_lib.search import Search, SearchSettings, find_spans, timeslide_spans
    from aframe_lib.search.events import write_events

    model = Path(model) if model else export("quickstart", root)
    ifos, rate = model_data(model)
    if ifos != IFOS or rate != RATE:
        raise SystemExit(f"{model}: a {ifos} {rate:g} Hz model; this benchmark replays "
                         f"{IFOS} at {RATE:g} Hz (the quickstart's)")  # fmt: skip
    search = Search.from_exported(str(model), SearchSettings(**ONLINE_DEFAULTS))
    generate_background(str(root / "bg"), IFOS, 600.0, RATE, 300.0, seed=1)
    spans = find_spans(str(root / "bg"), IFOS, RATE)
    bg = search.run(timeslide_spans(spans, 2.0, 6000.0, search.livetime_of), progress=False)
    write_events(str(root / "background_events.hdf5"), bg.events,
                 {**search.settings(), "livetime": bg.livetime})  # fmt: skip
    start = 24.0
    duration = start + injections * spacing + 8.0
    generate_background(str(root / "noise"), IFOS, duration, RATE, duration, seed=2)
    # near enough that a trained quickstart model finds most (network SNR ~10-60)
    population = WaveformPopulation(distance=PowerLaw(300.0, 1500.0, 2))
    generate_waveforms(str(root / "waveforms.hdf5"), injections, RATE, waveform_duration=4.0,
                       coalescence_time=3.0, population=population, seed=3)  # fmt: skip
    generate_background(str(root / "long"), IFOS, memory, RATE, memory, seed=4)
    return {"model": str(model), "search": search, "livetime": bg.livetime, "start": start}


def online_cmd(setup, root: Path, frames: Path, server, extra: list[str]) -> list[str]:
    return [*script("aframe-online", "aframe_lib.online.service"), "--model", setup["model"],
            "--frames", str(frames), "--background", str(root / "background_events.hdf5"),
            "--outbox", str(frames) + "-outbox", "--gracedb", server.url, "--group", "Test",
            "--far_threshold", "1e12", "--late", "0.5", "--timeout", "5", *extra]  # fmt: skip


def latency(setup, root: Path, server, env, spacing: float, trained: bool) -> None:
    import numpy as np

    from aframe_lib.search.injections import read_injections
    from aframe_lib.search.metrics import match_injections

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
    events = list(server.events.values())
    times = np.array([float(e["gpstime"]) for e in events])
    created = np.array([e["created"] for e in events])
    # the GPS time latency counts from: the event's own, or the merger it found
    origin = times.copy()
    if trained:
        table, _ = read_injections(str(root / "frames" / "injections.hdf5"))
        merger = np.asarray(table["time"], np.float64)
        var = np.array([float(e.get("var", 0.5)) for e in events])
        found = match_injections(merger, times, np.arange(len(times), dtype=float), var, 0.5)
        hit = np.isfinite(found)
        idx = found[hit].astype(int)  # the loudest is the latest: any event within reach
        times, created, origin = times[idx], created[idx], merger[hit]
        _common.headline("online_injections_found", int(hit.sum()))
        _common.note(f"{hit.sum()} of {len(merger)} injections found (network SNR of the "
                     f"missed: {np.round(np.sort(table['snr'][~hit]), 1).tolist()})")  # fmt: skip
    lat, delay, warm = [], [], 0
    for t, made, t_origin in zip(times, created, origin, strict=True):
        if t < gps0 + s.psd_length + s.kernel_length + s.fduration:
            warm += 1  # decided once the segment's first PSD is there, by design
            continue
        lat.append(made - (wall0 + (t_origin - gps0)))
        needed = t + s.time_offset + s.cluster_size / s.rate / 2 + w.pad / s.sample_rate
        delay.append(math.floor(needed) + 1 - t_origin)
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
        env=env, capture_output=True, text=True, timeout=max(1800, seconds / 3),
    )  # fmt: skip
    replay.wait()
    rss = [float(x) for x in re.findall(r"max_rss_mb=([\d.]+)", proc.stdout)]
    if len(rss) < 2:
        raise RuntimeError(f"too few status lines: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    _common.headline("online_memory_growth", rss[-1] / rss[0])
    _common.note(f"peak RSS {rss[0]:.0f} MiB after {seconds / 6:.0f} s of data, {rss[-1]:.0f} MiB "
                 f"after {seconds * (len(rss)) / 6:.0f} s")  # fmt: skip


def sensitivity(root: Path, model=None, far_per_yr: float = 1e4, livetime: float = 20_000.0):
    """Detection efficiency at ``far_per_yr`` with the online settings over the offline ones,
    on the same background and injections, for ``model`` or, without one, the energy-detector
    oracle of the tests (``tests/helpers/search.py``: a network-free detector whose response
    does not depend on training, so the ratio isolates what the shorter clustering window
    costs)."""
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

    if model is not None:
        OIFOS, SAMPLE_RATE = model_data(Path(model))  # noqa: N806
    else:
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
        bg = search.run(timeslide_spans(spans, 2.0, livetime, search.livetime_of),
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
    parser.add_argument("--model", default=None, help="a trained export (model.pt)")
    parser.add_argument("--sens_livetime", type=float, default=20_000.0)
    parser.add_argument("--sens_far", type=float, default=1e4, help="per year")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    from helpers.gracedb_api import GraceDbStandIn

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        root = Path(tmp)
        if parts & {"latency", "memory"}:
            setup = prepare(root, args.injections, args.spacing, args.memory, args.model)
        if "latency" in parts:
            with GraceDbStandIn(root) as server:
                env = {**os.environ, "REQUESTS_CA_BUNDLE": str(server.cert)}
                latency(setup, root, server, env, args.spacing, args.model is not None)
        if "memory" in parts:
            with GraceDbStandIn(root) as server:
                env = {**os.environ, "REQUESTS_CA_BUNDLE": str(server.cert)}
                memory(setup, root, server, env, args.memory)
        if "sensitivity" in parts:
            sensitivity(root, args.model, args.sens_far, args.sens_livetime)


if __name__ == "__main__":
    main()
