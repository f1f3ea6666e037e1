"""The timeslide AUROC: aframe's validation score.

Background windows (from :class:`~aframe_lib.data.timeslides.TimeslideWindows`) are scored one
by one, but a search reports *events*: one loud stretch of background yields one trigger, not
one per overlapping window. So before scoring, each timeslide's window scores are clustered by
max-pooling over ``pool_length`` seconds. The clustered background (label 0) and the foreground
scores of injected signals (label 1, averaged over views) then give the AUROC up to a false
positive rate of ``max_fpr``, with the McClish correction (as ``sklearn.metrics.roc_auc_score``
with ``max_fpr``), so 0.5 is chance and 1 is perfect whatever ``max_fpr`` is.

All states are concatenated across processes under DDP, and :meth:`TimeSlideAUROC.compute` does
not depend on the order in which rows arrive, so a multi-GPU score equals the single-process
score on the same data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.utilities import dim_zero_cat


class TimeSlideAUROC(Metric):
    """AUROC of injected-signal scores against clustered timeslide background scores.

    Args:
        max_fpr: largest false-positive rate of the partial AUROC, in ``(0, 1]``; ``1`` gives
            the plain AUROC.
        pool_length: clustering length in seconds: the background of each timeslide is
            max-pooled over ``pool_length / stride`` windows, with a pooling stride of half
            that (rounded down, at least 1).
        stride: seconds between consecutive validation windows of one timeslide (the
            ``stride`` of :class:`~aframe_lib.data.timeslides.TimeslideWindows` divided by the
            sample rate).
        **kwargs: passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, max_fpr: float = 1e-3, pool_length: float = 8.0, stride: float = 0.5, **kwargs
    ):
        super().__init__(**kwargs)
        if not 0 < max_fpr <= 1:
            raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
        if stride <= 0 or pool_length <= 0:
            raise ValueError(f"pool_length and stride must be > 0 s, got {pool_length}, {stride}")
        self.max_fpr, self.pool_length, self.stride = max_fpr, pool_length, stride
        self.kernel = max(round(pool_length / stride), 1)
        self.pool_stride = max(self.kernel // 2, 1)
        for name in ["background", "shift_id", "index", "foreground"]:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        background: Tensor,
        shift_id: Tensor,
        index: Tensor,
        foreground: Tensor | None = None,
    ) -> None:
        """Store one batch of scores.

        Args:
            background: scores of background windows, shape ``(B,)`` (or ``(B, 1)``).
            shift_id: timeslide of each window, int ``(B,)``; rows with ``shift_id < 0``
                (padding) are dropped.
            index: index of each window within its timeslide, int ``(B,)``.
            foreground: scores of injected windows, ``(M,)``, or ``(M, V)`` for ``V`` views of
                each injection (averaged); ``None`` when the batch has no injections.
        """
        background = background.detach()
        if background.ndim == 2 and background.shape[1] == 1:
            background = background[:, 0]
        if background.ndim != 1 or not shift_id.shape == background.shape == index.shape:
            raise ValueError(
                f"background, shift_id and index must all have shape (B,), got "
                f"{tuple(background.shape)}, {tuple(shift_id.shape)}, {tuple(index.shape)}"
            )
        keep = shift_id >= 0
        self.background.append(background[keep].float())
        self.shift_id.append(shift_id[keep].long())
        self.index.append(index[keep].long())
        if foreground is not None:
            foreground = foreground.detach().float()
            if foreground.ndim == 2:
                foreground = foreground.mean(dim=1)
            if foreground.ndim != 1:
                raise ValueError(
                    f"foreground must have shape (M,) or (M, V), got {tuple(foreground.shape)}"
                )
            self.foreground.append(foreground)

    def compute(self) -> Tensor:
        """The AUROC (up to ``max_fpr``, McClish-corrected) as a 0-dim tensor."""
        background = self._cat(self.background)
        foreground = self._cat(self.foreground)
        if not len(background):
            raise ValueError(
                "TimeSlideAUROC saw no background scores: call update() with at least one "
                "non-padding background window (shift_id >= 0) before compute()"
            )
        if not len(foreground):
            raise ValueError(
                "TimeSlideAUROC saw no foreground scores: pass the scores of injected "
                "windows as update(..., foreground=...) before compute()"
            )
        shift_id = self._cat(self.shift_id).long()
        index = self._cat(self.index).long()
        background = self.cluster(background, shift_id, index)
        # sorted, so the result cannot depend on the order in which ranks' rows arrived
        foreground = foreground.sort().values
        preds = torch.cat([background, foreground])
        target = torch.cat([torch.zeros_like(background), torch.ones_like(foreground)]).long()
        max_fpr = None if self.max_fpr == 1 else self.max_fpr
        return binary_auroc(preds, target, max_fpr=max_fpr, thresholds=None)

    def _cat(self, state: list[Tensor] | Tensor) -> Tensor:
        if isinstance(state, list) and not state:
            return torch.empty(0, device=self.device)
        return dim_zero_cat(state)

    def cluster(self, scores: Tensor, shift_id: Tensor, index: Tensor) -> Tensor:
        """Max-pool the background scores of each timeslide over ``pool_length`` seconds.

        For a timeslide whose largest window index is ``L - 1``, pooled value ``p`` is the
        maximum over the windows with ``p * pool_stride <= index < p * pool_stride + kernel``,
        for ``p = 0 .. ceil(max(L - kernel, 0) / pool_stride)``: ``MaxPool1d(kernel,
        pool_stride, ceil_mode=True)`` over the windows in index order, extended to timeslides
        shorter than one kernel. Pools that hold no window (missing indices) are dropped.

        Args:
            scores: float ``(B,)`` background scores.
            shift_id: int ``(B,)`` timeslide of each score (all ``>= 0``).
            index: int ``(B,)`` window index of each score within its timeslide.

        Returns:
            The pooled scores, ``(P,)``, ordered by (timeslide, pool).
        """
        k, s = self.kernel, self.pool_stride
        shifts, shift = torch.unique(shift_id, return_inverse=True)
        last = torch.full((len(shifts),), -1, dtype=torch.long, device=index.device)
        last = last.scatter_reduce(0, shift, index, reduce="amax")
        num_pools = (last + 1 - k).clamp(min=0).add(s - 1).div(s, rounding_mode="floor") + 1
        first_pool = torch.cumsum(num_pools, 0) - num_pools  # flat id of each shift's pool 0

        # window w lies in pools ceil((w - k + 1) / s) .. floor(w / s): at most ceil(k / s)
        lo = (index - k + 1).clamp(min=0).add(s - 1).div(s, rounding_mode="floor")
        hi = torch.minimum(index.div(s, rounding_mode="floor"), num_pools[shift] - 1)
        bins, values = [], []
        for m in range(math.ceil(k / s)):
            valid = lo + m <= hi
            bins.append((first_pool[shift] + lo + m)[valid])
            values.append(scores[valid])
        bins, values = torch.cat(bins), torch.cat(values)

        total = int(num_pools.sum())
        pooled = torch.full((total,), -torch.inf, dtype=scores.dtype, device=scores.device)
        pooled = pooled.scatter_reduce(0, bins, values, reduce="amax", include_self=False)
        filled = torch.bincount(bins, minlength=total) > 0
        return pooled[filled]
