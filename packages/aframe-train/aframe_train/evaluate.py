"""``aframe-train evaluate``: a detector's false-alarm rates and sensitivity, with a report.

    aframe-train evaluate --model RUN/model.pt --out EVAL_DIR [--data DATA]
        [--livetime 86400] [--num_injections 1000] [--population.masses ...]
    aframe-train evaluate --model RUN/model.pt --out EVAL_DIR --data BACKGROUND \
        --injections TABLE [--foreground INJECTED_STRAIN]

``DATA`` is anything ``aframe-train search`` reads (a background directory or file, or a
mock-data-challenge file; at the model's rate or an integer multiple of it, resampled as it
streams).

0. Provenance (:mod:`aframe_lib.data.provenance`): data that ``model.json`` says the model
   trained or validated on (the same GPS time of an IFO for real strain; the same generator,
   seed stream and PSD at the same GPS time for synthetic strain: never judged by path) are
   refused with exit status 2, naming both.
1. Background (``--data``, or synthetic noise from the aLIGO design PSD, from the stream
   ``EVALUATE`` of ``seed`` that no training background of any seed uses, written to
   ``EVAL_DIR/background`` when it is not given): the search over timeslides, IFO ``i`` shifted
   by ``i * k * timeslide_step`` for ``k = 1, -1, 2, ...`` until ``livetime`` seconds are
   searched (``timeslide_step`` must exceed the kernel plus the light travel time).
   -> ``background_events.hdf5`` (``time``, ``stat``, ``var``, ``shift``, ``far``).
   Each timeslide's events are saved as it ends (``background.parts/``, keyed by the model's
   files and the search settings): a rerun after a kill searches only the timeslides not yet
   done. Strain above the model's rate that the timeslides read more than once is resampled
   once, into ``resampled/`` (kept for such a rerun; deleted when the evaluation ends),
   rather than once per timeslide.
2. Foreground, either
   - its own injections: IMRPhenomD binaries (ml4gw) from ``population``, by default the
     population the model was trained on (``model.json``'s, recorded at export), drawn from
     the streams ``EVALUATE + 1`` (binaries) and ``+ 2`` (sky positions, times) of ``seed``,
     injected every ``injection_spacing`` s (each moved later by a random fraction of the
     search's output step, so they fall at every phase of its output grid) at their physical
     amplitude into the unshifted background ->
     ``foreground/`` (the data at the model's rate, and ``injections.hdf5``: times,
     parameters, optimal SNRs); or
   - an external set (``--injections``, see
     :func:`aframe_lib.search.injections.read_injection_table`: ``gps_time`` plus any of
     ``snr``, ``distance``, ...) already in the strain of ``--foreground`` (default: ``--data``
     itself, whose timeslides then also hold the injected signals: a warning); injections
     outside that strain are dropped (counted as ``injections_outside_data``);
   the search over it -> ``foreground_events.hdf5`` and ``injection_results.hdf5`` (each
   injection's matched stat and FAR; matched = the loudest event within ``max(var,
   match_window)`` of it, ``var`` being the event's timing tolerance).
3. Metrics (see :mod:`aframe_lib.search.metrics`) at each FAR of ``fars_per_year`` that the
   livetime can measure (``far >= 1 / livetime``; others are NaN): detection efficiency, per
   SNR bin and overall, and sensitive volume/distance; beside them a fixed-threshold reference
   at ``ideal_snr`` (the ``ideal_*`` numbers: it finds exactly the injections whose optimal
   network SNR in the true PSD is at least ``ideal_snr``; not an upper bound, since a search
   at a low FAR can find quieter signals): its distance and each FAR's
   ``fraction_of_ideal_distance``; with ``mf_budget_s``, the matched-filter ideal: the same at
   the threshold rho(F) that gives a matched filter of the same held-out background each FAR
   (:mod:`aframe_lib.search.matched_filter`; the ``mf_*`` numbers). Plots (``efficiency.png``,
   ``distance.png``, ``roc.png``, ``stats.png``), ``report.md`` (which names the population,
   where each data set came from and both references), ``numbers.json`` (the numbers and both
   references), and the key numbers as ``name: value`` lines on stdout.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aframe_lib.data.glitches import NoiseModel
    from aframe_lib.data.synthetic import WaveformPopulation
    from aframe_lib.search import SearchSettings

SNR_BINS = np.array([0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 30.0, 50.0, 100.0, np.inf])


def evaluate(
    model: str,
    out: str,
    data: str | None = None,
    background_duration: float = 4096.0,
    segment_duration: float = 1024.0,
    livetime: float = 86400.0,
    timeslide_step: float | None = None,
    num_injections: int = 1000,
    injection_spacing: float = 16.0,
    waveform_duration: float = 8.0,
    coalescence_time: float = 6.0,
    population: WaveformPopulation | None = None,
    distance_range: tuple[float, float] | None = None,
    injections: str | None = None,
    foreground: str | None = None,
    fars_per_year: list[float] = [1.0, 12.0, 365.25, 8766.0],  # noqa: B006 - shown in --help
    ideal_snr: float = 8.0,
    snr_highpass: float | None = None,
    match_window: float = 0.5,
    settings: SearchSettings | None = None,
    progress: bool = True,
    seed: int = 0,
    noise: NoiseModel | None = None,
    mf_budget_s: float = 0.0,
    mf_minimal_match: float = 0.97,
    without_glitches: bool = True,
) -> dict[str, float]:
    """Measure an exported model's FARs and sensitivity; write plots and a report to ``out``.

    Args:
        model: exported TorchScript model (``model.pt`` with ``model.json`` beside it).
        out: run directory for the events, injections, plots and report.
        data: background strain: a background directory or file, or a mock-data-challenge
            file (as for ``search``); null generates synthetic noise.
        background_duration: seconds of synthetic noise (when ``data`` is null).
        segment_duration: seconds per synthetic background file.
        livetime: seconds of timeslide background to search.
        timeslide_step: seconds between shifts; null means ceil(kernel_length + fduration).
        num_injections: most injections (fewer if the data hold fewer at this spacing).
        injection_spacing: seconds between injections (keep it above ``cluster_window``).
        waveform_duration: seconds per injected waveform.
        coalescence_time: seconds from a waveform's start to its coalescence.
        population: the binaries of the own injections, configured as for ``aframe-data``
            (``--population.masses torch.distributions.Uniform --population.masses.low 10
            ...``). Fields not given (all, by default) are those of the population the model
            was trained on, as ``model.json`` records it (aframe-lib's defaults, with a
            warning, for models exported before it was recorded). Volumes need distances
            uniform in Euclidean volume (``ml4gw.distributions.PowerLaw`` with ``index: 2``).
        distance_range: for ``injections`` only: the luminosity distances (Mpc) they were
            drawn from, uniform in Euclidean volume; null: the table's ``distance_range``
            attribute, else the range of its ``distance`` column (no volumes without either).
        injections: external injection table (HDF5 or CSV with ``gps_time``) to score
            instead of the own population; needs ``data``.
        foreground: strain holding ``injections``; null means ``data``.
        fars_per_year: false-alarm rates at which efficiencies and distances are reported.
        ideal_snr: network optimal SNR (true PSD) of the ideal threshold detector the
            distances are compared with (a matched filter in Gaussian noise sits near 8-9).
        snr_highpass: Hz above which the own injections' optimal SNRs count (their ``snr``,
            the SNR bins and the ideal detector); null: 20 Hz, where the waveforms start, so
            the ideal sees the whole signal rather than only the model's band (its
            ``highpass``).
        match_window: seconds either side of an injection within which its loudest event
            counts as finding it, at least each event's own ``var`` (the model's timing
            calibration at SNR 8-20, per bin of the stat); ``own_var_found_ratio_*`` in the
            report says what ``var`` alone finds over what this window finds (below 1 for
            models calibrated before 2026-12-06, whose offset came from loud injections).
        settings: how the search runs (``None``: the defaults; keep ``cluster_window`` below
            ``injection_spacing``); the preprocessing is the model's.
        progress: show progress bars.
        seed: seed whose streams 10, 11 and 12 give the synthetic noise, the binaries and the
            sky positions (streams no training data of any seed use).
        noise: the noise model of the synthetic noise (when ``data`` is null), as for
            ``aframe-data synthetic --noise`` (drifting PSDs, glitches); null: stationary
            Gaussian noise. Whenever the background's directory holds a glitch log
            (``glitches.hdf5``), the report gives the fraction of the loudest 100 background
            events, and of those above 100 per month, that coincide with a logged glitch (within
            the model's kernel length), per glitch type, beside the fraction of all background
            events that do (what a model blind to glitches would show).
        mf_budget_s: CPU seconds for the matched-filter ideal (0: not computed): the threshold
            rho(F) at which a matched filter of the same held-out background (``--data`` or
            the own noise) has each false-alarm rate F of ``fars_per_year``, measured with
            pycbc within this budget and extrapolated below it by a fitted tail (see
            :mod:`aframe_lib.search.matched_filter`); its ``mf_ideal_*`` numbers find the
            injections whose optimal network SNR is at least rho(F). A few CPU-minutes reach
            about a month of timeslide livetime.
        mf_minimal_match: minimal match of the matched filter's template bank.
        without_glitches: on glitchy synthetic noise (``noise`` with glitches, or ``data``
            whose glitch log records the synthetic noise it belongs to), also search the same
            noise without its glitches (the same seed stream, PSDs and injections, glitches
            off; written to ``out/without_glitches/``) and report its efficiencies and
            sensitive distances at each of ``fars_per_year`` beside the glitchy ones
            (``..._without_glitches``, and ``distance_ratio_glitches_at_far_*``: with over
            without). Doubles the evaluation's searching.
    """
    from aframe_lib.search import Search, find_spans
    from aframe_lib.search.checkpoint import model_digest
    from aframe_lib.search.timeslides import check_step
    from aframe_lib.utils.errors import ConfigError

    if not mf_budget_s >= 0:
        raise ConfigError(f"mf_budget_s: {mf_budget_s} is not CPU seconds >= 0; pass e.g. 300")
    if not 0 < mf_minimal_match < 1:
        raise ConfigError(f"mf_minimal_match: {mf_minimal_match} is not in (0, 1); pass e.g. 0.97")
    if not ideal_snr > 0:
        raise ConfigError(f"ideal_snr: {ideal_snr} is not a positive SNR; pass e.g. 8")
    if snr_highpass is not None and not snr_highpass >= 0:
        raise ConfigError(f"snr_highpass: {snr_highpass} is not a frequency >= 0 Hz; pass e.g. 20")
    if not (match_window >= 0 and match_window < injection_spacing / 2):
        raise ConfigError(
            f"match_window: {match_window} s must be >= 0 and below half the "
            f"injection_spacing ({injection_spacing} s); pass e.g. 0.5"
        )
    if population is not None and injections is not None:
        raise ConfigError(
            "population: the binaries of evaluate's own injections; with --injections the "
            "table's are scored: drop one of the two"
        )
    if distance_range is not None and injections is None:
        raise ConfigError(
            f"distance_range={list(distance_range)}: only for --injections; the own "
            "injections' distances are population.distance (e.g. --population.distance "
            "ml4gw.distributions.PowerLaw --population.distance.minimum 100 "
            "--population.distance.maximum 10000 --population.distance.index 2)"
        )
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    engine = Search.from_exported(model, settings)
    info = _model_info(model)
    population, population_source = _population(population, info, injections is not None)
    step = timeslide_step or math.ceil(engine.kernel_length + engine.fduration)
    check_step(step, engine.kernel_length)
    own_noise = data is None
    if data is None:
        if injections is not None:
            raise ValueError(
                "--injections needs --data: the background strain to build timeslides from "
                "(and --foreground: the strain holding the injections, when that is another file)"
            )
        data = _synthetic_background(
            engine, run / "background", background_duration, segment_duration, seed, noise
        )

    spans = find_spans(
        data, engine.ifos, engine.sample_rate, engine.min_duration, engine.min_duration_desc
    )
    sources = {"data": _check_unseen(model, info, "data", data, spans)}
    if glitches := _check_glitches(model, info, data):
        sources["glitches"] = glitches
    recorded = spans  # the injections go into the strain as recorded, then are resampled
    digest = model_digest(model)  # keys the saved background spans
    shifted, background = _background(engine, spans, step, livetime, run, digest, progress,
                                      "background")  # fmt: skip
    if background.livetime < livetime:
        logging.warning(
            "every timeslide of %s with step %s s gives %.0f s of background, less than the "
            "%.0f s asked for",
            data,
            step,
            background.livetime,
            livetime,
        )

    outside = 0
    if injections is not None:
        injections, distance_range, outside, fg_data = _external(
            engine, injections, foreground, data, distance_range
        )
        if fg_data != data:
            fg_spans = find_spans(fg_data, engine.ifos, engine.sample_rate)
            sources["foreground"] = _check_unseen(model, info, "foreground", fg_data, fg_spans)
    else:
        distance_range = _volume_range(population)
        injections = _inject(
            engine, recorded, run / "foreground", num_injections, injection_spacing,
            waveform_duration, coalescence_time, population, distance_range, seed, snr_highpass,
        )  # fmt: skip
        fg_data = str(run / "foreground")
    fg_spans = find_spans(fg_data, engine.ifos, engine.sample_rate, engine.min_duration)
    foreground = engine.run(fg_spans, progress=progress, desc="foreground")
    mf = None
    if mf_budget_s > 0:
        mf = _matched_filter(engine, recorded, population, fars_per_year, mf_budget_s,
                             mf_minimal_match, snr_highpass, seed)  # fmt: skip

    numbers, curves = _metrics(
        background,
        foreground,
        injections,
        distance_range,
        fars_per_year,
        ideal_snr,
        match_window,
    )
    numbers.update(_mf_numbers(mf, curves["snr"], distance_range, fars_per_year, numbers))
    curves["mf_rho"] = dict(zip(fars_per_year, mf.rho, strict=True)) if mf else {}
    numbers.update(_glitch_numbers(data, background, engine.ifos, engine.kernel_length))
    twin = None
    if without_glitches and fg_data == str(run / "foreground"):  # the own injections
        twin = _glitch_free_twin(
            engine, data, run / "without_glitches", own_noise, noise, background_duration,
            segment_duration, seed,
        )  # fmt: skip
    if twin is not None:
        clean_spans = find_spans(
            twin, engine.ifos, engine.sample_rate, engine.min_duration, engine.min_duration_desc
        )
        _, clean_bg = _background(engine, clean_spans, step, livetime, run / "without_glitches",
                                  digest, progress, "background without glitches")  # fmt: skip
        clean_inj = _inject(
            engine, clean_spans, run / "without_glitches" / "foreground", num_injections,
            injection_spacing, waveform_duration, coalescence_time, population, distance_range,
            seed, snr_highpass,
        )  # fmt: skip
        if not np.array_equal(clean_inj["time"], injections["time"]):
            raise RuntimeError("the noise without glitches got other injections than with them")
        clean_fg = engine.run(
            find_spans(str(run / "without_glitches" / "foreground"), engine.ifos,
                       engine.sample_rate, engine.min_duration),
            progress=progress, desc="foreground without glitches",
        )  # fmt: skip
        clean, _ = _metrics(clean_bg, clean_fg, clean_inj, distance_range, fars_per_year,
                            ideal_snr, match_window)  # fmt: skip
        numbers.update(_compare_glitches(numbers, clean, fars_per_year))
    numbers["injections_outside_data"] = float(outside)
    numbers["num_timeslides"] = float(len(shifted))
    numbers["realtime_factor_background"] = background.realtime_factor
    numbers["realtime_factor_foreground"] = foreground.realtime_factor
    _write_outputs(run, engine, background, foreground, injections, curves, distance_range)
    _plots(run, curves, fars_per_year, background.livetime)
    _report(run, model, data, numbers, sources, population_source, mf, curves)
    for cache in (run / "resampled", run / "without_glitches" / "resampled"):
        shutil.rmtree(cache, ignore_errors=True)  # a cache for reruns after a kill
    for key, value in numbers.items():
        print(f"{key}: {value:.6g}")
    return numbers


def _matched_filter(engine, spans, population, fars_per_year, budget, minimal_match, highpass,
                    seed):  # fmt: skip
    """The matched-filter ideal's rho(F) on the held-out background ``spans``."""
    from aframe_lib.data.synthetic import EVALUATE, F_MIN, stream_seed
    from aframe_lib.search.matched_filter import matched_filter_ideal
    from aframe_lib.search.metrics import SECONDS_PER_YEAR
    from aframe_lib.utils.errors import ConfigError

    try:
        import pycbc  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"mf_budget_s={budget}: the matched-filter ideal needs pycbc, which is not "
            "installed: pip install 'aframe-lib[mf]', or pass --mf_budget_s 0"
        ) from None

    return matched_filter_ideal(
        spans,
        population,
        [far / SECONDS_PER_YEAR for far in fars_per_year],
        budget,
        inference_rate=engine.rate,
        cluster_window=engine.cluster_size / engine.rate,
        f_low=F_MIN if highpass is None else highpass,
        minimal_match=minimal_match,
        seed=stream_seed(seed, EVALUATE + 3),
    )


