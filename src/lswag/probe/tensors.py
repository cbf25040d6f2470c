"""How the probe reads tensors: in their memory order, checked for NaN/inf, and the logits
picked from a model's output."""
from __future__ import annotations

import torch

from lswag.errors import LswagError


def memory_format_of(tensor: torch.Tensor) -> torch.memory_format:
    """``channels_last`` for a (B, C, H, W) map stored channels-last, else the default layout."""
    if tensor.dim() == 4 and not tensor.is_contiguous() and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def in_memory_order(tensor: torch.Tensor) -> torch.Tensor:
    """A view of ``tensor`` whose dimensions follow its memory: a channels-last map (B, C, H, W)
    as (B, H, W, C), so that flattening it or reducing over it needs no copy; others unchanged."""
    return tensor.permute(0, 2, 3, 1) if memory_format_of(tensor) == torch.channels_last else tensor


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or inf in ``tensor``; min/max propagate NaN, and are ~10x cheaper than ``isfinite``."""
    return bool(torch.isfinite(torch.stack(torch.aminmax(in_memory_order(tensor.detach())))).all())


def logits_of(output) -> torch.Tensor:
    """The logits in a model's output: a tensor, a dict's ``logits``/``out`` entry, or ``.logits``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        for key in ("logits", "out"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    if isinstance(output, (tuple, list)):
        raise LswagError(f"the model returned a {type(output).__name__} of {len(output)}; "
                         "pass output=callable that picks the logits from it")
    raise LswagError(f"cannot find logits in a model output of type {type(output).__name__}; "
                     "pass output=callable that picks them")
