"""The search: an exported model run over spans of long strain, chunk by chunk.

For each span (see :mod:`.strain`): read chunks of strain (each with the data its windows'
PSDs need), whiten every window at ``inference_sampling_rate`` Hz with the model's PSD policy
(:class:`.whitening.StreamingWhitener`; the policy is read from ``model.json``, the one training
used), score the windows in batches (:mod:`.backends`: TorchScript on the device, or
onnxruntime on a CPU while the next batch is whitened), then integrate, find local maxima and
cluster (:mod:`.events`). Output ``k`` of a span is stamped with the GPS time its kernel ends.

Event times: each peak of the integrated output is placed between inference steps by parabolic
interpolation (:func:`.events.peak_offsets`). The network responds while coalescence sits inside
the kernel, so the integrated output peaks ``offset + (n - 1) / (2 r)`` seconds after
coalescence (``n`` outputs integrated at ``r`` Hz), ``offset`` the centre of the raw response.
When ``model.json`` holds a ``timing`` calibration (:mod:`.calibration`, run at export on
injections at known times), ``offset`` and ``var`` are the measured ones (``var`` covers 99 % of
the calibration injections' time errors; at least a quarter step; with ``var_bins``, the
``offset`` is that of the SNR 8-20 injections and each event gets the ``var`` of its stat's
bin, calibrated at SNR 8-20). Otherwise ``offset`` is
where training put coalescence, ``(kernel_length - left_pad + right_pad) / 2``, and ``var`` half
the coalescence range, ``(kernel_length - left_pad - right_pad) / 2`` (at least one step).

Livetime: each integrated output stands for ``1 / inference_sampling_rate`` seconds, so a span
contributes ``(number of integrated outputs) / inference_sampling_rate`` seconds. Windows start
at the span's first sample (the opening ``psd.length`` seconds are whitened with the PSD of the
data that follows), so only ``fduration / 2`` at each end of a span and the first
``integration_length`` seconds of outputs are not searched.

Short gaps: a span that starts at most ``psd.length`` seconds after the previous one (same
IFOs, rate and shifts) carries its whitening over the gap (:meth:`Search.link`, which
:meth:`Search.run` applies): the last :attr:`Search.carry_size` samples of the previous span
are put before it (its ``prior``) and the span is searched as the continuation of that strain,
so its first windows are whitened with PSDs of the data just before them (the gap closed up),
exactly as windows later in a span are, not with the PSD of the ``psd.length`` seconds that
follow its start. No window straddles the gap: windows still start at the span's first sample.
Online, this is what lets the service score the seconds after a dropped frame at once rather
than ``psd.length`` seconds later. After a longer gap whitening restarts as above.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .backends import Network, describe, load_network
from .checkpoint import SpanCheckpoint
from .events import Events, find_events, integrate, peak_offsets
from .settings import SearchSettings
from .strain import Span
from .whitening import PsdPolicy, StreamingWhitener

logger = logging.getLogger(__name__)


def best_device() -> torch.device:
    """CUDA when a GPU is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class SearchResult:
    """What a search returns.

    Args:
        events: the events found.
        livetime: seconds searched (see the module docstring).
        strain_seconds: seconds of strain read (per IFO, summed over spans).
        wall_seconds: wall-clock seconds the search took.
    """

    events: Events
    livetime: float
    strain_seconds: float
    wall_seconds: float

    @property
    def realtime_factor(self) -> float:
        """Seconds of strain analysed per wall-clock second."""
        return self.strain_seconds / max(self.wall_seconds, 1e-9)