def _mf_numbers(mf, snr, distance_range, fars_per_year, numbers) -> dict[str, float]:
    """The matched-filter ideal at each FAR: rho(F), the fraction of injections with optimal
    network SNR >= rho(F), their sensitive distance, and the detector's fraction of it."""
    from aframe_lib.search import metrics as m

    if mf is None:
        return {}
    out = {
        "mf_template_bank_size": float(len(mf.bank["mass_1"])),
        "mf_minimal_match": float(mf.bank["minimal_match"]),
        "mf_filtered_s": mf.filtered_s,
        "mf_timeslides": float(mf.num_slides),
        "mf_background_livetime_s": mf.livetime,
        "mf_fit_rms_dex": mf.fit["rms_dex"],
        "mf_fit_max_dex": mf.fit["max_dex"],
        "mf_budget_s": mf.budget_s,
        "mf_cpu_s": mf.cpu_s,
    }
    for far, rho in zip(fars_per_year, mf.rho, strict=True):
        found = math.isfinite(rho)  # NaN: the fit gives no threshold there
        ideal = m.ideal_sensitive_distance(snr, rho, distance_range) if found else math.nan
        distance = numbers.get(f"sensitive_distance_mpc_at_far_{far:g}_per_yr", math.nan)
        out[f"mf_ideal_snr_at_far_{far:g}_per_yr"] = rho
        out[f"mf_ideal_efficiency_at_far_{far:g}_per_yr"] = (
            m.ideal_efficiency(snr, rho) if found else math.nan
        )
        out[f"mf_ideal_sensitive_distance_mpc_at_far_{far:g}_per_yr"] = ideal
        out[f"fraction_of_mf_ideal_distance_at_far_{far:g}_per_yr"] = (
            distance / ideal if ideal > 0 else math.nan
        )
    return out


