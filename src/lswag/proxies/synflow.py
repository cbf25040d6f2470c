"""SynFlow (Tanaka et al., NeurIPS 2020), as NAS-Bench-Suite-Zero scores it.

On a copy of the network: BatchNorm removed (``bn=False`` in the reference code), every
parameter replaced by its absolute value, float64, eval mode; R = Σ f(1) for an all-ones input
of batch 1; score Σ over Conv/Linear weights of |w ⊙ ∂R/∂w|. lswag reports ln of that sum (it
spans hundreds of orders of magnitude; the ranking is unchanged). A network whose output does
not depend on any weight (no input-output path) fails instead of scoring 0.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

from lswag.probe import LAYER_TYPES, logits_of
from lswag.proxies import ProxyFailure, proxy
from lswag.proxies.inputs import require_float_input


def _without_batchnorm(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    for parent in list(clone.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, child_name, nn.Identity())
    return clone


def synflow_saliency(model: nn.Module, input_shape, device=None, pick_logits=logits_of) -> dict[str, torch.Tensor]:
    """Per-weight SynFlow saliency |w ⊙ ∂R/∂w| of every Conv/Linear layer the output depends on.

    On a copy of ``model`` with BatchNorm removed, |parameters|, float64, eval mode; R = Σ f(1) for an
    all-ones input of shape (1, *input_shape). Keys are the layers' qualified module names; a layer
    that receives no gradient is absent.
    """
    net = _without_batchnorm(model).double().eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.abs_()
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    pick_logits(net(ones)).sum().backward()
    return {name: (m.weight.detach() * m.weight.grad).abs()
            for name, m in net.named_modules() if isinstance(m, LAYER_TYPES) and m.weight.grad is not None}


@proxy("synflow", own_pass=("1-sample float64 |w| forward+backward, BN off", "forward+backward"))
def synflow(record, model) -> float:
    """ln Σ |w ⊙ ∂R/∂w|, R = Σ f(1) of the BN-free |w| network in float64 (SynFlow; NAS-Bench-Suite-Zero)."""
    require_float_input(record, "synflow", "it feeds the network an all-ones input")
    saliency = synflow_saliency(model, record.batch.x.shape[1:], record.batch.x.device, record.logits)
    total = sum(float(s.sum()) for s in saliency.values())
    if total == 0:
        raise ProxyFailure("synflow is 0: no Conv/Linear weight gets a gradient (no input-output path, "
                           "or an output that saturates, such as Tanh, on the all-ones input)")
    return math.log(total)
