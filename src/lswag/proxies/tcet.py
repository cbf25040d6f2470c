"""T-CET (Xiang et al., "Exploiting network compressibility and topology in zero-cost NAS", AutoML 2023)."""
from __future__ import annotations

import math

import torch

from lswag.probe import Record
from lswag.proxies import ProxyFailure, proxy
from lswag.proxies.inputs import require_float_input
from lswag.proxies.synflow import synflow_saliency


def saliency_snr(saliency: torch.Tensor) -> float:
    """Σ_i s_i / std(s) over one layer's per-weight saliencies (std with ddof 1); Σ_i s_i when the std
    is 0 or undefined (a single weight), as the public T-CET implementation."""
    values = saliency.detach().reshape(-1).to(torch.float64)
    total = float(values.sum())
    if values.numel() < 2:
        return total
    sigma = float(values.std(unbiased=True))
    return total if sigma == 0 else total / sigma


@proxy("tcet", needs={"layer_kernels"}, own_pass=("1-sample float64 |w| forward+backward, BN off", "forward+backward"))
def tcet(record: Record, model) -> float:
    """Σ_l lnwot_l · SNR_l over Conv/Linear layers (T-CET: layer-wise NWOT times the SNR of the SynFlow saliency).

    lnwot_l = ln|det K_l|, K_l = c cᵀ + (1 − c)(1 − c)ᵀ with c the binary codes 1[out > 0] of layer
    l's own output over the probe's batch (its first call). SNR_l = Σ_i s_i / std(s), s = the
    per-weight SynFlow saliency |w ⊙ ∂R/∂w| of the layer (BN-free |w| copy, float64, all-ones
    input; :func:`lswag.proxies.synflow.synflow_saliency`), std with ddof 1, Σ s alone when the std
    is 0. The paper's text was not available here; this follows the public re-implementation
    (iViolinSolo/zero-cost-proxies ``t_cet.py``, metric ``tcet``: saliency ``synflow``, mode
    ``none``; its ``snip`` and log/norm variants are not offered) with two corrections:

    * layers are paired with their saliency by name (the reference zips execution-ordered kernels
      with module-ordered saliencies, which differ when a network runs layers out of definition order);
    * the kernels come from the probe's pass in train mode (the reference runs eval mode).

    As in the reference a layer whose kernel is singular (two samples share its whole pattern)
    contributes 0. Layers that receive no SynFlow gradient are skipped. Fails on a non-finite
    layer output, when no layer has both terms, and when every layer's kernel is singular (the
    reference would return 0).
    """
    require_float_input(record, "tcet", "its SynFlow saliency feeds the network an all-ones input")
    broken = next((layer.name for layer in record.layers
                   if layer.output_logdet is not None and math.isnan(layer.output_logdet)), None)
    if broken is not None:
        raise ProxyFailure(f"non-finite output of layer {broken}")
    saliency = synflow_saliency(model, record.batch.x.shape[1:], record.batch.x.device, record.logits)
    pairs = [(layer.output_logdet, saliency[layer.name]) for layer in record.layers
             if layer.output_logdet is not None and layer.name in saliency]
    if not pairs:
        raise ProxyFailure("no Conv/Linear layer has both a recorded output kernel and a SynFlow saliency")
    if all(logdet == -math.inf for logdet, _ in pairs):
        raise ProxyFailure("every layer's NWOT kernel is singular (samples share whole layer patterns)")
    return sum((0.0 if logdet == -math.inf else logdet) * saliency_snr(s) for logdet, s in pairs)