def _background(engine, spans, step, livetime, where: Path, key: str, progress: bool, desc: str):
    """The timeslides of ``spans`` (:func:`_timeslides`, resampled copies in
    ``where/resampled``) and their search, each span's events saved in
    ``where/background.parts`` (keyed by ``key``) so that a rerun after a kill resumes."""
    shifted = _timeslides(engine, spans, step, livetime, where / "resampled")
    result = engine.run(shifted, progress=progress, desc=desc,
                        checkpoint=where / "background.parts", key=key)  # fmt: skip
    return shifted, result


def _timeslides(engine, spans, step, livetime, cache: Path) -> list:
    """The timeslides of ``spans``; strain above the model's rate that they read more than once
    is resampled once, into ``cache`` (deleted when the evaluation ends)."""
    from aframe_lib.search import materialize, timeslide_spans

    shifted = timeslide_spans(spans, step, livetime, engine.livetime_of)
    uses = Counter(_source(s) for s in shifted)
    reread = [s for s in spans if s.factor != 1 and uses[_source(s)] > 1]
    if reread:
        copies = materialize(reread, str(cache))
        written = dict(zip(map(_source, reread), copies, strict=True))
        spans = [written.get(_source(s), s) for s in spans]
        shifted = timeslide_spans(spans, step, livetime, engine.livetime_of)  # the same slides
    return shifted