class _Progress:
    """tqdm when installed, else a line on stderr every 10%."""

    def __init__(self, total: float, enabled: bool, desc: str) -> None:
        self.total, self.done, self.enabled, self.desc = total, 0.0, enabled, desc
        self.bar, self.next_report = None, 0.1
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=round(total), desc=desc, unit="s", file=sys.stderr)
            except ImportError:
                pass

    def update(self, seconds: float) -> None:
        self.done += seconds
        if self.bar is not None:
            self.bar.update(round(self.done) - self.bar.n)
        elif self.enabled and self.done >= self.next_report * self.total:
            print(f"{self.desc}: {100 * self.done / self.total:.0f}%", file=sys.stderr)
            self.next_report = math.floor(10 * self.done / self.total + 1) / 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Search:
    """Run a network over long strain and turn its outputs into events.

    Args:
        model: maps whitened strain ``(batch, num_ifos, kernel_size)`` to scores ``(batch, 1)``
            (an exported model, TorchScript or eager), or a :class:`.backends.Network`
            (:meth:`from_exported` picks one: ``backend``).
        ifos: IFO codes, in the model's channel order.
        sample_rate: Hz, the model's.
        kernel_length: seconds the model sees.
        fduration: whitening filter length (s), as in training.
        psd: the PSD policy (:class:`~aframe_lib.data.psd.PsdPolicy` or its dict) training
            used; ``None``: the default policy. :meth:`from_exported` reads it from the model.
        highpass: Hz, as in training; ``None``: no highpass.
        lowpass: Hz, as in training; ``None``: none.
        left_pad: seconds after the kernel start where training put the earliest coalescence.
        right_pad: seconds before the kernel end where training put the latest coalescence.
        settings: how the search runs (:class:`~.settings.SearchSettings`: inference rate,
            batch size, integration, clustering, threshold, ``var``, chunk length, device);
            ``None``: the defaults. ``device`` ``None`` means :func:`best_device`; ``var``
            ``None``: see the module docstring.
        timing: the network's calibrated response (``model.json`` ``timing``: ``offset``,
            seconds from coalescence to the centre of the raw response, and ``var``); it
            replaces the pad-based offset and ``var`` (see the module docstring).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        ifos: Sequence[str],
        sample_rate: float,
        kernel_length: float,
        fduration: float,
        psd: PsdPolicy | dict | None = None,
        highpass: float | None = None,
        lowpass: float | None = None,
        left_pad: float = 0.0,
        right_pad: float = 0.0,
        settings: SearchSettings | None = None,
        timing: dict[str, Any] | None = None,
    ) -> None:
        self.search_settings = settings = settings or SearchSettings()
        inference_sampling_rate, batch_size = settings.inference_sampling_rate, settings.batch_size
        integration_length, cluster_window = settings.integration_length, settings.cluster_window
        threshold, var, device = settings.threshold, settings.var, settings.device
        chunk_length = settings.chunk_length
        stride = sample_rate / inference_sampling_rate
        if not math.isclose(stride, round(stride)) or round(stride) < 1:
            raise ValueError(
                f"inference_sampling_rate={inference_sampling_rate} Hz must divide the sample "
                f"rate {sample_rate} Hz (a whole number of samples between windows)"
            )
        self.device = torch.device(device) if device is not None else best_device()
        if isinstance(model, Network):
            self.network = model
        else:
            self.network = Network(model, self.device)
        self.ifos = list(ifos)
        self.sample_rate = sample_rate
        self.kernel_length = kernel_length
        self.fduration = fduration
        self.rate = inference_sampling_rate
        self.batch_size = batch_size
        self.integration_size = max(1, round(integration_length * inference_sampling_rate))
        self.cluster_size = max(1, round(cluster_window * inference_sampling_rate))
        self.threshold = threshold
        self.chunk_windows = max(1, round(chunk_length * inference_sampling_rate))
        self.whitener = StreamingWhitener(
            sample_rate,
            kernel_length,
            fduration,
            psd if psd is not None else PsdPolicy(),
            round(stride),
            highpass=highpass,
            lowpass=lowpass,
        ).to(self.device)
        centre = (kernel_length - left_pad + right_pad) / 2
        spread = (kernel_length - left_pad - right_pad) / 2
        floor = 1.0 / inference_sampling_rate
        self.timing = dict(timing) if timing else None
        if self.timing:  # calibrated on injections at export (aframe_lib.search.calibration)
            centre, spread = float(self.timing["offset"]), float(self.timing["var"])
            floor /= 4  # peaks are interpolated between steps
        self.time_offset = centre + (self.integration_size - 1) / (2 * inference_sampling_rate)
        self.var = var if var is not None else max(spread, floor)
        # var per bin of the stat, calibrated at SNR 8-20 (unless a var is given)
        bins = (self.timing or {}).get("var_bins")
        self.var_bins = None
        if var is None and bins:
            self.var_bins = {**bins, "var": [max(float(v), floor) for v in bins["var"]]}

    @classmethod
    def from_exported(
        cls, path: str, settings: SearchSettings | None = None, **overrides: Any
    ) -> Search:
        """A search with the model at ``path`` and the preprocessing stored in its ``.json``.

        ``overrides`` (any constructor argument but ``model`` and ``settings``) win over the
        stored preprocessing; :class:`~.settings.SearchSettings` fields among them (e.g.
        ``device="cpu"``, ``backend="onnx"``) replace those of ``settings``, and ``None``
        values are ignored. ``settings.backend`` (``auto``, ``torchscript`` or ``onnx``;
        :mod:`.backends`) picks what runs the network: ``auto`` is onnxruntime on
        ``model.onnx`` on a CPU when it is there and agrees with ``model.pt``.
        The PSD policy is the one training used (``model.json``'s ``psd``; for models exported
        before it was stored, ``data.psd_length``/``data.fftlength`` with a fresh PSD per
        window, which is how those models were trained).
        """
        from aframe_lib.export import load_exported

        model, info = load_exported(path)
        data = info.get("data") or {}
        needed = ("ifos", "sample_rate", "kernel_length", "fduration")
        missing = [k for k in needed if k not in data and k not in overrides]
        if missing:
            raise ValueError(
                f"{path}: its metadata (model.json 'data') lacks {missing}; export the model with "
                "aframe_lib.callbacks.ExportModel or pass them explicitly"
            )
        kwargs = {k: data[k] for k in needed if k in data}
        for key in ("highpass", "lowpass", "left_pad", "right_pad"):
            if data.get(key) is not None:
                kwargs[key] = data[key]
        kwargs["psd"] = info.get("psd") or {
            "length": data.get("psd_length") or 8.0,
            "fftlength": data.get("fftlength"),
            "cadence": 0.0,
        }
        if info.get("timing") and "offset" in info["timing"]:
            kwargs["timing"] = info["timing"]
            if "var_bins" in info["timing"] and "offset_snr_range" not in info["timing"]:
                logger.warning(
                    "%s: its timing calibration predates 2026-12-06: the offset is that of "
                    "the loud (SNR 20-40) injections, which put the bbh-cpu model's SNR 8-20 "
                    "events ~0.05 s late and outside their own var; recalibrate it (no "
                    "retraining): python -c \"from aframe_lib.search.calibration import "
                    "calibrate_exported; calibrate_exported('%s', DATA_DIR, var_injections=192)\"",
                    path, path,
                )  # fmt: skip
        fields, overrides = SearchSettings.split(
            {k: v for k, v in overrides.items() if v is not None}
        )
        kwargs.update(overrides)
        settings = dataclasses.replace(settings or SearchSettings(), **fields)
        device = torch.device(settings.device) if settings.device is not None else best_device()
        shape = (len(kwargs["ifos"]), round(kwargs["kernel_length"] * kwargs["sample_rate"]))
        network = load_network(path, model, device, shape, settings.backend)
        return cls(network, settings=settings, **kwargs)

    @property
    def min_duration(self) -> float:
        """Seconds a span needs for one integrated output."""
        w = self.whitener
        size = max(w.min_size, w.window_size + (self.integration_size - 1) * w.stride)
        return size / self.sample_rate

    @property
    def min_duration_desc(self) -> str:
        return (
            f"the longer of psd.length = {self.psd_length} s and kernel_length + fduration + "
            f"integration = {self.kernel_length} + {self.fduration} + "
            f"{(self.integration_size - 1) / self.rate:g} s"
        )

    @property
    def psd_length(self) -> float:
        """Seconds of strain per PSD estimate (the model's policy)."""
        return self.whitener.policy.length

    @property
    def carry_size(self) -> int:
        """Samples of strain before a short gap put before the span after it (:meth:`link`):
        ``psd.length`` rounded up to whole inference strides and PSD cadences, so that the
        span's windows and PSDs fall on the grid they would have in one unbroken stream."""
        w = self.whitener
        step = math.lcm(w.stride, w.cadence)
        return -(-w.psd_size // step) * step

    def link(self, spans: Iterable[Span]) -> list[Span]:
        """``spans`` with the strain before each short gap as the ``prior`` of the span after
        it (see the module docstring): a span starting ``0`` to ``psd.length`` seconds after
        the end of the last span with the same IFOs, rate and shifts, when that one holds at
        least :attr:`carry_size` samples."""
        out: list[Span] = []
        last: dict[tuple, Span] = {}
        e = self.carry_size
        for span in spans:
            key = (span.ifos, span.sample_rate, tuple(span.shifts))
            prev = last.get(key)
            if span.prior is None and prev is not None and prev.size >= e:
                gap = span.t0 - (prev.t0 + prev.duration)
                tol = 0.5 / span.sample_rate
                if -tol <= gap <= self.psd_length + tol:
                    span = dataclasses.replace(span, prior=prev.sub(prev.size - e, prev.size))
            out.append(span)
            last[key] = span
        return out

    @staticmethod
    def _carried(span: Span) -> int:
        return span.prior.size if span.prior is not None else 0

    def num_windows(self, span: Span) -> int:
        """Windows searched in ``span`` (each starting at one of its samples)."""
        e = self._carried(span)
        return max(0, self.whitener.num_windows(e + span.size) - e // self.whitener.stride)

    def livetime_of(self, span: Span) -> float:
        """Seconds of ``span`` that the search covers (see the module docstring)."""
        num = self.num_windows(span) - self.integration_size + 1
        return max(0, num) / self.rate

    def _load(self, span: Span, start: int, stop: int) -> torch.Tensor:
        """Samples ``[start, stop)`` of the span's stream: its ``prior`` then the span."""
        e = self._carried(span)
        if not e:
            return span.load(start, stop, self.device)  # resampled there if need be
        parts = []
        if start < e:
            parts.append(span.prior.load(start, min(stop, e), self.device))
        if stop > e:
            parts.append(span.load(max(start - e, 0), stop - e, self.device))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    @torch.no_grad()
    def outputs(self, span: Span, progress: _Progress | None = None) -> tuple[np.ndarray, ...]:
        """Raw network outputs of ``span``: ``(times, scores)``, one per inference step."""
        with self.network.scoring():
            return self._outputs(span, progress)

    def _outputs(self, span: Span, progress: _Progress | None) -> tuple[np.ndarray, ...]:
        w = self.whitener
        num = self.num_windows(span)
        n0 = self._carried(span) // w.stride  # windows of the stream starting in the prior
        scores = np.empty(num, np.float32)
        read = self._carried(span)  # progress counts the span's own samples
        # batches scored in the background while the next ones are whitened; kept in flight
        # across chunks, so reading a chunk overlaps the scoring of the last one's batches
        pending: list[tuple[int, int, Any]] = []
        for first in range(0, num, self.chunk_windows):
            last = min(first + self.chunk_windows, num)
            start, stop = w.read_range(first + n0, last + n0)
            X = self._load(span, start, stop)
            k = first
            for batch in w.batches(X, self.batch_size, first + n0, last + n0, start):
                pending.append((k, len(batch), self.network.submit(batch)))
                k += len(batch)
                while len(pending) > self.network.max_pending:
                    i, n, result = pending.pop(0)
                    scores[i : i + n] = result()
            if progress is not None:
                progress.update(max(0, stop - read) / self.sample_rate)
            read = max(read, stop)
        for i, n, result in pending:
            scores[i : i + n] = result()
        if progress is not None:
            progress.update(max(0, self._carried(span) + span.size - read) / self.sample_rate)
        times = span.t0 + (w.kernel_end + np.arange(num) * w.stride) / self.sample_rate
        return times, scores

    def events_of(self, times: np.ndarray, scores: np.ndarray, span: Span) -> Events:
        """Integrate, find maxima and cluster the outputs of one span."""
        stat = integrate(scores, self.integration_size)
        times = times[self.integration_size - 1 :]
        idx = find_events(stat, self.threshold, self.cluster_size)
        shift = np.tile(np.asarray(span.shifts, np.float64), (len(idx), 1))
        peak = times[idx] + peak_offsets(stat, idx) / self.rate  # between inference steps
        if self.var_bins is not None:
            from .calibration import lookup_var

            var = lookup_var(self.var_bins, stat[idx])
        else:
            var = np.full(len(idx), self.var)
        return Events(peak - self.time_offset, stat[idx], var, shift)

    def run(
        self,
        spans: Iterable[Span],
        progress: bool = True,
        desc: str = "search",
        checkpoint: str | os.PathLike | None = None,
        key: str = "",
    ) -> SearchResult:
        """Search every span; events are clustered within each span (spans never mix).

        Args:
            spans: what to search.
            progress: show a progress bar.
            desc: its label.
            checkpoint: a directory where each span's events are saved as it ends
                (:class:`SpanCheckpoint`): a rerun after a kill or crash loads the spans
                already searched and searches only the rest. ``None``: nothing is saved.
            key: what else the saved events depend on (e.g. a digest of the model's files);
                with :meth:`settings`, it must match for saved events to be reused.
        """
        spans = self.link(spans)
        total = sum(s.duration for s in spans)
        bar = _Progress(total, progress, desc)
        store = None
        if checkpoint is not None:
            # the backend by name: its thread count does not change the scores
            settings = {**self.settings(), "backend": self.network.name}
            fingerprint = {"key": key, "settings": settings, "psd": self.whitener.policy.to_dict()}
            store = SpanCheckpoint(checkpoint, fingerprint)
        start = time.perf_counter()
        parts, livetime, saved_wall, resumed = [], 0.0, 0.0, 0
        try:
            for i, span in enumerate(spans):
                saved = store.load(i, span) if store is not None else None
                if saved is not None:
                    events, span_livetime, wall = saved
                    saved_wall += wall
                    resumed += 1
                    bar.update(span.duration)
                else:
                    began = time.perf_counter()
                    times, scores = self.outputs(span, bar)
                    events = self.events_of(times, scores, span)
                    span_livetime = self.livetime_of(span)
                    if store is not None:
                        store.save(i, span, events, span_livetime, time.perf_counter() - began)
                parts.append(events)
                livetime += span_livetime
        finally:
            bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        if resumed:
            logger.info("%s: %d of %d spans loaded from %s", desc, resumed, len(spans), checkpoint)
        wall = time.perf_counter() - start + saved_wall
        events = Events.concatenate(parts)
        if not any(any(s.shifts) for s in spans):
            events.shift = None  # unshifted data: the MDC columns only
        return SearchResult(events, livetime, total, wall)

    def settings(self) -> dict[str, Any]:
        """The settings, as attributes for the events file."""
        return {
            "ifos": ",".join(self.ifos),
            "sample_rate": self.sample_rate,
            "kernel_length": self.kernel_length,
            "fduration": self.fduration,
            "psd_length": self.psd_length,
            "psd_cadence": self.whitener.policy.cadence,
            "inference_sampling_rate": self.rate,
            "integration_length": self.integration_size / self.rate,
            "cluster_window": self.cluster_size / self.rate,
            "threshold": "None" if self.threshold is None else self.threshold,
            "time_offset": self.time_offset,
            "var": self.var,
            "var_bins": "None" if self.var_bins is None else str(self.var_bins),
            "timing": "calibrated" if self.timing else "pads",
            "backend": describe(self.network),
        }
