"""Timing calibration: where, relative to coalescence, an exported network's response peaks.

The search stamps each output with the GPS time its kernel ends and reports an event at the
interpolated peak of the integrated output minus an offset. Where in the kernel a network
fires is learned, not designed, so the offset is measured: :func:`calibrate_timing` injects
signals at known times into real background (random sky positions, network SNRs uniform in
``snr_range``, each at a random phase between inference steps), runs the search on it, and
takes for each injection the loudest event within reach of it (counted only when louder than 95 %
of the events away from any injection; fewer than half counted is an error: an untrained network
has no timing to calibrate). With ``d`` the peak's stamp time minus the injection time:

- ``offset = median(d) - (n - 1) / (2 r)``: the centre of the raw (un-integrated) response, so
  it holds for any ``integration_length`` at search time;
- ``spread``: the standard deviation of ``d``; ``var``: the 99th percentile of
  ``|d - median(d)|``, the matching tolerance the search then writes with each event;
- ``var_bins`` (with ``var_injections``): loud injections time differently from the SNR 8-20
  ones where alerts live, so a second, independent set at SNR 8-20 calibrates both where
  events sit and how far: ``offset`` is then the median ``d`` of those of its injections the
  network responds to (``offset_snr_range`` says which set gave it; ``loud_offset`` keeps the
  loud set's), and ``var`` per bin of the event stat is such that in each bin at least 99 % of
  its injections lie within ``var`` of their event (:func:`var_by_stat`); the search then
  writes each event's ``var`` from its stat's bin.

Why the offset comes from SNR 8-20: a network's integrated output can peak later for quiet
signals than for loud ones, and the median of a few loud injections at random phases of the
output grid is itself uncertain by a fraction of a step; either puts events outside their own
``var`` where alerts live (measured on the bbh-cpu models: docs/results, "Timing calibrated where
alerts live").

:func:`calibrate_exported` does this for an exported model on a background directory with a
waveform file (the :class:`~aframe_lib.callbacks.ExportModel` callback runs it after export
and stores the result as ``timing`` in ``model.json``).
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .strain import Span

if TYPE_CHECKING:
    from .pipeline import Search

logger = logging.getLogger(__name__)


def _psd(strain: torch.Tensor, sample_rate: float) -> torch.Tensor:
    from ml4gw.transforms import SpectralDensity

    return SpectralDensity(sample_rate, 2.0, average="median")(strain.double())


def _measure(
    search: Search,
    spans: Sequence[Span],
    cross: np.ndarray,
    plus: np.ndarray,
    reference_index: int,
    num_injections: int,
    snr_range: tuple[float, float],
    spacing: float | None,
    highpass: float | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Inject, search and match (see :func:`calibrate_timing`).

    Returns:
        ``(d, stat, cut)``: per injection, the loudest event's stamp time minus the injection
        time (NaN: no event within reach) and its stat; and the 95th percentile of the stats
        of events away from any injection.
    """
    from aframe_lib.data.background import background_fname, write_background
    from aframe_lib.data.injection import Injector

    from .strain import find_spans

    rate, ifos = search.sample_rate, search.ifos
    step = 1.0 / search.rate
    after = (cross.shape[-1] - reference_index) / rate
    reach = search.kernel_length + search.fduration + search.integration_size * step
    # events cluster within ``reach`` here; a gap of ``after + 2`` s between one injection's
    # reach and the next leaves noise events to compare the injections' stats with
    spacing = spacing or (3 * reach + after + 2.0)
    injector = Injector(ifos, rate, highpass)
    rng = np.random.default_rng(seed)
    times, used = [], 0
    with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for span in spans:
            first = span.t0 + search.min_duration + 1.0
            t = np.arange(first, span.t0 + span.duration - after - reach, spacing)
            t = t[: num_injections - used] + rng.uniform(0, step, len(t[: num_injections - used]))
            if not len(t):
                continue
            end = min(span.size, int(np.ceil((t[-1] + after + reach + 1.0 - span.t0) * rate)))
            strain = torch.as_tensor(span.read(0, end), dtype=torch.float64)
            rows = np.arange(used, used + len(t)) % len(cross)
            responses = injector.project(
                torch.as_tensor(cross[rows], dtype=torch.float64),
                torch.as_tensor(plus[rows], dtype=torch.float64),
            )
            target = torch.as_tensor(rng.uniform(*snr_range, len(t)))
            responses, _ = injector.rescale(responses, _psd(strain, rate), target)
            # on the sample grid: the truth is the sample where the reference lands
            starts = np.round((t - span.t0) * rate).astype(int) - reference_index
            for response, start in zip(responses, starts, strict=True):
                lo, hi = max(start, 0), min(start + response.shape[-1], end)
                strain[:, lo:hi] += response[:, lo - start : hi - start]
            times.append(span.t0 + (starts + reference_index) / rate)
            write_background(
                str(Path(tmp, background_fname(span.t0, end / rate))),
                dict(zip(ifos, strain.numpy(), strict=True)),
                span.t0,
                rate,
            )
            used += len(t)
            if used >= num_injections:
                break
        if not times:
            raise ValueError(
                f"no calibration injection fits: spans of {max(s.duration for s in spans):g} s "
                f"at most, the search needs {search.min_duration:g} s before the first"
            )
        injected = find_spans(tmp, ifos, rate, search.min_duration)
        saved = search.threshold, search.cluster_size
        search.threshold, search.cluster_size = None, max(1, round(reach * search.rate))
        try:
            events = search.run(injected, progress=False, desc="timing calibration").events
        finally:
            search.threshold, search.cluster_size = saved
    truth = np.concatenate(times)
    stamps = events.time + search.time_offset  # the interpolated peaks' stamp times
    d, stat = np.full(len(truth), np.nan), np.full(len(truth), -np.inf)
    quiet = np.ones(len(stamps), dtype=bool)  # events with no injection within reach
    for i, t in enumerate(truth):
        near = np.flatnonzero((stamps >= t) & (stamps <= t + reach))
        quiet &= (stamps < t - reach) | (stamps > t + 2 * reach)
        if len(near):
            best = near[np.argmax(events.stat[near])]
            d[i], stat[i] = stamps[best] - t, events.stat[best]
    noise = events.stat[quiet]
    cut = float(np.quantile(noise, 0.95)) if len(noise) >= 5 else -np.inf
    return d, stat, cut