def _source(span) -> tuple:
    """Where a span's IFO 0 samples come from (the same for its timeslides)."""
    c = span.channels[0]
    return c.path, c.dataset, c.origin


def _synthetic_background(engine, where: Path, duration, segment_duration, seed, noise=None) -> str:
    """Evaluate's own noise: the stream ``EVALUATE`` of ``seed``, with the noise model ``noise``
    (files of another seed, stream or noise model there, e.g. from an older evaluation, are
    written again)."""
    from aframe_lib.data import provenance
    from aframe_lib.data.glitches import GLITCH_FILE, NoiseModel
    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.synthetic import EVALUATE

    noise = NoiseModel.coerce(noise).check(engine.ifos)
    files = sorted(where.glob("background-*.hdf5"))
    record = provenance.read(str(files[0])) if files else None
    wanted = (seed, EVALUATE, noise.describe() or None)
    if not record or (record.get("seed"), record.get("stream"), record.get("noise")) != wanted:
        for path in [*files, where / GLITCH_FILE]:
            path.unlink(missing_ok=True)
        generate_background(
            str(where), engine.ifos, duration, engine.sample_rate, segment_duration,
            seed=seed, stream=EVALUATE, noise=noise,
        )  # fmt: skip
    return str(where)


def _glitch_free_twin(engine, data, where: Path, own, noise, duration, segment_duration, seed):
    """The same synthetic noise as ``data`` without its glitches, written to ``where``, or
    ``None`` when ``data`` has no glitches or cannot be made again.

    Evaluate's own noise (``own``): the same stream with ``noise``'s glitches off.
    Other data: from its glitch log's provenance record (seed, stream, noise model, spans; the
    glitch-free files must have the data's names), else ``None`` with a warning."""
    import json
    from dataclasses import replace

    from aframe_lib.data import provenance
    from aframe_lib.data.glitches import GLITCH_FILE, NoiseModel
    from aframe_lib.data.noise import GENERATOR, generate_background
    from aframe_lib.search import find_spans

    if own:
        noise = NoiseModel.coerce(noise)
        if not noise.has_glitches:
            return None
        quiet = replace(noise, glitch_rates={}, glitch_bank=None)
        return _synthetic_background(engine, where / "background", duration,
                                     segment_duration, seed, quiet)  # fmt: skip
    path = Path(data)
    folder = path if path.is_dir() else path.parent
    log = folder / GLITCH_FILE
    record = provenance.read(str(log)) if log.is_file() else None
    if record is None:
        if log.is_file():
            logging.warning("%s has no provenance record: the same noise without its glitches "
                            "cannot be made, so no numbers without glitches", log)  # fmt: skip
        return None
    spans = sorted(next(iter(record["spans"].values())))
    if record.get("generator") != GENERATOR or not spans:
        return None
    quiet = replace(NoiseModel.coerce(record.get("noise")), glitch_rates={}, glitch_bank=None)
    gap = spans[1][0] - spans[0][1] if len(spans) > 1 else 0.0
    rates = {s.sample_rate * s.factor for s in find_spans(data, engine.ifos, engine.sample_rate)}
    target = where / "background"
    wanted = json.dumps([record["seed"], record["stream"], quiet.to_dict(), spans])
    stamp = target / "twin.json"
    if not (stamp.is_file() and stamp.read_text() == wanted):
        shutil.rmtree(target, ignore_errors=True)
        generate_background(
            str(target), engine.ifos, sum(b - a for a, b in spans), rates.pop(),
            spans[0][1] - spans[0][0], t0=spans[0][0], gap=gap, seed=record["seed"],
            stream=record["stream"], noise=quiet,
        )  # fmt: skip
        stamp.write_text(wanted)
    ours = sorted(p.name for p in target.glob("background-*.hdf5"))
    theirs = sorted(p.name for p in folder.glob("background-*.hdf5"))
    if ours != theirs:
        logging.warning("%s: its glitch log's record does not make its files again (%d files, "
                        "%d made): no numbers without glitches", data, len(theirs),
                        len(ours))  # fmt: skip
        return None
    return str(target)


def _compare_glitches(numbers: dict[str, float], clean: dict[str, float], fars_per_year):
    """The glitch-free twin's efficiencies and distances (``..._without_glitches``) and each
    FAR's distance with glitches over without (``distance_ratio_glitches_at_far_*``)."""
    out = {"background_livetime_s_without_glitches": clean["background_livetime_s"]}
    for far in fars_per_year:
        for name in ("efficiency", "sensitive_distance_mpc"):
            key = f"{name}_at_far_{far:g}_per_yr"
            out[f"{key}_without_glitches"] = clean[key]
        key = f"sensitive_distance_mpc_at_far_{far:g}_per_yr"
        without = clean[key]
        out[f"distance_ratio_glitches_at_far_{far:g}_per_yr"] = (
            numbers[key] / without if without > 0 else math.nan
        )
    return out


