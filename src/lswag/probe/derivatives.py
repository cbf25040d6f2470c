"""The derivatives the passes take of a forward's loss or logits: the weight gradient, grasp's
Hessian-vector product, the input Jacobian and the empirical NTK."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from lswag.probe.vocabulary import UNIT_BLOCK


def first_gradient(loss: torch.Tensor, weights: list[tuple[str, torch.Tensor]],
                   create_graph: bool, retain_graph: bool = False) -> dict[str, torch.Tensor]:
    """g = ∂L/∂W of each layer's weight (zeros where the loss does not reach it); differentiable
    again with ``create_graph`` (for :func:`hessian_gradient`); ``retain_graph`` keeps the forward's
    graph for another backward."""
    tensors = [weight for _, weight in weights]
    grads = [None] * len(tensors)
    if tensors and loss.requires_grad:   # a network without parameters has no gradient to record
        grads = torch.autograd.grad(loss, tensors, create_graph=create_graph,
                                    retain_graph=create_graph or retain_graph, allow_unused=True)
    return {name: torch.zeros_like(weight) if grad is None else grad
            for (name, weight), grad in zip(weights, grads)}


def hessian_gradient(first: dict[str, torch.Tensor], weights: list[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """H g for the layers' weights: H g = ∂(Σ_W stopgrad(g) · ∂L/∂W)/∂W, ``first`` being ∂L/∂W
    with its graph.

    H is the Hessian of the loss over the Conv/Linear weights only (other parameters are constants
    here), as in GraSP/NAS-Bench-Suite-Zero. Weights the loss does not reach get zeros.
    """
    zeros = {name: torch.zeros_like(weight) for name, weight in weights}
    terms = [(grad.detach() * grad).sum() for grad in first.values() if grad.requires_grad]
    if not terms:                       # the gradient does not depend on any weight
        return zeros
    second = torch.autograd.grad(sum(terms), [weight for _, weight in weights], allow_unused=True)
    return {name: zeros[name] if hv is None else hv.detach() for (name, _), hv in zip(weights, second)}


def twice_differentiable_attention():
    """Attention by the math kernel: the fused CPU/GPU kernels of scaled_dot_product_attention
    have no double backward, which the Hessian-vector product needs (ViTs)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:   # torch < 2.3 has no fused CPU kernel to avoid
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def differentiable_input(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)


def jacobian_rows(x: torch.Tensor, logits: torch.Tensor, retain_graph: bool = False) -> tuple[torch.Tensor, int]:
    """(B, D) rows ∂(Σ logits)/∂x_b of an input ``x`` that requires grad, and the logits' last-axis width."""
    width = int(logits.shape[-1]) if logits.dim() else 1
    grad = None
    if logits.requires_grad:
        (grad,) = torch.autograd.grad(logits.sum(), x, retain_graph=retain_graph, allow_unused=True)
    if grad is None:             # the output does not depend on the input
        grad = torch.zeros_like(x)
    return grad.detach().reshape(x.shape[0], -1), width


def empirical_ntk(logits: torch.Tensor, weights: list[torch.Tensor], samples: int) -> np.ndarray:
    """Θ = G Gᵀ (S × S, float64) of the first ``samples`` rows of ``logits``: row b of G is
    ∂(Σ_c logits[b, c])/∂θ over ``weights``, one backward per sample through the forward that gave
    the logits. G is held in the weights' dtype (S × #weights); the products are summed in float64."""
    if not weights or not logits.requires_grad:
        return np.zeros((samples, samples))
    rows = []
    for b in range(samples):
        grads = torch.autograd.grad(logits[b].sum(), weights, retain_graph=b < samples - 1, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(weights, grads)]))
    stacked = torch.stack(rows)
    kernel = torch.zeros(samples, samples, dtype=torch.float64, device=stacked.device)
    for c0 in range(0, stacked.shape[1], UNIT_BLOCK * 16):
        chunk = stacked[:, c0:c0 + UNIT_BLOCK * 16].to(torch.float64)
        kernel += chunk @ chunk.T
    return kernel.cpu().numpy()
