"""Size proxies: #params and FLOPs, the baselines every zero-cost proxy must beat."""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

from lswag.probe import logits_of
from lswag.proxies import ProxyFailure, proxy


@proxy("params")
def params(record, model) -> float:
    """Number of parameters in millions (every parameter, BN affine included, as the benchmarks count)."""
    return sum(p.numel() for p in model.parameters()) / 1e6


@proxy("flops")
def flops(record, model) -> float:
    """Multiply-accumulates of one sample's forward pass, in millions (the NAS benchmarks' "flops").

    Counted by PyTorch's ``FlopCounterMode`` (convolutions and matrix products; a multiply-add is
    2 FLOPs there, so its total is halved) on an eval-mode copy at the batch's input size. On
    NB201 this reproduces the benchmark's ``flop`` column (e.g. cell #11: 113.95137).
    """
    net = copy.deepcopy(model).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        logits_of(net(record.batch.x[:1]))
    total = counter.get_total_flops()
    if total == 0:
        raise ProxyFailure("no convolution or matrix product was counted")
    return total / 2 / 1e6