def _glitch_numbers(data: str, background, ifos, window: float) -> dict[str, float]:
    """Of the loudest 100 background events and of those above 100 per month, the fraction
    that coincide with a glitch of the data's log (``glitches.hdf5`` beside the data, see
    :func:`aframe_lib.data.glitches.glitch_coincidences`), overall and per type; ``{}`` when
    the data have no log."""
    from aframe_lib.data.glitches import (
        GLITCH_FILE,
        glitch_coincidences,
        loudest_with_glitches,
        read_glitches,
    )
    from aframe_lib.search.metrics import SECONDS_PER_YEAR, threshold_at_far

    path = Path(data)
    log_path = (path if path.is_dir() else path.parent) / GLITCH_FILE
    if not log_path.is_file():
        return {}
    log = read_glitches(str(log_path))
    events = background.events
    types, _ = glitch_coincidences(events.time, log, list(ifos), events.shift, window)
    threshold = threshold_at_far(events.stat, background.livetime, 100 / (SECONDS_PER_YEAR / 12))
    above = int(np.sum(events.stat > threshold))  # NaN (too little livetime): none
    numbers = {"glitches_logged": float(len(log["time"])), "glitch_window_s": float(window)}
    # the reference: of all background events, the fraction that meet a glitch (by chance, for a
    # model that ignores glitches)
    numbers["all_events_with_glitch"] = loudest_with_glitches(events.stat, types, len(types))[
        "with_glitch"
    ]
    for name, top in (("loudest_100", 100), ("above_100_per_month", above)):
        summary = loudest_with_glitches(events.stat, types, top)
        numbers[f"{name}_events"] = float(summary["events"])
        numbers[f"{name}_with_glitch"] = summary["with_glitch"]
        for kind, fraction in summary["by_type"].items():
            numbers[f"{name}_with_{kind}"] = fraction
    return numbers


def _model_info(model: str) -> dict[str, Any]:
    """``model.json`` beside ``model`` (``{}`` without one)."""
    import json

    path = Path(model[: -len(".pt")] + ".json" if model.endswith(".pt") else f"{model}.json")
    return json.loads(path.read_text()) if path.exists() else {}


def _population(population, info: dict[str, Any], external: bool):
    """The population of the own injections and where it came from (for the report): the
    fields given, the others the training population's (``model.json``)."""
    from collections.abc import Mapping

    from aframe_lib.data.synthetic import DEFAULT_POPULATION, WaveformPopulation

    recorded = info.get("population") or {}
    if isinstance(population, WaveformPopulation):
        population = {k: getattr(population, k) for k in DEFAULT_POPULATION}
    if population is not None and not isinstance(population, Mapping):
        raise ValueError(f"population={population!r}: give a mapping of field -> distribution")
    given = {k: v for k, v in (population or {}).items() if v is not None}
    fields = {**recorded, **given}
    if recorded:
        source = "the training population (model.json)"
        if given:
            source = f"the training population (model.json) with {', '.join(sorted(given))} given"
    else:
        source = "aframe-lib's default (model.json records no population)"
        if given:
            source = f"aframe-lib's default with {', '.join(sorted(given))} given"
        elif not external:
            logging.warning(
                "model.json records no training population (exported before it was recorded): "
                "the injections come from aframe-lib's default population; give the one the "
                "model was trained on as --population"
            )
    return WaveformPopulation.coerce(fields, "population"), source


def _volume_range(population) -> tuple[float, float] | None:
    """``(min, max)`` Mpc of a distance distribution uniform in Euclidean volume (ml4gw's
    ``PowerLaw`` with index 2), else ``None`` (no sensitive volumes, with a warning)."""
    distance = population.config()["distance"]
    args = distance.get("init_args") or {}
    if distance["class_path"].endswith("PowerLaw") and float(args.get("index", 0)) == 2.0:
        return float(args["minimum"]), float(args["maximum"])
    logging.warning(
        "population.distance=%s is not uniform in Euclidean volume (ml4gw.distributions."
        "PowerLaw with index 2): sensitive volumes and distances are not computed",
        distance,
    )
    return None


def _check_unseen(model: str, info: dict[str, Any], flag: str, path: str, spans) -> list[str]:
    """Refuse strain that ``model.json``'s provenance says the model trained or validated on
    (:func:`aframe_lib.data.provenance.same_data`: by content, never by path).

    Returns:
        A description of each provenance record of the strain (for the report).

    Raises:
        ConfigError: naming the data, the model and the training data they share.
    """
    from aframe_lib.data import provenance
    from aframe_lib.utils.errors import ConfigError

    ours, missing = provenance.of_files({c.path for s in spans for c in s.channels})
    recorded = info.get("provenance") or {}
    for split, name in (("train", "trained"), ("valid", "validated")):
        for theirs in recorded.get(split, []):
            for record in ours:
                if reason := provenance.same_data(record, theirs):
                    raise ConfigError(
                        f"--{flag}={path}: the model {model} was {name} on this data ({reason}; "
                        f"model.json: {split} data {provenance.describe(theirs)}); its numbers "
                        "would be biased: evaluate on data it never saw (leave --data out for "
                        "evaluate's own noise, or give held-out strain)"
                    )
    if missing:
        logging.warning(
            "%s: %d file(s) without a provenance record (e.g. %s): cannot check that the model "
            "never saw them",
            path,
            len(missing),
            missing[0],
        )
    if not recorded:
        logging.warning(
            "%s: model.json records no training data provenance (exported before it was "
            "recorded): cannot check that --%s is not training data",
            model,
            flag,
        )
    return [provenance.describe(r) for r in ours] + [f"{m} (no record)" for m in missing[:3]]


def _check_glitches(model: str, info: dict[str, Any], data: str) -> list[str]:
    """Refuse held-out noise whose glitches were drawn from the glitch bank the model trained
    with (``model.json``'s ``provenance.glitch_bank``; the same bank by its content digest,
    never by path), as recorded in the data's glitch log (``glitches.hdf5``).

    Returns:
        For the report: where the data's glitches came from and the training bank, if any.

    Raises:
        ConfigError: naming the data, the model and the bank.
    """
    from aframe_lib.data import provenance
    from aframe_lib.data.glitches import GLITCH_FILE
    from aframe_lib.utils.errors import ConfigError

    trained = (info.get("provenance") or {}).get("glitch_bank")
    path = Path(data)
    log_path = (path if path.is_dir() else path.parent) / GLITCH_FILE
    record = provenance.read(str(log_path)) if log_path.is_file() else None
    lines = []
    if record is not None:
        lines.append(f"the data's glitch log: {provenance.describe(record)}")
        bank = record.get("glitch_bank")
        if trained and bank and (reason := provenance.same_data(bank, trained)):
            raise ConfigError(
                f"--data={data}: its glitches were drawn from the glitch bank the model {model} "
                f"trained with ({reason}; model.json: provenance.glitch_bank "
                f"{provenance.describe(trained)}); glitches it was trained on say nothing of "
                "glitches it never saw: make the noise with a bank of another seed "
                "(aframe-data glitches --seed ...) or without noise.glitch_bank"
            )
    elif log_path.is_file():
        lines.append(f"the data's glitch log {log_path} has no provenance record")
    if trained:
        lines.append(f"the model trained with the glitch bank {provenance.describe(trained)}")
    return lines


