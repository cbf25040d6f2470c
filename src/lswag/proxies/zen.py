"""Zen-score (Lin et al., ICCV 2021), as NAS-Bench-Suite-Zero (NASLib ``compute_zen_score``) scores it.

Like synflow it needs its own, differently configured copy of the network, so it runs no probe
pass: the probe's batch only gives the input shape (the data themselves are not used).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn as nn

from lswag.errors import LswagError, unknown_choice
from lswag.probe import all_finite, initialise, logits_of, private_copy
from lswag.proxies import ProxyFailure, proxy
from lswag.proxies.inputs import require_float_input

BN_STATISTICS = ("running", "batch")
FEATURES = ("auto", "logits")
_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
          nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


def _is_global_pool(module: nn.Module) -> bool:
    if not isinstance(module, _POOLS):
        return False
    size = module.output_size
    return all(s == 1 for s in (size if isinstance(size, tuple) else (size,)))


class PrePoolingFeature:
    """Hooks that find the feature map "before global pooling" of an arbitrary network (removed on exit).

    Rule: the classifier is the last ``nn.Linear`` executed. The feature map is the last output
    with three or more axes (B, C, H, W) or (B, T, C) of a leaf module (one without children) that
    finished before the classifier started; when that output comes from a global pooling module
    (``AdaptiveAvg/MaxPool`` with output size 1) its input is taken instead (NASLib hooks the input
    of ``AdaptiveAvgPool2d`` the same way on NB201/NB301/TNB101). Pooling written as a tensor
    operation (``x.mean((2, 3))``) is not a module, so the map it reduces is the last such output.
    When no Linear runs or no such map precedes it (an MLP, a fully convolutional head), the
    fallback is the logits (``found`` is False).
    """

    def __init__(self, net: nn.Module):
        self.leaves = [m for m in net.modules() if next(m.children(), None) is None]
        self.candidate: torch.Tensor | None = None
        self.at_classifier: torch.Tensor | None = None
        self.linear_ran = False

    @contextlib.contextmanager
    def hooks(self):
        self.candidate = self.at_classifier = None
        self.linear_ran = False
        with contextlib.ExitStack() as stack:
            for module in self.leaves:
                if isinstance(module, nn.Linear):
                    stack.callback(module.register_forward_pre_hook(self._classifier_hook).remove)
                stack.callback(module.register_forward_hook(self._leaf_hook).remove)
            yield

    def _classifier_hook(self, module, inputs):
        self.linear_ran = True
        self.at_classifier = None if self.candidate is None else self.candidate.detach().clone()

    def _leaf_hook(self, module, inputs, output):
        if _is_global_pool(module) and inputs and isinstance(inputs[0], torch.Tensor):
            self.candidate = inputs[0]
        elif isinstance(output, torch.Tensor) and output.dim() >= 3:
            self.candidate = output

    @property
    def found(self) -> bool:
        return self.linear_ran and self.at_classifier is not None


def _batchnorms(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def _batch_variance_hooks(layers, into: list):
    """Record, once per BatchNorm layer, the mean over channels of the biased batch variance of its input."""
    seen = set()

    def hook(module, inputs):
        if id(module) in seen:
            return
        seen.add(id(module))
        x = inputs[0].detach().to(torch.float64)
        into.append(float(x.movedim(1, 0).reshape(x.shape[1], -1).var(dim=1, unbiased=False).mean()))

    with contextlib.ExitStack() as stack:
        for layer in layers:
            stack.callback(layer.register_forward_pre_hook(hook).remove)
        yield


def zen_score(net: nn.Module, x: torch.Tensor, noise: torch.Tensor, *, mixup_gamma: float = 1e-2,
              bn_statistic: str = "running", feature: str = "auto", pick_logits=logits_of) -> float:
    """One Zen-score of ``net`` as it is (no re-initialisation): ln Δ + Σ_BN ln sqrt(mean σ²).

    ``net`` runs in its current mode on ``x`` and then on ``x + mixup_gamma * noise`` (two forwards,
    no gradient); Δ = mean_b Σ_units |f(x)_b − f(x + γ ε)_b| with f the map chosen by
    :class:`PrePoolingFeature` (``feature="logits"`` forces the fallback). σ² is, per BatchNorm
    layer, the ``running_var`` buffer after both forwards (``bn_statistic="running"``) or the biased
    batch variance of its input in the first forward (``"batch"``). The caller owns ``net`` (its
    running statistics change).
    """
    finder = PrePoolingFeature(net)
    layers = _batchnorms(net)
    batch_variances: list[float] = []
    features = []
    with torch.no_grad():
        for k, inputs in enumerate((x, x + mixup_gamma * noise)):
            hooks = _batch_variance_hooks(layers, batch_variances) if k == 0 else contextlib.nullcontext()
            with finder.hooks(), hooks:
                logits = pick_logits(net(inputs))
            features.append(finder.at_classifier if feature == "auto" and finder.found else logits.detach())
    first, second = features
    if not (all_finite(first) and all_finite(second)):
        raise ProxyFailure("non-finite feature map")
    delta = float((first.to(torch.float64) - second.to(torch.float64)).abs()
                  .reshape(first.shape[0], -1).sum(dim=1).mean())
    if delta == 0:
        raise ProxyFailure("the feature map does not change with the input (no input-output path)")
    if bn_statistic == "running":
        variances = []
        for layer in layers:
            if layer.running_var is None:
                raise ProxyFailure(f"a {type(layer).__name__} does not track running statistics; "
                                   "use bn_statistic='batch'")
            variances.append(float(layer.running_var.to(torch.float64).mean()))
    else:
        variances = batch_variances
    if any(not (v > 0 and math.isfinite(v)) for v in variances):
        raise ProxyFailure("a BatchNorm variance is zero or non-finite")
    return math.log(delta) + sum(0.5 * math.log(v) for v in variances)


def _check_zen(repeats, mixup_gamma, bn_statistic, feature, seed) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise LswagError(f"zen repeats must be an integer >= 1, got {repeats!r}")
    if not isinstance(mixup_gamma, (int, float)) or not math.isfinite(mixup_gamma) or mixup_gamma <= 0:
        raise LswagError(f"zen mixup_gamma must be a finite number > 0, got {mixup_gamma!r}")
    if bn_statistic not in BN_STATISTICS:
        raise unknown_choice("zen bn_statistic", bn_statistic, BN_STATISTICS)
    if feature not in FEATURES:
        raise unknown_choice("zen feature", feature, FEATURES)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise LswagError(f"zen seed must be an integer, got {seed!r}")


@proxy("zen", validate=_check_zen, own_pass=("N(0,1) re-init, 2 Gaussian forwards per repeat", "forward"))
def zen(record, model, repeats: int = 1, mixup_gamma: float = 1e-2, bn_statistic: str = "running",
        feature: str = "auto", seed: int = 0) -> float:
    """ln E_b‖f(x) − f(x + γε)‖₁ + Σ_BN ln sqrt(mean_c σ²_c), f before global pooling (Zen-NAS; NAS-Bench-Suite-Zero).

    Per repeat, on a private copy of the model (train mode, dropout off, running statistics reset
    to mean 0 / var 1): Conv/Linear weights redrawn N(0, 1) with zero biases and norm-layer scales 1,
    shifts 0 (:func:`lswag.probe.initialise` ``"normal"``); x and ε are N(0, 1) of the probe batch's
    shape; γ = ``mixup_gamma`` = 1e-2. Then :func:`zen_score`: Δ = mean over the batch of the summed
    |f(x) − f(x + γε)| over the feature map's units (NASLib sums over C, H, W and averages over B),
    plus, for every BatchNorm (BatchNorm1d/2d/3d; NASLib: BatchNorm2d) layer, ln sqrt of the mean
    over channels of ``running_var`` after both forwards (momentum as the layer's, 0.1 by default:
    σ² = 0.81 + 0.09 v₁ + 0.1 v₂ with v the unbiased batch variances -- exactly what NASLib and the
    Zen-NAS code read; ``bn_statistic="batch"`` takes the biased batch variance of the first forward
    instead, the quantity of the Zen-NAS paper). The score is the mean over ``repeats`` (NASLib: 1;
    Zen-NAS's own search: 32).

    All draws come from one CPU generator seeded with ``seed``: per repeat a weight seed
    (``randint(2**62)``), then x, then ε. The feature map: see :class:`PrePoolingFeature`; the
    fallback, when the network has no map before its last Linear, is the logits
    (``feature="logits"`` forces it). Networks without BatchNorm (BN-free, LayerNorm, GroupNorm)
    get a BN term of 0, as in NASLib, which sums over BatchNorm2d layers only; a BatchNorm that does
    not track running statistics fails under ``"running"`` (NASLib would crash). Fails when the
    map does not change with the input (Δ = 0: NASLib's −1e8 cells with no input-output path).
    """
    _check_zen(repeats, mixup_gamma, bn_statistic, feature, seed)
    require_float_input(record, "zen", "it feeds the network Gaussian noise")
    x = record.batch.x
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(repeats):
        weight_seed = int(torch.randint(2 ** 62, (1,), generator=generator))
        inputs = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        net = private_copy(model)
        for layer in _batchnorms(net):
            layer.reset_running_stats()
        initialise(net, "normal", weight_seed)
        scores.append(zen_score(net, inputs, noise, mixup_gamma=mixup_gamma, bn_statistic=bn_statistic,
                                feature=feature, pick_logits=record.logits))
    return float(np.mean(scores))
