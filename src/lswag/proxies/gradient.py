"""Gradient proxies: grad_norm, snip, zico, and the per-layer gradient statistic L-SWAG shares.

Weights of Conv/Linear layers only (NAS-Bench-Suite-Zero convention); ``grad_norm`` and ``snip``
use the gradient of the loss on the whole batch, ``zico`` the M gradient draws of the probe.
"""
from __future__ import annotations

import math

import torch

from lswag.probe import LayerRecord, Record, all_finite
from lswag.proxies import ProxyFailure, proxy


def _require(record: Record, attribute: str) -> list[LayerRecord]:
    """The layers with ``attribute`` recorded; fails when there are none or one is NaN/inf."""
    layers = [layer for layer in record.layers if getattr(layer, attribute) is not None]
    if not layers:
        raise ProxyFailure("the network has no Conv or Linear layer")
    for layer in layers:
        if not all_finite(getattr(layer, attribute)):
            raise ProxyFailure(f"non-finite gradient in layer {layer.name}")
    return layers


@proxy("grad_norm", needs={"gradient"})
def grad_norm(record: Record, model) -> float:
    """Σ_l ‖∂L/∂W_l‖_F over Conv/Linear layers (Abdelfattah et al. 2021; NAS-Bench-Suite-Zero).

    A network whose weights receive no gradient at all (an NB201 cell with no input-output
    path) scores a true 0, as does ``snip``; they rank last without being failures.
    """
    return sum(float(layer.gradient.norm()) for layer in _require(record, "gradient"))


@proxy("snip", needs={"gradient"})
def snip(record: Record, model) -> float:
    """Σ |∂L/∂w ⊙ w| over Conv/Linear weights (SNIP, Lee et al. 2019; NAS-Bench-Suite-Zero)."""
    return sum(float((layer.gradient * layer.weight).abs().sum()) for layer in _require(record, "gradient"))


def gradient_statistic(layer: LayerRecord, numerator: str = "one") -> float | None:
    """ln Σ_{i: σ_i > 0} n_i / σ_i for one layer, or None when no weight's gradient varies.

    σ_i is the standard deviation (ddof 0) of ∂L/∂w_i over the M gradient draws; n_i is 1
    (L-SWAG's Ψ_l, Eq. 1 of the paper) or mean_m |∂L/∂w_i| (``numerator="mean_abs"``, ZiCo).
    Memoised on the layer record, so the variants of L-SWAG computed from one record share it.
    """
    key = ("gradient_statistic", numerator)
    if key not in layer.derived:
        layer.derived[key] = _gradient_statistic(layer, numerator)
    return layer.derived[key]


def _gradient_statistic(layer: LayerRecord, numerator: str) -> float | None:
    draws = layer.gradient_draws.reshape(layer.gradient_draws.shape[0], -1).to(torch.float64)
    sigma = draws.std(dim=0, unbiased=False)
    varying = sigma > 0
    if not bool(varying.any()):
        return None
    if numerator == "one":
        total = float((1.0 / sigma[varying]).sum())
    else:
        total = float((draws.abs().mean(0)[varying] / sigma[varying]).sum())
    return math.log(total) if total > 0 else None


def require_draws(record: Record) -> list[LayerRecord]:
    layers = _require(record, "gradient_draws")
    if record.num_draws < 2:
        raise ProxyFailure("a gradient standard deviation needs at least 2 gradient draws")
    return layers


@proxy("zico", needs={"draws"})
def zico(record: Record, model) -> float:
    """Σ_l ln Σ_i mean_m|g_{l,i}| / σ_{l,i} over layers with σ > 0 (ZiCo, Li et al. ICLR 2023).

    g over M gradient draws (the batch split into M chunks; M = 2 by default, as ZiCo's two
    mini-batches); layers whose gradients never vary are skipped, as in ZiCo's code.
    """
    terms = [t for t in (gradient_statistic(layer, "mean_abs") for layer in require_draws(record)) if t is not None]
    if not terms:
        raise ProxyFailure("no layer has a gradient that varies between draws")
    return sum(terms)