def _external(engine, table: str, foreground: str | None, data: str, distance_range):
    """The external injection table, restricted to the foreground strain it refers to."""
    from aframe_lib.search import find_spans
    from aframe_lib.search.injections import read_injection_table

    columns, attrs = read_injection_table(table)
    if foreground is None:
        logging.warning(
            "%s: no --foreground given, so the injections are taken to be in --data %s, whose "
            "timeslides (the background) then hold their single-IFO power too; pass the "
            "injection-free strain as --data and the injected one as --foreground",
            table,
            data,
        )
    fg = foreground or data
    spans = find_spans(fg, engine.ifos, engine.sample_rate)
    t = columns["time"]
    inside = np.zeros(len(t), dtype=bool)
    for span in spans:
        inside |= (t >= span.t0) & (t < span.t0 + span.duration)
    if not inside.any():
        raise ValueError(
            f"{table}: none of its {len(t)} gps_time values lies in the strain of {fg} "
            f"(GPS {spans[0].t0:.0f} to {spans[-1].t0 + spans[-1].duration:.0f}); pass the "
            "strain the injections were made in as --foreground"
        )
    if distance_range is None:
        if "distance_range" in attrs:
            distance_range = tuple(float(x) for x in attrs["distance_range"])
        elif "distance" in columns:
            distance_range = (float(columns["distance"].min()), float(columns["distance"].max()))
    logging.info("%s: %d injections in %s (%d outside)", table, inside.sum(), fg, (~inside).sum())
    return {k: v[inside] for k, v in columns.items()}, distance_range, int((~inside).sum()), fg


def _inject(
    engine, spans, where, num, spacing, wf_duration, tc, population, distances, seed, snr_highpass
):
    from aframe_lib.data.synthetic import EVALUATE, F_MIN, generate_waveforms, stream_seed
    from aframe_lib.search import inject_population
    from aframe_lib.search.injections import num_injection_slots

    start_pad = engine.min_duration + 1.0
    # injections fall at every phase of the search's output grid (see inject_population)
    jitter = 1.0 / engine.rate
    fits = num_injection_slots(spans, start_pad, wf_duration - tc, spacing, jitter)
    where.mkdir(parents=True, exist_ok=True)
    rates = {s.sample_rate * s.factor for s in spans}
    if len(rates) != 1:
        from aframe_lib.utils.errors import ConfigError

        raise ConfigError(
            f"--data: its strain is stored at several rates ({sorted(rates)} Hz); the "
            "population is generated at the stored rate, so give data at one rate"
        )
    waveforms = generate_waveforms(
        str(where / "waveforms.hdf5"),
        max(1, min(num, fits)),
        rates.pop(),
        waveform_duration=wf_duration,
        coalescence_time=tc,
        seed=seed,
        stream=EVALUATE + 1,
        population=population,
    )
    return inject_population(
        spans,
        str(where),
        waveforms,
        engine.ifos,
        spacing,
        start_pad=start_pad,
        highpass=F_MIN if snr_highpass is None else snr_highpass,
        distance_range=tuple(distances) if distances else None,
        seed=stream_seed(seed, EVALUATE + 2),
        jitter=jitter,
    )


def _metrics(
    background, foreground, injections, distance_range, fars_per_year, ideal_snr=8.0, window=0.0
):
    from aframe_lib.search import metrics as m

    year = m.SECONDS_PER_YEAR
    bg, T = background.events.stat, background.livetime
    fg = foreground.events
    found = m.match_injections(injections["time"], fg.time, fg.stat, fg.var, window)
    # scored as an external scorer would, with the events' own ``var`` only (no window floor)
    own = m.match_injections(injections["time"], fg.time, fg.stat, fg.var) if window else found
    numbers: dict[str, float] = {
        "background_livetime_s": T,
        "background_events": float(len(bg)),
        "loudest_background_far_per_yr": year / T if T else math.nan,
        "num_injections": float(len(found)),
        "injections_matched": float(np.isfinite(found).sum()),
        "match_window_s": float(window),
    }
    snr = injections.get("snr", np.full(len(found), np.nan))
    curves: dict[str, Any] = {"found": found, "snr": snr, "bg": bg, "T": T, "rho": ideal_snr}
    curves["efficiency_vs_snr"] = {}
    ideal = m.ideal_sensitive_distance(snr, ideal_snr, distance_range)
    numbers["ideal_snr"] = float(ideal_snr)
    numbers["ideal_efficiency"] = m.ideal_efficiency(snr, ideal_snr)
    numbers["ideal_sensitive_distance_mpc"] = ideal
    for far in fars_per_year:
        threshold = m.threshold_at_far(bg, T, far / year)
        eff = m.efficiency(found, threshold)
        volume = (
            m.sensitive_volume(found, threshold, distance_range) if distance_range else math.nan
        )
        numbers[f"efficiency_at_far_{far:g}_per_yr"] = eff
        # item 4's check: what the events' own var finds, over what the window finds
        with_window = int(np.sum(found > threshold))
        numbers[f"injections_found_at_far_{far:g}_per_yr"] = float(with_window)
        numbers[f"own_var_found_ratio_at_far_{far:g}_per_yr"] = (
            float(np.sum(own > threshold)) / with_window if with_window else math.nan
        )
        distance = m.volume_to_distance(volume)
        numbers[f"sensitive_distance_mpc_at_far_{far:g}_per_yr"] = distance
        numbers[f"fraction_of_ideal_distance_at_far_{far:g}_per_yr"] = (
            distance / ideal if ideal > 0 else math.nan
        )
        curves["efficiency_vs_snr"][far] = m.efficiency_vs_snr(found, snr, threshold, SNR_BINS)
    curves["snr_bin_counts"] = np.histogram(snr[np.isfinite(snr)], SNR_BINS)[0]
    loudest = float(bg.max()) if len(bg) else -math.inf
    numbers["efficiency_above_loudest_background"] = m.efficiency(found, loudest)
    # ROC: every background event's stat as a threshold (its FAR = rank / T)
    ordered = np.sort(bg)[::-1]
    curves["roc_far"] = np.arange(1, len(ordered) + 1) / T * year
    curves["roc_eff"] = np.array([np.mean(found > s) for s in ordered])
    lo, hi = distance_range or (math.nan, math.nan)
    shell = 4 / 3 * math.pi * (hi**3 - lo**3)
    curves["roc_distance"] = np.array([m.volume_to_distance(shell * e) for e in curves["roc_eff"]])
    curves["fg_far"] = m.false_alarm_rate(fg.stat, bg, T) if T else np.full(len(fg), np.nan)
    curves["found_far"] = m.false_alarm_rate(found, bg, T) if T else np.full(len(found), np.nan)
    curves["bg_far"] = m.false_alarm_rate(bg, bg, T) if T else np.zeros(0)
    return numbers, curves


