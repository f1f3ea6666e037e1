"""On-device sampling of background windows from several contiguous segments."""

# ruff: noqa: F722 - jaxtyping shapes ("batch ifo time") are not forward references
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor


class BackgroundSampler(torch.nn.Module):
    """Draw windows of background uniformly from a set of segments held on the device.

    Every start position from which a full window fits inside one segment is equally likely,
    so longer segments are drawn proportionally more often and no window straddles a gap. With
    ``coincident=False`` (training, as upstream aframe does) each IFO's window is drawn
    independently, which multiplies the effective amount of background.

    Args:
        segments: One array per segment, each ``(num_ifos, length)``; lengths may differ.
        sample_size: Window length, in samples.
        coincident: Draw the same times for every IFO (``True``) or independent ones.
    """

    def __init__(
        self,
        segments: Sequence[np.ndarray | Tensor],
        sample_size: int,
        coincident: bool = False,
    ) -> None:
        super().__init__()
        if not segments:
            raise ValueError("BackgroundSampler needs at least one segment")
        sizes = [int(s.shape[-1]) for s in segments]
        short = [i for i, n in enumerate(sizes) if n < sample_size]
        if short:
            raise ValueError(
                f"segments {short} are shorter than the {sample_size}-sample window; "
                "drop them before sampling"
            )
        data = torch.cat(
            [torch.as_tensor(np.asarray(s), dtype=torch.float32) for s in segments], -1
        )
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        counts = np.array(sizes) - sample_size + 1
        self.sample_size = sample_size
        self.coincident = coincident
        self.register_buffer("data", data, persistent=False)
        self.register_buffer(
            "offsets", torch.as_tensor(offsets, dtype=torch.long), persistent=False
        )
        self.register_buffer("cumcounts", torch.as_tensor(np.cumsum(counts)), persistent=False)

    @property
    def num_ifos(self) -> int:
        return self.data.shape[0]

    def sample_starts(self, batch_size: int) -> Int[Tensor, "batch ifo"]:
        """Start indices into the concatenated data, ``(batch, num_ifos)``."""
        total = int(self.cumcounts[-1])
        shape = (batch_size, 1 if self.coincident else self.num_ifos)
        u = torch.randint(total, shape, device=self.data.device)
        seg = torch.searchsorted(self.cumcounts, u, right=True)
        previous = torch.where(seg > 0, self.cumcounts[(seg - 1).clamp_min(0)], 0)
        starts = self.offsets[seg] + (u - previous)
        return starts.expand(batch_size, self.num_ifos)

    def forward(self, batch_size: int) -> Float[Tensor, "batch ifo sample"]:
        """Sample a batch of windows, ``(batch, num_ifos, sample_size)``."""
        starts = self.sample_starts(batch_size)
        # a strided view of every window of every IFO: one indexing copies only the chosen
        # rows, straight into the (batch, ifo, sample) output
        windows = self.data.unfold(-1, self.sample_size, 1)
        ifos = torch.arange(self.num_ifos, device=starts.device)
        return windows[ifos, starts]


class ChunkSampler(torch.nn.Module):
    """Draw windows from a buffer of equally weighted background chunks held on the device.

    The chunked training path (:mod:`~aframe_lib.data.chunked`) loads a few chunks of background
    at a time. Each window picks a chunk *uniformly* (not by length), then a start uniformly
    among that chunk's own window starts; chunks are selected into buffers with probability
    proportional to their number of starts, so every start of every segment is equally likely
    overall (see :func:`~aframe_lib.data.chunked.select_chunks`).

    Args:
        chunks: ``(num_chunks, num_ifos, chunk_size)``; chunk ``i`` holds valid data in its first
            ``counts[i] + sample_size - 1`` samples (the rest is padding, never read).
        counts: ``(num_chunks,)`` window starts of each chunk, each ``>= 1``.
        sample_size: Window length, in samples.
        coincident: Same chunk and start for every IFO (``True``) or independent draws.
    """

    def __init__(
        self,
        chunks: Float[Tensor, "chunk ifo chunk_size"],
        counts: Int[Tensor, " chunk"],
        sample_size: int,
        coincident: bool = False,
    ) -> None:
        super().__init__()
        if chunks.ndim != 3 or len(counts) != len(chunks) or not len(chunks):
            raise ValueError(
                f"ChunkSampler needs chunks (num_chunks, num_ifos, size) and one count per "
                f"chunk, got {tuple(chunks.shape)} and {tuple(counts.shape)}"
            )
        if int(counts.min()) < 1 or int(counts.max()) + sample_size - 1 > chunks.shape[-1]:
            raise ValueError(
                f"chunk start counts {counts.tolist()} do not fit {sample_size}-sample windows "
                f"in chunks of {chunks.shape[-1]} samples"
            )
        self.sample_size = sample_size
        self.coincident = coincident
        self.register_buffer("chunks", chunks, persistent=False)
        self.register_buffer("counts", counts.to(chunks.device), persistent=False)

    @property
    def num_ifos(self) -> int:
        return self.chunks.shape[1]

    def forward(self, batch_size: int) -> Float[Tensor, "batch ifo sample"]:
        """Sample a batch of windows, ``(batch, num_ifos, sample_size)``."""
        device = self.chunks.device
        shape = (batch_size, 1 if self.coincident else self.num_ifos)
        slot = torch.randint(len(self.chunks), shape, device=device)
        # float64: exact enough for any chunk length (float32 would skip starts above 2**24)
        u = torch.rand(shape, dtype=torch.float64, device=device)
        start = (u * self.counts[slot]).long().clamp_max(self.counts[slot] - 1)
        slot = slot.expand(batch_size, self.num_ifos)
        start = start.expand(batch_size, self.num_ifos)
        out = []
        for ifo in range(self.num_ifos):
            windows = self.chunks[:, ifo].unfold(-1, self.sample_size, 1)
            out.append(windows[slot[:, ifo], start[:, ifo]])
        return torch.stack(out, dim=1)
