"""The probe: the one place where lswag runs a network and records what the proxies need.

A proxy never runs the network itself (synflow and flops aside, which need a differently
configured copy). ``record(model, batch, needs)`` runs only the passes that the union of the
requested proxies' needs calls for, on a private deep copy of the model, so the caller's model
is left exactly as it was (parameters, buffers, train/eval mode, requires_grad, hooks):

* ``patterns`` pass, forward only on the whole batch: for every activation site (the output of a
  ReLU, ReLU6, LeakyReLU, GELU or SiLU module, in execution order; in a network with no such
  module, the output of each call of the same functions, ``F.gelu``, ``torch.relu``, ``x.relu()``) the number Λ of distinct
  binarised sample-wise patterns ``(1[a_n(x_1) > 0], ..., 1[a_n(x_B) > 0])`` over its units n
  (every element of the map except the batch axis; 2-D, 3-D and 4-D tensors alike); optionally
  the NWOT kernel summed over sites (``kernel``), the number of distinct patterns over the
  units of all sites together (``union``, network-level SWAP), Λ of each layer's own output
  (``layer_outputs``; without it, only of a layer no site feeds or follows, l_swag's fallback)
  and, per layer, ln|det K_l| of the NWOT kernel of its own output's sign (``layer_kernels``,
  T-CET). ``out > 0`` equals ``input > 0`` for all these activations (GELU and SiLU included),
  so one binarisation serves ReLU and GELU networks. When a gradient pass runs, the patterns
  are recorded on its forward (the same whole-batch forward in train mode) and no pass of their
  own runs.
* ``gradient`` pass, forward + backward on the whole batch: each layer's weight gradient. With
  the ``fisher`` need, the same pass also records, for each layer and output channel k,
  ``½ mean_n (Σ_positions A ⊙ G)²_{n,k}`` with A the layer's own output (before any norm or
  activation) and G = ∂L/∂A, summed over the layer's calls (the fisher proxy). With
  ``fisher_suite_zero``, NASLib's reduction of the same A ⊙ G: Σ over every axis after the
  second, ``Σ_i ½ mean_n (Σ_{axes ≥ 2} A ⊙ G)²_{n,i}`` over the indices i of A's axis 1 (the
  channels of a Conv, the tokens of a Linear on (B, T, C)), one number per layer.
* ``hessian``, on the gradient pass (its backward keeps its graph): the Hessian-vector product
  H g = ∂(Σ_W stopgrad(g) · ∂L/∂W)/∂W with g = ∂L/∂W (grasp), one more backward.
* ``draws`` passes: the batch split into M chunks, one forward + backward per chunk: each layer's
  M gradient draws (ZiCo, L-SWAG). ``draw_window`` [p1, p2] records them only for the layers of
  those depth percentiles, and the backward computes nothing else: it stops at the window's first
  layer and skips the weight gradients above it (the values are those of a full backward). With
  ``draw_patterns`` (``draw_layer_outputs``) the chunks' forwards also record Λ of every site (of
  every layer's own output) over the whole batch, each chunk normalised by its own BatchNorm
  statistics: :attr:`Record.draw_sites`.
* ``jacobian`` pass, forward + backward on the whole batch with the input requiring grad: the
  input Jacobian ``∂(Σ logits)/∂x``, one flattened row per sample (jacov, epe_nas), and the
  width of the logits (their last axis). When the gradient pass runs, its forward serves the
  Jacobian too and only the backward with respect to the input is added.
* ``features`` pass (need ``blocks``), forward on the whole batch + one vector-Jacobian product per
  pair of consecutive blocks: AZ-NAS's per-block statistics (:class:`BlockRecord`). The blocks are
  the children of one container or of a network's stage containers, found by :func:`block_containers`.
  When the gradient pass runs, its forward keeps the block maps and only the products are added.
* ``ntk`` pass, forward of the first S examples (``ntk_samples``, default all) + S backward: the
  empirical NTK Θ = G Gᵀ (S × S, float64), row b of G the gradient of Σ_c logits[b, c] with
  respect to every parameter whose name contains ``weight`` (TE-NAS).

"Layers" are the weight-carrying modules (Conv1d/2d/3d, ConvTranspose, Linear) in forward
execution order (recorded by hooks, not ``named_modules()`` order); a layer's depth percentile
is ``ceil(10 * l / L)`` for the l-th of L layers (1-based), and the same rule places the sites.
The network runs in train mode (BatchNorm uses batch statistics) with dropout and drop-path
disabled, as zero-cost proxies are defined at initialisation. :func:`initialise` redraws a
network's weights for the other initialisations of METHOD.md §1.

The package's modules: :mod:`~lswag.probe.vocabulary` (layer and site types, needs, passes,
costs, constants), :mod:`~lswag.probe.records` (what a probe records), :mod:`~lswag.probe.tensors`
(memory order, finiteness, logits), :mod:`~lswag.probe.patterns` (packed pattern codes, NWOT
kernel), :mod:`~lswag.probe.preparation` (private copy, initialisation, batch),
:mod:`~lswag.probe.hooks` (the hooks and the state they fill), :mod:`~lswag.probe.blocks` (AZ-NAS's
blocks and their statistics), :mod:`~lswag.probe.derivatives` (gradient, H g, input Jacobian, NTK)
and :mod:`~lswag.probe.passes` (the passes and :func:`record`).
"""
from lswag.probe.blocks import DeclaresBlocks, block_containers, block_gain, feature_entropy
from lswag.probe.passes import record
from lswag.probe.patterns import count_unique, nwot_kernel, pack_bytes, sample_codes, unique_codes, words_of
from lswag.probe.preparation import initialise, private_copy
from lswag.probe.records import BlockRecord, LayerRecord, Record, SiteRecord, percentile
from lswag.probe.tensors import all_finite, in_memory_order, logits_of
from lswag.settings import INITS  # the initialisations a network can be scored with (initialise)
from lswag.probe.vocabulary import (ACTIVATION_TYPES, COST_CLASSES, ENTROPY_EPS, FUNCTIONAL_ACTIVATIONS,
                                    LAYER_TYPES, NEEDS, NORM_TYPES, PASS_COST, PASS_OF_NEED, PERC_BINS,
                                    RADEMACHER_SEED)

# the name lswag.proxies.zen imports

__all__ = [
    "ACTIVATION_TYPES", "COST_CLASSES", "ENTROPY_EPS", "FUNCTIONAL_ACTIVATIONS", "INITS", "LAYER_TYPES", "NEEDS",
    "NORM_TYPES", "PASS_COST", "PASS_OF_NEED", "PERC_BINS", "RADEMACHER_SEED",
    "BlockRecord", "LayerRecord", "Record", "SiteRecord", "percentile",
    "all_finite", "in_memory_order", "logits_of",
    "count_unique", "nwot_kernel", "pack_bytes", "sample_codes", "unique_codes", "words_of",
    "initialise", "private_copy",
    "DeclaresBlocks", "block_containers", "block_gain", "feature_entropy",
    "record",
]