def _write_outputs(
    run: Path, engine, background, foreground, injections, curves, distance_range=None
) -> None:
    import h5py

    from aframe_lib.search import write_events
    from aframe_lib.utils.fs import atomic_local_path

    settings = engine.settings()
    write_events(
        str(run / "background_events.hdf5"),
        background.events,
        {**settings, "livetime": background.livetime},
        {"far": curves["bg_far"]},
    )
    write_events(
        str(run / "foreground_events.hdf5"),
        foreground.events,
        {**settings, "livetime": foreground.livetime},
        {"far": curves["fg_far"]},
    )
    with atomic_local_path(run / "injection_results.hdf5") as tmp, h5py.File(tmp, "w") as f:
        for key in ("time", "snr", "distance", "mass_1", "mass_2"):
            if key in injections:
                f.create_dataset(key, data=injections[key])
        f.create_dataset("stat", data=curves["found"])
        f.create_dataset("far", data=curves["found_far"])
        f.attrs["background_livetime"] = background.livetime
        if distance_range:  # the volume the distances fill, for p_astro (aframe-online)
            f.attrs["distance_range"] = np.asarray(distance_range, np.float64)


def _plots(run: Path, curves, fars_per_year, livetime) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = 0.5 * (SNR_BINS[:-1] + np.minimum(SNR_BINS[1:], 150.0))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    measured = False
    for far, eff in curves["efficiency_vs_snr"].items():
        if np.isfinite(eff).any():
            measured = True
            ax.plot(centres, eff, marker="o", label=f"FAR {far:g}/yr")
    rho = curves["rho"]
    ax.step([0.5, rho, 150.0], [0.0, 1.0, 1.0], where="post", color="k", linestyle="--",
            label=f"fixed threshold (SNR >= {rho:g})")  # fmt: skip
    for far, mf_rho in curves.get("mf_rho", {}).items():
        if math.isfinite(mf_rho):
            label = f"matched-filter ideal at {far:g}/yr (SNR >= {mf_rho:.2f})"
            ax.axvline(mf_rho, color="grey", linestyle=":", linewidth=1, label=label)
    ax.set(xscale="log", xlabel="network optimal SNR", ylabel="detection efficiency",
           ylim=(-0.02, 1.02), title="efficiency vs SNR")  # fmt: skip
    ax.legend()
    if not measured:
        ax.text(0.5, 0.5, f"no FAR >= 1/livetime ({livetime:.0f} s)", ha="center",
                transform=ax.transAxes)  # fmt: skip
    fig.tight_layout()
    fig.savefig(run / "efficiency.png", dpi=90)
    plt.close(fig)

    for name, key, label in (
        ("roc.png", "roc_eff", "detection efficiency"),
        ("distance.png", "roc_distance", "sensitive distance (Mpc)"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        if len(curves["roc_far"]):
            ax.step(curves["roc_far"], curves[key], where="post")
        ax.set(
            xscale="log", xlabel="false-alarm rate (1/yr)", ylabel=label, title=label + " vs FAR"
        )
        fig.tight_layout()
        fig.savefig(run / name, dpi=90)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    found = curves["found"][np.isfinite(curves["found"])]
    values = np.r_[curves["bg"], found]
    if len(values):
        edges = np.histogram_bin_edges(values, 50)
        ax.hist(curves["bg"], edges, alpha=0.6, label=f"background ({livetime:.0f} s)")
        ax.hist(found, edges, alpha=0.6, label="injections (matched)")
        ax.legend()
    ax.set(yscale="log", xlabel="event stat", title="stat distributions")
    fig.tight_layout()
    fig.savefig(run / "stats.png", dpi=90)
    plt.close(fig)


def _report(
    run: Path,
    model: str,
    data: str,
    numbers: dict[str, float],
    sources: dict[str, list[str]] | None = None,
    population: str = "",
    mf=None,
    curves: dict[str, Any] | None = None,
) -> None:
    """``report.md``: where each number comes from (model, data and their provenance, the
    population), the two references the detector is compared with, the numbers, and the plots;
    ``numbers.json``: the numbers and both references (``references.fixed_threshold``,
    ``references.matched_filter``: rho(F) per FAR, how each was obtained, the bank, the fit)."""
    import json

    from aframe_lib.utils.fs import write_bytes_atomic

    sources = sources or {}
    per_bin = _efficiency_per_snr_bin(curves or {})
    described = [
        (f"- `--{k}`: " if k in ("data", "foreground") else f"- {k}: ")
        + "; ".join(v or ["no files"])
        for k, v in sources.items()
    ]
    pop_text = ""
    if (run / "foreground" / "waveforms.hdf5").exists():
        from aframe_lib.data import provenance

        record = provenance.read(str(run / "foreground" / "waveforms.hdf5")) or {}
        pop_text = json.dumps(record.get("population"), sort_keys=True)
    lines = [
        "# aframe evaluation",
        "",
        f"Model `{model}`, background `{data}` (never the model's training or validation data: "
        "checked against the provenance `model.json` records).",
        "",
        "Where the data came from:",
        "",
        *described,
        "",
        *(
            [f"Injections: evaluate's own, population: {population}:", "", f"`{pop_text}`", ""]
            if pop_text
            else ["Injections: the external table given (`--injections`).", ""]
        ),
        *_glitch_table(numbers),
        *_snr_bin_table(per_bin),
        "| number | value |",
        "|---|---|",
        *[f"| {k} | {v:.6g} |" for k, v in numbers.items()],
        "",
        "![efficiency vs SNR](efficiency.png) ![ROC](roc.png)",
        "![distance vs FAR](distance.png) ![stats](stats.png)",
        "",
        "NaN efficiencies: that FAR is below 1/livetime, which this background cannot measure.",
        "",
        *_references_text(numbers, mf),
    ]
    write_bytes_atomic(run / "report.md", "\n".join(lines).encode())
    fixed = {k: numbers[k] for k in ("ideal_snr", "ideal_efficiency",
                                     "ideal_sensitive_distance_mpc") if k in numbers}  # fmt: skip
    references = {
        "fixed_threshold": {**fixed, "what": FIXED_REFERENCE},
        "matched_filter": None if mf is None else {**mf.to_dict(), "what": MF_REFERENCE},
    }
    clean = {k: (v if math.isfinite(v) else None) for k, v in numbers.items()}
    text = json.dumps(
        {"numbers": clean, "references": references, "efficiency_per_snr_bin": per_bin},
        indent=1,
        default=float,
    )
    write_bytes_atomic(run / "numbers.json", text.encode())


def _efficiency_per_snr_bin(curves: dict[str, Any]) -> list[dict[str, Any]]:
    """Per SNR bin: its injections and, at each FAR, the efficiency and its binomial standard
    error ``sqrt(e (1 - e) / n)`` (``None`` where the bin is empty or the FAR not measured)."""
    counts = curves.get("snr_bin_counts")
    if counts is None:
        return []
    rows = []
    for b, n in enumerate(counts):
        row: dict[str, Any] = {"snr": [float(SNR_BINS[b]), float(SNR_BINS[b + 1])],
                               "injections": int(n), "efficiency": {}, "error": {}}  # fmt: skip
        for far, eff in curves["efficiency_vs_snr"].items():
            e = float(eff[b])
            ok = n > 0 and math.isfinite(e)
            row["efficiency"][f"{far:g}"] = e if ok else None
            row["error"][f"{far:g}"] = math.sqrt(e * (1 - e) / n) if ok else None
        rows.append(row)
    return rows


def _snr_bin_table(rows: list[dict[str, Any]]) -> list[str]:
    """The report's efficiency-per-SNR-bin table (efficiency +- binomial standard error)."""
    if not rows:
        return []
    fars = list(rows[0]["efficiency"])
    lines = [
        "Efficiency per bin of network optimal SNR (the `snr` column), +- its binomial "
        "standard error sqrt(e (1 - e) / n):",
        "",
        "| SNR | injections | " + " | ".join(f"FAR {f}/yr" for f in fars) + " |",
        "|---|---|" + "---|" * len(fars),
    ]
    for row in rows:
        lo, hi = row["snr"]
        cells = [
            "-" if row["efficiency"][f] is None
            else f"{row['efficiency'][f]:.3f} +- {row['error'][f]:.3f}"
            for f in fars
        ]  # fmt: skip
        lines.append(f"| {lo:g}-{hi:g} | {row['injections']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


FIXED_REFERENCE = (
    "finds exactly the injections whose optimal network SNR (in "
    "each injection's own local PSD) is at least ideal_snr, whatever the false-alarm rate; not "
    "an upper bound (a search at a low FAR can find quieter signals)"
)
MF_REFERENCE = (
    "finds exactly the injections whose optimal network SNR (in each "
    "injection's own local PSD) is at least rho(F), the network-SNR threshold at which a "
    "matched-filter search of the same held-out noise has the false-alarm rate F"
)


def _references_text(numbers: dict[str, float], mf) -> list[str]:
    """The report's section on the two references."""
    from aframe_lib.search.metrics import SECONDS_PER_YEAR

    fixed = numbers.get("ideal_snr", math.nan)
    lines = [
        "## References",
        "",
        f"- **Fixed-threshold reference** (`ideal_*`, SNR >= {fixed:g}): {FIXED_REFERENCE}.",
        "  fraction_of_ideal_distance is the sensitive distance at a FAR over this reference's.",
        f"- **Matched-filter ideal** (`mf_ideal_*`): {MF_REFERENCE}.",
    ]
    if mf is None:
        return [*lines, "  Not computed here (`--mf_budget_s 0`); pass e.g. "
                "`--mf_budget_s 600` (CPU seconds).", ""]  # fmt: skip
    fit = mf.fit
    lines += [
        f"  Statistic: {mf.statistic}.",
        f"  Template bank: {mf.bank['description']}.",
        f"  Background: {mf.livetime:.4g} s of timeslide livetime from {mf.filtered_s:.0f} s "
        f"filtered, {mf.cpu_s:.0f} CPU s of a {mf.budget_s:g} s budget (`--mf_budget_s`).",
        f"  Tail fit: ln FAR/s = {fit['intercept']:.4g} + ({fit['slope']:.4g}) rho^2 on the "
        f"loudest {fit['num_events']} events (rho {fit['rho_range'][0]:.3g}-"
        f"{fit['rho_range'][1]:.3g}); residual on them {fit['rms_dex']:.3f} dex rms, "
        f"{fit['max_dex']:.3f} dex at most.",
        "",
        "| FAR (1/yr) | rho(F) | how | mf ideal efficiency | mf ideal distance (Mpc) | "
        "detector distance (Mpc) | fraction of mf ideal | fit - measured rho |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for far_s, rho, how, check in zip(mf.fars_per_s, mf.rho, mf.how, mf.fit_check, strict=True):
        far = far_s * SECONDS_PER_YEAR
        key = f"{far:g}_per_yr"
        lines.append(
            f"| {far:g} | {rho:.3f} | {how} | "
            f"{numbers.get(f'mf_ideal_efficiency_at_far_{key}', math.nan):.4g} | "
            f"{numbers.get(f'mf_ideal_sensitive_distance_mpc_at_far_{key}', math.nan):.4g} | "
            f"{numbers.get(f'sensitive_distance_mpc_at_far_{key}', math.nan):.4g} | "
            f"{numbers.get(f'fraction_of_mf_ideal_distance_at_far_{key}', math.nan):.4g} | "
            f"{'' if check is None else f'{check:+.3f}'} |"
        )
    return [*lines, ""]


def _glitch_table(numbers: dict[str, float]) -> list[str]:
    """The report's table of sensitive distances with and without glitches (when measured)."""
    fars = [k[len("distance_ratio_glitches_at_far_") : -len("_per_yr")]
            for k in numbers if k.startswith("distance_ratio_glitches_at_far_")]  # fmt: skip
    if not fars:
        return []
    rows = []
    for far in fars:
        key = f"sensitive_distance_mpc_at_far_{far}_per_yr"
        rows.append(
            f"| {far} | {float(far) / 12:.4g} | {numbers[key]:.4g} | "
            f"{numbers[key + '_without_glitches']:.4g} | "
            f"{numbers[f'distance_ratio_glitches_at_far_{far}_per_yr']:.4g} |"
        )
    return [
        "Sensitive distance with and without glitches: the same noise (seed stream, PSDs,",
        "injections) searched once with its glitches and once without them",
        "(`without_glitches/`):",
        "",
        "| FAR (1/yr) | FAR (1/month) | distance with glitches (Mpc) | without glitches (Mpc) "
        "| ratio |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def main(args: list[str] | None = None) -> None:
    """``aframe-train evaluate ...`` (``args`` are the arguments after ``evaluate``)."""
    from aframe_lib.search.settings import settings_cli

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings_cli(evaluate, args, "aframe-train evaluate")