def var_by_stat(
    errors: np.ndarray, stat: np.ndarray, quantile: float = 0.95, bins: int = 4,
    min_per_bin: int = 8,
) -> dict[str, Any]:  # fmt: skip
    """``var`` per bin of the event statistic: in each bin, the smallest tolerance within
    which at least ``quantile`` of the injections' events lie.

    Args:
        errors: each injection's event time minus its true time (s), after the offset.
        stat: the stat of each injection's event.
        quantile: the fraction each bin's ``var`` must cover.
        bins: most bins (equal numbers of injections; fewer when they would hold fewer
            than ``min_per_bin``).
        min_per_bin: fewest injections per bin.

    Returns:
        ``{"edges": [stat edges between bins], "var": [one per bin], "quantile"}``: an event
        with stat below ``edges[0]`` takes ``var[0]`` and so on (:func:`lookup_var`).
    """
    errors, stat = np.abs(np.asarray(errors, float)), np.asarray(stat, float)
    n = max(1, min(bins, len(stat) // min_per_bin))
    order = np.argsort(stat, kind="stable")
    groups = np.array_split(order, n)
    edges = [float((stat[a[-1]] + stat[b[0]]) / 2) for a, b in itertools.pairwise(groups)]
    var = [float(np.quantile(errors[g], quantile, method="higher")) for g in groups]
    return {"edges": edges, "var": var, "quantile": quantile}


def lookup_var(var_bins: dict[str, Any], stat: np.ndarray) -> np.ndarray:
    """Each event's ``var`` from the bins of :func:`var_by_stat`."""
    index = np.searchsorted(np.asarray(var_bins["edges"], float), stat, side="right")
    return np.asarray(var_bins["var"], float)[index]


def calibrate_timing(
    search: Search,
    spans: Sequence[Span],
    cross: np.ndarray,
    plus: np.ndarray,
    reference_index: int,
    num_injections: int = 16,
    snr_range: tuple[float, float] = (20.0, 40.0),
    spacing: float | None = None,
    highpass: float | None = None,
    seed: int = 0,
    var_injections: int = 0,
    var_snr_range: tuple[float, float] = (8.0, 20.0),
    var_quantile: float = 0.99,
) -> dict[str, Any]:
    """Measure ``search``'s response offset and timing spread on injections at known times.

    Args:
        search: the search (its model, preprocessing, inference rate and integration).
        spans: background to inject into (model-rate spans, read whole: keep them short).
        cross: cross polarisations ``(N, T)`` at the search's sample rate (used cyclically).
        plus: plus polarisations, like ``cross``.
        reference_index: sample of each row at the reference time (coalescence).
        num_injections: most injections.
        snr_range: network SNRs drawn uniformly from it (loud: the network must fire).
        spacing: seconds between injections; ``None``: three times the reach of a response
            (kernel + whitening filter + integration) plus the signal after the reference
            time plus 2 s.
        highpass: Hz below which nothing counts towards the SNRs.
        seed: seed of the times, sky positions and SNRs.
        var_injections: injections (other ones, seed ``seed + 1``) at network SNRs in
            ``var_snr_range``, where alerts live, calibrating the ``offset`` (the median of
            those the network responds to, when at least a quarter and 8 do) and ``var`` per
            bin of the event stat (:func:`var_by_stat`): ``var_bins``; 0: none, the loud
            injections' offset and one ``var`` for all events.
        var_snr_range: network SNRs of those injections.
        var_quantile: the fraction of them each bin's ``var`` covers.

    Returns:
        ``{"offset", "offset_snr_range", "spread", "var", "num_injections", "num_found",
        "inference_sampling_rate", "integration_length", "snr_range"}`` (seconds where
        relevant; ``spread``, ``var`` and the counts are the loud set's), and ``var_bins``
        (with ``snr_range``, ``num_injections``, ``num_matched`` and ``num_responding``) when
        ``var_injections`` > 0, with ``loud_offset`` when the offset is theirs.
    """
    d, stat, cut = _measure(
        search, spans, cross, plus, reference_index, num_injections, snr_range, spacing,
        highpass, seed,
    )  # fmt: skip
    # an injection counts when the network responds to it: louder than 95 % of noise events
    responds = np.isfinite(d) & (stat > cut)
    if responds.sum() < max(1, len(d) / 2):
        raise ValueError(
            f"the network responds to only {responds.sum()} of {len(d)} calibration "
            f"injections at network SNR {snr_range[0]:g}-{snr_range[1]:g} (louder than 95 % of "
            "its noise events): its timing cannot be calibrated; train it further, or raise "
            "snr_range"
        )
    found = d[responds]
    centre = float(np.median(found))
    half = (search.integration_size - 1) / (2 * search.rate)  # the integration's delay
    result = {
        "offset": centre - half,
        "offset_snr_range": [float(x) for x in snr_range],
        "spread": float(np.std(found)),
        "var": float(np.quantile(np.abs(found - centre), 0.99)),
        "num_injections": len(d),
        "num_found": len(found),
        "inference_sampling_rate": search.rate,
        "integration_length": search.integration_size / search.rate,
        "snr_range": [float(x) for x in snr_range],
    }
    if var_injections > 0:
        d, stat, cut = _measure(
            search, spans, cross, plus, reference_index, var_injections, var_snr_range,
            spacing, highpass, seed + 1,
        )  # fmt: skip
        matched = np.isfinite(d)  # what a scorer matches: the loudest event within reach
        # where alerts live, events sit where these injections' do: the offset is theirs
        # (of those the network responds to, as for the loud set; too few: the loud one)
        quiet = matched & (stat > cut)
        if quiet.sum() >= max(8, len(d) / 4):
            result["loud_offset"] = result["offset"]
            centre = float(np.median(d[quiet]))
            result["offset"] = centre - half
            result["offset_snr_range"] = [float(x) for x in var_snr_range]
        else:
            logger.warning(
                "the network responds to only %d of %d timing injections at SNR %s: their "
                "offset is not measured, the loud injections' is used",
                quiet.sum(), len(d), var_snr_range,
            )  # fmt: skip
        if matched.sum() >= 2:
            bins = var_by_stat(d[matched] - centre, stat[matched], var_quantile)
            result["var_bins"] = {
                **bins, "snr_range": [float(x) for x in var_snr_range],
                "num_injections": len(d), "num_matched": int(matched.sum()),
                "num_responding": int(quiet.sum()),
            }  # fmt: skip
    logger.info(
        "timing calibration on %d injections: response offset %.4f s, spread %.4f s, var %.4f s",
        len(found),
        result["offset"],
        result["spread"],
        result["var"],
    )
    if "var_bins" in result:
        logger.info("var per stat bin (SNR %s): %s", var_snr_range, result["var_bins"])
    return result


def calibrate_exported(
    model: str,
    data_dir: str,
    waveforms: str | None = None,
    num_injections: int = 16,
    snr_range: tuple[float, float] = (20.0, 40.0),
    max_duration: float = 4096.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    write: bool = True,
    var_injections: int = 0,
    var_quantile: float = 0.99,
    **overrides: Any,
) -> dict[str, Any]:
    """Calibrate an exported model's timing on the latest background of ``data_dir``.

    Args:
        model: exported ``model.pt`` (``model.json`` beside it gives the preprocessing).
        data_dir: background directory (the project's layout, local).
        waveforms: waveform file; ``None``: ``val_waveforms.hdf5`` (else ``waveforms.hdf5``)
            in ``data_dir``.
        num_injections: most injections.
        snr_range: network SNRs of the injections.
        max_duration: seconds of background used at most (the latest spans).
        seed: seed of the injections.
        device: torch device; ``None`` picks a GPU when visible.
        write: store the result as ``timing`` in ``model.json``.
        var_injections: injections at SNR 8-20 calibrating ``var`` per stat bin (see
            :func:`calibrate_timing`); 0: none. Each takes ~13 s of background (its reach
            and a gap), so ``max_duration`` bounds them.
        var_quantile: the fraction of them each bin's ``var`` covers.
        overrides: search settings (e.g. ``inference_sampling_rate``), as for
            ``Search.from_exported``.

    Returns:
        The calibration (see :func:`calibrate_timing`).
    """
    from aframe_lib.data.waveforms import read_waveforms

    from .pipeline import Search
    from .strain import find_spans

    search = Search.from_exported(model, device=device, **overrides)
    if waveforms is None:
        val = Path(data_dir, "val_waveforms.hdf5")
        waveforms = str(val if val.exists() else Path(data_dir, "waveforms.hdf5"))
    wf = read_waveforms(waveforms, sample_rate=search.sample_rate)
    spans = find_spans(data_dir, search.ifos, search.sample_rate, search.min_duration)
    chosen, total = [], 0.0
    for span in reversed(spans):  # the latest data: validation files come last
        span = span.sub(0, min(span.size, round((max_duration - total) * span.sample_rate)))
        if span.duration >= search.min_duration:
            chosen.append(span)
            total += span.duration
        if total >= max_duration:
            break
    timing = calibrate_timing(
        search,
        chosen[::-1],
        np.asarray(wf.cross),
        np.asarray(wf.plus),
        round(wf.coalescence_time * search.sample_rate),
        num_injections=num_injections,
        snr_range=snr_range,
        highpass=search.whitener.whitener.highpass,
        seed=seed,
        var_injections=var_injections,
        var_quantile=var_quantile,
    )
    if write:
        update_metadata(model, {"timing": timing})
    return timing


def update_metadata(model: str, fields: dict[str, Any]) -> None:
    """Add ``fields`` to the ``model.json`` beside ``model`` (atomically)."""
    import json

    from aframe_lib.utils import fs

    stem = str(model)[: -len(".pt")] if str(model).endswith(".pt") else str(model)
    filesystem, inner = fs.filesystem(stem + ".json")
    with filesystem.open(inner, "r") as f:
        info = json.load(f)
    info.update(fields)
    fs.write_bytes_atomic(stem + ".json", json.dumps(info, indent=2, default=str).encode())
