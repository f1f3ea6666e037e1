"""On-device sampling of background windows from several contiguous segments."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
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

    def sample_starts(self, batch_size: int) -> Tensor:
        """Start indices into the concatenated data, ``(batch, num_ifos)``."""
        total = int(self.cumcounts[-1])
        shape = (batch_size, 1 if self.coincident else self.num_ifos)
        u = torch.randint(total, shape, device=self.data.device)
        seg = torch.searchsorted(self.cumcounts, u, right=True)
        previous = torch.where(seg > 0, self.cumcounts[(seg - 1).clamp_min(0)], 0)
        starts = self.offsets[seg] + (u - previous)
        return starts.expand(batch_size, self.num_ifos)

    def forward(self, batch_size: int) -> Tensor:
        """Sample a batch of windows, ``(batch, num_ifos, sample_size)``."""
        starts = self.sample_starts(batch_size)
        out = []
        for ifo in range(self.num_ifos):
            # a strided view of every window: indexing it copies only the chosen rows
            windows = self.data[ifo].unfold(0, self.sample_size, 1)
            out.append(windows[starts[:, ifo]])
        return torch.stack(out, dim=1)
