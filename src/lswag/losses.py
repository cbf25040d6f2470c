"""Task losses a network can be probed with, by name (METHOD.md §1; TransNAS-Bench-101's tasks).

``get(name)`` returns ``loss(output, target) -> scalar``, the mean over the batch:

* ``cross_entropy``: integer class targets; with (B, C, H, W) logits and (B, H, W) targets it is
  the per-pixel cross-entropy (semantic segmentation) — PyTorch's own ``F.cross_entropy``.
* ``soft_cross_entropy``: −Σ_c p_c ln softmax(z)_c with a target distribution p (B, C), as
  TransNAS-Bench-101 trains object and scene classification on soft labels.
* ``l1``: mean |output − target| (autoencoder, surface normal).
* ``mse``: mean (output − target)² (room layout).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from lswag.errors import unknown_choice


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−Σ_c p_c ln softmax(logits)_c, averaged over the batch (and positions, if any)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "soft_cross_entropy": soft_cross_entropy,
    "l1": F.l1_loss,
    "mse": F.mse_loss,
}


def get(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in LOSSES:
        raise unknown_choice("loss", name, LOSSES)
    return LOSSES[name]
