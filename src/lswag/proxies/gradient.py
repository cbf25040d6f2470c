"""Gradient proxies: grad_norm, snip, plain, fisher, grasp, zico, and the per-layer gradient
statistic L-SWAG shares.

Weights of Conv/Linear layers only (NAS-Bench-Suite-Zero convention); ``grad_norm``, ``snip`` and
``plain`` use the gradient of the loss on the whole batch, ``fisher`` the probe's per-channel
activation-gradient sums, ``grasp`` its Hessian-vector product, ``zico`` its M gradient draws.
"""
from __future__ import annotations

import math

import torch

from lswag.probe import LayerRecord, Record, all_finite
from lswag.proxies import ProxyFailure, one_of, proxy


def _require(record: Record, attribute: str, what: str = "gradient") -> list[LayerRecord]:
    """The layers with ``attribute`` recorded; fails when there are none or one is NaN/inf."""
    layers = [layer for layer in record.layers if getattr(layer, attribute) is not None]
    if not layers:
        raise ProxyFailure("the network has no Conv or Linear layer")
    for layer in layers:
        key = ("finite", attribute)     # memoised: every proxy and variant from one record asks again
        if key not in layer.derived:
            layer.derived[key] = all_finite(getattr(layer, attribute))
        if not layer.derived[key]:
            raise ProxyFailure(f"non-finite {what} in layer {layer.name}")
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


@proxy("plain", needs={"gradient"})
def plain(record: Record, model) -> float:
    """Σ ∂L/∂w ⊙ w over Conv/Linear weights, signed (Mozer & Smolensky 1989; NAS-Bench-Suite-Zero's ``plain``).

    The signed sum of snip's terms, from the same whole-batch gradient; as there, weights that
    receive no gradient contribute 0.
    """
    return sum(float((layer.gradient.double() * layer.weight.double()).sum())
               for layer in _require(record, "gradient"))


FISHER_REDUCTIONS = ("channels", "suite_zero")


@proxy("fisher", needs=lambda weighting, reduction: {"fisher" if reduction == "channels" else "fisher_suite_zero"},
       validate=one_of("fisher", weighting=("fan_in", "channel"), reduction=FISHER_REDUCTIONS))
def fisher(record: Record, model, weighting: str = "fan_in", reduction: str = "channels") -> float:
    """Σ_l m_l Σ_k |½ mean_n (Σ_pos A⊙G)²_{n,k}| per output channel k (Theis et al. 2018; Turner et al. 2020).

    A is the layer's own output (Conv/Linear output, before BatchNorm or the activation), G = ∂L/∂A
    on the whole batch, Σ_pos over the positions of channel k (H×W for a Conv2d, tokens for a
    Linear on (B, T, C)), mean over the batch n; a layer called more than once adds each call's
    term. Up to the reduction on token outputs (below), this is NAS-Bench-Suite-Zero's ``fisher``
    (NASLib ``compute_fisher_per_weight``: an identity "dummy" wrapped around the layer's output,
    i.e. its pre-activation, whose backward hook gives G; mode "channel"). NASLib then broadcasts
    each channel's value over the channel's weights, ``weight.shape[1:]``, before summing, so its
    score multiplies layer l's term by m_l = fan-in (C_in/groups · kernel elements; in-features
    for a Linear): that is the default, ``weighting="fan_in"``. ``weighting="channel"`` uses
    m_l = 1, the plain per-channel sum of METHOD.md §3. The |·| is kept from the reference; the
    squared terms are never negative.

    ``reduction`` is how A⊙G is summed before squaring. ``"channels"`` (default) is the above, one
    term per output channel (axis 1 of a Conv's output, the last axis of a Linear's).
    ``"suite_zero"`` is NASLib's literal reduction (automl/NASLib
    ``naslib/predictors/utils/pruners/measures/fisher.py``, read at commit dfdfaf2: A⊙G summed
    over every axis after the second): δ_i = ½ mean_n (Σ_{axes ≥ 2} A⊙G)²_{n,i} for each index i
    of A's axis 1, and the layer adds m_l Σ_i δ_i, m_l = the number of elements of
    ``weight.shape[1:]`` (NASLib broadcasts each δ_i over that shape; the fan-in of a Conv or
    Linear) or 1 (``"channel"``). On a Conv's (B, C, H, W) and a Linear's (B, C) output axis 1 is
    the channel and the two reductions agree; on a Linear applied to tokens (B, T, C) axis 1 is
    the token: NASLib sums A⊙G over the C channels, one term per token,
    δ_t = ½ mean_n (Σ_c A⊙G)²_{n,t}, and the layer adds C_in · Σ_t δ_t. Both reductions take every
    Conv/Linear kind (NASLib hooks Conv2d and Linear only) and add each call of a layer (NASLib
    keeps one activation per layer); both ride on the whole-batch gradient pass, and the probe
    records suite_zero's terms only when this option asks for them.
    """
    attribute = "fisher" if reduction == "channels" else "fisher_suite_zero"
    total = 0.0
    for layer in _require(record, attribute, "Fisher information"):
        terms = getattr(layer, attribute)
        # the weights per output channel; for suite_zero NASLib's broadcast shape, weight.shape[1:]
        fan_in = layer.weight.numel() // terms.numel() if reduction == "channels" else layer.weight[0].numel()
        total += (fan_in if weighting == "fan_in" else 1) * float(terms.abs().sum())
    return total


