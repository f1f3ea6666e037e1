"""``aframe-online``: frames in a directory -> events -> FAR, p_astro -> outbox -> GraceDB.

    aframe-online --model RUN/model.pt --frames DIR --background EVAL/background_events.hdf5
        [--gracedb https://gracedb-playground.ligo.org/api/] [--outbox DIR]
        [--far_threshold 12] [--injection_results EVAL/injection_results.hdf5]

Every :class:`~aframe_lib.search.settings.SearchSettings` field is a flag, as in
``aframe-train search``; the online defaults differ from the offline ones only in
``cluster_window`` (1 s: each event waits ``cluster_window / 2`` for louder neighbours, where the
offline 8 s would add 4 s of latency) and ``batch_size`` (a second's windows). The background
must have been made with the same settings (``aframe-train evaluate --cluster_window 1 ...``):
the service refuses any other (exit status 2), since its FARs would not apply.

Each event is printed as a line ``event: gps=... stat=... far_per_yr=... p_astro=...``; those
with FAR under ``--far_threshold`` (per year) are written to the outbox and uploaded
(:mod:`.gracedb`). Dead time (missing frames, not-ready state vector, NaNs, unreadable files)
is logged and summed; the service never stops on bad data. It stops on Ctrl-C, or after
``--exit_after_idle`` seconds without a new frame, printing ``livetime_s``, ``dead_time_s`` and
the events and uploads counted.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from aframe_lib.data.replay import READY_BITMASK
from aframe_lib.search.settings import SearchSettings
from aframe_lib.utils.errors import ConfigError, DataError, console_main

logger = logging.getLogger(__name__)

PROG = "aframe-online"
ONLINE_DEFAULTS = {"cluster_window": 1.0, "batch_size": 16}


def run_online(
    model: str,
    frames: str,
    background: str,
    gracedb: str | None = None,
    outbox: str = "aframe-outbox",
    far_threshold: float = 12.0,
    injection_results: str | None = None,
    bbh_rate: float = 30.0,
    pastro_far: float = 365.25,
    group: str = "CBC",
    bitmask: int = READY_BITMASK,
    start: int | None = None,
    late: float = 1.0,
    timeout: float = 10.0,
    exit_after_idle: float | None = None,
    heartbeat: float = 600.0,
    settings: SearchSettings | None = None,
) -> dict[str, float]:
    """Run the online search until stopped (see the module docstring).

    Args:
        model: the exported model (``model.pt``, with ``model.json`` beside it).
        frames: directory where 1-second frames land (``H-H1_llhoft-{gps}-1.gwf``).
        background: ``aframe-train evaluate``'s ``background_events.hdf5``, made with these
            settings.
        gracedb: GraceDB API URL; ``None``: candidates stay in the outbox.
        outbox: directory of candidates not yet acknowledged (``sent/`` the acknowledged).
        far_threshold: upload events with a FAR below this (per year).
        injection_results: evaluate's ``injection_results.hdf5`` for p_astro; ``None``: the
            one beside ``background`` if there (without p_astro, and a warning, when it cannot
            give one: too few events above ``pastro_far``), else no p_astro.
        bbh_rate: BBH merger rate for p_astro (Gpc^-3 yr^-1).
        pastro_far: p_astro is computed above the background statistic at this FAR (per yr).
        group: GraceDB group (``Test`` for replays).
        bitmask: state-vector bits that make a second analysis-ready (3: ``HOFT_OK`` and
            ``OBSERVATION_INTENT``).
        start: first GPS second; ``None``: the oldest second in ``frames``.
        late: seconds to wait for a frame once a later one of its IFO is there.
        timeout: seconds to wait for a frame when nothing newer comes.
        exit_after_idle: stop after this many seconds without a new frame once frames came;
            ``None``: never.
        heartbeat: print a ``status:`` line (GPS, livetime, dead time, uploads, peak memory)
            every this many seconds of data.

    Returns:
        The counts printed at the end.
    """
    from aframe_lib.search.metrics import SECONDS_PER_YEAR
    from aframe_lib.search.pipeline import Search

    from .engine import OnlineSearch
    from .gracedb import Candidate, Outbox, Uploader, client
    from .significance import Background, PAstro
    from .source import FrameSource

    if not Path(frames).is_dir():
        raise ConfigError(f"--frames {frames}: no such directory; pass where the frames land")
    if far_threshold <= 0:
        raise ConfigError(f"--far_threshold={far_threshold}: must be a positive rate per year")
    search = Search.from_exported(model, settings or SearchSettings(**ONLINE_DEFAULTS))
    bg = Background.read(background)
    bg.check(search.settings())
    pastro = None
    beside = Path(background).with_name("injection_results.hdf5")
    if injection_results is not None:
        pastro = PAstro.read(bg, injection_results, bbh_rate=bbh_rate, pastro_far=pastro_far)
    elif beside.exists():
        try:
            pastro = PAstro.read(bg, beside, bbh_rate=bbh_rate, pastro_far=pastro_far)
        except DataError as exc:  # found, not asked for: run without p_astro, say why
            logger.warning("no p_astro: %s", exc)
    box = Outbox(outbox)
    uploader = None
    if gracedb:
        uploader = Uploader(box, lambda: client(gracedb), group=group).start()
    engine = OnlineSearch(search)
    last_data: list[float | None] = [None]  # when the last frame was read

    def idle() -> bool:
        if exit_after_idle is None or last_data[0] is None:
            return False
        return time.monotonic() - last_data[0] > exit_after_idle

    source = FrameSource(
        frames, search.ifos, search.sample_rate, bitmask, start=start, late=late,
        timeout=timeout, stop=idle,
    )  # fmt: skip
    counts = {"events": 0, "candidates": 0}
    logger.info("aframe-online: watching %s for %s frames", frames, ",".join(search.ifos))

    def handle(events) -> None:
        for e in events:
            far = float(bg.far(e.stat)[0])
            p = pastro(e.stat) if pastro is not None else None
            counts["events"] += 1
            print(
                f"event: gps={e.time:.4f} stat={e.stat:.4f} far_per_yr={far:.4g} "
                f"p_astro={'n/a' if p is None else f'{p:.3f}'}",
                flush=True,
            )
            if far < far_threshold:
                cand = Candidate(e.time, e.stat, far / SECONDS_PER_YEAR, tuple(search.ifos),
                                 e.var, p)  # fmt: skip
                box.put(cand)
                counts["candidates"] += 1
                if uploader is not None:
                    uploader.wake()

    beat = [None]

    def status(gps: int) -> None:
        import resource

        if beat[0] is None:
            beat[0] = gps
        if gps - beat[0] < heartbeat:
            return
        beat[0] = gps
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        print(
            f"status: gps={gps} livetime_s={engine.livetime:g} "
            f"dead_time_s={sum(source.dead.values())} events={counts['events']} "
            f"uploaded={len(uploader.acks) if uploader else 0} max_rss_mb={rss:.1f}",
            flush=True,
        )

    try:
        for second in source:
            last_data[0] = time.monotonic()
            status(second.gps)
            if second.strain is None:
                handle(engine.end_segment())
                continue
            try:
                events = engine.push(second.gps, second.strain, second.rate)
            except Exception:  # never stop on data: this second is dead, the search restarts
                logger.exception("GPS %d: the search failed on this second (dead time)", second.gps)
                source.dead["error"] = source.dead.get("error", 0) + 1
                engine.t0 = None  # its segment is dropped: a new one starts with the next data
                continue
            handle(events)
    except KeyboardInterrupt:
        pass
    finally:
        handle(engine.end_segment())
        if uploader is not None:
            uploader.stop(drain=30.0)
    summary = {
        "livetime_s": engine.livetime,
        "dead_time_s": float(sum(source.dead.values())),
        **{f"dead_time_{k.replace(' ', '_')}_s": float(v) for k, v in source.dead.items()},
        "events": float(counts["events"]),
        "candidates": float(counts["candidates"]),
        "pending_uploads": float(len(box.pending())),
        "uploaded": float(len(uploader.acks)) if uploader is not None else 0.0,
    }
    for key, value in summary.items():
        print(f"{key}: {value:g}")
    return summary


def parser():
    from aframe_lib.search.settings import settings_parser

    p = settings_parser(run_online, PROG)
    p.set_defaults(**ONLINE_DEFAULTS)
    return p


@console_main(PROG)
def main(args: list[str] | None = None) -> None:
    """``aframe-online``: :func:`run_online` from the command line."""
    import sys

    values = parser().parse_args(sys.argv[1:] if args is None else args).as_dict()
    values.pop("config", None)
    settings = SearchSettings.pop_from(values)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_online(**values, settings=settings)


if __name__ == "__main__":
    main()
