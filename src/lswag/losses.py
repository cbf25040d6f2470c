"""Task losses a network can be probed with, by name (METHOD.md §1; TransNAS-Bench-101's tasks).

``get(name)`` returns ``loss(output, target) -> scalar``, the mean over the batch:

* ``cross_entropy``: integer class targets; with (B, C, H, W) logits and (B, H, W) targets it is
  the per-pixel cross-entropy (semantic segmentation) — PyTorch's own ``F.cross_entropy``.
* ``soft_cross_entropy``: −Σ_c p_c ln softmax(z)_c with a target distribution p (B, C), as
  TransNAS-Bench-101 trains object and scene classification on soft labels.
* ``l1``: mean |output − target| (autoencoder, surface normal).
* ``mse``: mean (output − target)² (room layout).

Another loss is added with :func:`register`; :data:`LOSSES` is a read-only view of them all.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Callable

import torch
import torch.nn.functional as F

from lswag.errors import LswagError, unknown_choice

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−Σ_c p_c ln softmax(logits)_c, averaged over the batch (and positions, if any)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


_LOSSES: dict[str, Loss] = {}
#: every registered loss by name (read-only: :func:`register` adds one)
LOSSES = MappingProxyType(_LOSSES)


def register(name: str, loss: Loss) -> Loss:
    """Make ``loss(output, target) -> scalar`` available as ``name``; a name already taken is refused,
    since a second loss under it would silently replace the first."""
    if name in _LOSSES:
        raise LswagError(f"loss {name!r} is already registered")
    _LOSSES[name] = loss
    return loss


register("cross_entropy", F.cross_entropy)
register("soft_cross_entropy", soft_cross_entropy)
register("l1", F.l1_loss)
register("mse", F.mse_loss)


def get(name: str) -> Loss:
    if name not in LOSSES:
        raise unknown_choice("loss", name, LOSSES)
    return LOSSES[name]
