"""Size proxies: #params, FLOPs and the weights' l2_norm, the data-free baselines every zero-cost
proxy must beat."""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from lswag.probe import LAYER_TYPES, all_finite
from lswag.proxies import ProxyFailure, proxy


@proxy("params")
def params(record, model) -> float:
    """Number of parameters in millions (every parameter, BN affine included, as the benchmarks count)."""
    return sum(p.numel() for p in model.parameters()) / 1e6


@contextmanager
def _attention_unfused() -> Iterator[None]:
    """PyTorch's fused fast path of ``nn.TransformerEncoderLayer`` and ``nn.MultiheadAttention`` off
    inside: in eval mode it runs one kernel the FLOP counter cannot see, which counted a
    ``TransformerEncoderLayer`` ViT as its patch embedding alone."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the CPU kernel of ``scaled_dot_product_attention`` (its two matrix products), which
    PyTorch's counter does not know and counted as none: the formula it uses for the GPU kernels."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


@proxy("flops", own_pass=("1-sample forward, FLOP counter", "forward"), version=2)
def flops(record, model) -> float:
    """Multiply-accumulates of one sample's forward pass, in millions (the NAS benchmarks' "flops").

    Counted by PyTorch's ``FlopCounterMode`` (convolutions and matrix products; a multiply-add is
    2 FLOPs there, so its total is halved) on an eval-mode copy at the batch's input size, with
    PyTorch's fused attention fast path off and the CPU kernel of ``scaled_dot_product_attention``
    counted as its two matrix products, so that attention is seen (version 2; version 1 missed the
    blocks of ``nn.TransformerEncoderLayer`` networks and the attention products of
    ``scaled_dot_product_attention``). On NB201 this reproduces the benchmark's ``flop`` column
    (e.g. cell #11: 113.95137).
    """
    net = copy.deepcopy(model).eval()
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops})
    with counter, torch.no_grad(), _attention_unfused():
        record.logits(net(record.batch.x[:1]))
    total = counter.get_total_flops()
    if total == 0:
        raise ProxyFailure("no convolution or matrix product was counted")
    return total / 2 / 1e6


@proxy("l2_norm")
def l2_norm(record, model) -> float:
    """Σ_l ‖W_l‖_F over the Conv/Linear weights (``l2_norm`` of NAS-Bench-Suite-Zero, Krishnakumar et al. 2022).

    Weights only (no bias, no norm layer), read from the model itself, so it needs no pass and
    does not depend on the batch; as NASLib (``net.modules()``), every Conv/Linear module counts,
    executed or not, each once however often it is called.
    """
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, LAYER_TYPES)]
    if not layers:
        raise ProxyFailure("the network has no Conv or Linear layer")
    total = 0.0
    for name, module in layers:
        weight = module.weight.detach()
        if weight.numel() and not all_finite(weight):
            raise ProxyFailure(f"non-finite weight in layer {name}")
        total += float(weight.double().norm())
    return total