@proxy("grasp", needs={"hessian"})
def grasp(record: Record, model) -> float:
    """−Σ w ⊙ (H g) over Conv/Linear weights (GraSP, Wang et al. ICLR 2020; NAS-Bench-Suite-Zero's ``grasp``).

    g = ∂L/∂W on the whole batch taken without a graph, then H g = ∂(Σ_W g · ∂L/∂W)/∂W, the
    Hessian (over the Conv/Linear weights) times g, as NASLib's ``compute_grasp_per_weight``
    (temperature T = 1, one iteration, its score −θ ⊙ Hg summed). NASLib runs the second gradient
    on a second forward pass of the same batch; in train mode without dropout that is the same
    graph, so the probe takes both from one forward pass.
    """
    return -sum(float((layer.hessian_gradient.double() * layer.weight.double()).sum())
                for layer in _require(record, "hessian_gradient", "Hessian-vector product"))


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
    draws = layer.gradient_draws.reshape(layer.gradient_draws.shape[0], -1)
    if draws.shape[0] == 2:     # σ (ddof 0) of two draws is |g1 − g2| / 2: one pass instead of five
        sigma = (draws[0].double() - draws[1].double()).abs_().mul_(0.5)
    else:                       # two-pass mean and variance: ~2x faster than Tensor.std over the short axis
        draws64 = draws.double()
        sigma = (draws64 - draws64.mean(0)).square_().mean(0).sqrt_()
    weights = sigma.reciprocal_()                   # 1/σ, inf where σ = 0: those weights are skipped
    skipped = torch.isinf(weights)
    if numerator == "mean_abs":
        weights.mul_(draws.double().abs().mean(0))
    total = float(weights.masked_fill_(skipped, 0.0).sum())
    return math.log(total) if total > 0 else None


def require_draws(record: Record, window: tuple[int, int] | None = None) -> list[LayerRecord]:
    """The layers with gradient draws, checked finite; ``window`` (p1, p2) is the depth percentiles
    the caller reads (None: every layer), which the probe's ``draw_window`` must cover."""
    covered = record.draw_window
    if covered is not None:
        if window is None or not covered[0] <= window[0] <= window[1] <= covered[1]:
            wanted = "every layer" if window is None else f"depth percentiles {window[0]}-{window[1]}"
            raise ProxyFailure(f"the record has gradient draws for depth percentiles {covered[0]}-{covered[1]} "
                               f"only; {wanted} needed")
        if all(layer.gradient_draws is None for layer in record.layers):
            raise ProxyFailure(f"no layer lies in the depth percentiles {covered[0]}-{covered[1]}")
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
