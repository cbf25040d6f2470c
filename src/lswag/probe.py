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
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from lswag.data import Batch
from lswag.errors import LswagError, unknown_choice

LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU)
#: the same activations called as functions; recorded only in networks without activation modules
FUNCTIONAL_ACTIVATIONS = frozenset({"relu", "relu6", "leaky_relu", "gelu", "silu"})
#: what a proxy can need -> the pass that records it
PASS_OF_NEED = {"patterns": "patterns", "kernel": "patterns", "union": "patterns", "layer_outputs": "patterns",
                "layer_kernels": "patterns", "gradient": "gradient", "draws": "draws", "fisher": "gradient",
                "fisher_suite_zero": "gradient",
                "draw_patterns": "draws", "draw_layer_outputs": "draws",
                "hessian": "hessian", "input_jacobian": "jacobian", "blocks": "features", "ntk": "ntk"}
NEEDS = frozenset(PASS_OF_NEED)
#: cost classes, cheapest first: what the most expensive pass a proxy needs does to the network
COST_CLASSES = ("weights only", "forward", "forward+backward", "double backward", "one backward per sample")
#: each pass's cost class
PASS_COST = {"patterns": "forward", "gradient": "forward+backward", "draws": "forward+backward",
             "jacobian": "forward+backward", "features": "forward+backward", "hessian": "double backward",
             "ntk": "one backward per sample"}
#: weight initialisations a network can be scored with (METHOD.md §1); "given" keeps its own weights
INITS = ("given", "kaiming", "normal")
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
PERC_BINS = 10
# Units are packed a block at a time so that a 224x224 feature map never needs an int64 copy.
_UNIT_BLOCK = 1 << 16
#: seed of the CPU generator that draws the ±1 output gradients of the ``features`` pass (AZ-NAS trainability)
RADEMACHER_SEED = 0
#: the constant AZ-NAS adds inside its logarithm of the eigenvalue shares
ENTROPY_EPS = 1e-8


@dataclass
class LayerRecord:
    """One weight-carrying module, in forward execution order."""

    name: str
    kind: str
    weight: torch.Tensor                      # the weight at probe time (of the probe's private copy of the model)
    percentile: int                           # ceil(10 l / L), 1..10
    input_site: int | None = None             # index of the activation site whose output it consumed
    next_site: int | None = None              # first activation site executed after it
    gradient: torch.Tensor | None = None      # dL/dw on the whole batch
    gradient_draws: torch.Tensor | None = None  # (M, *weight.shape), one per batch chunk
    # Λ of the sign of its own output, from the patterns pass: every layer's with ``layer_outputs``, else
    # only for a layer no activation site feeds or follows (l_swag's fallback); None when not recorded
    output_patterns: int | None = None
    draw_output_patterns: int | None = None   # the same, over the draws passes (``draw_patterns``)
    fisher: torch.Tensor | None = None        # (C_out,) float64: Σ_calls ½ mean_n (Σ_pos A⊙G)² per channel
    # 0-d float64: Σ_calls Σ_i ½ mean_n (Σ_{axes ≥ 2} A⊙G)²_{n,i}, i over A's axis 1 (NASLib's reduction)
    fisher_suite_zero: torch.Tensor | None = None
    hessian_gradient: torch.Tensor | None = None  # H g, the Hessian-vector product, weight-shaped
    # ln|det K| of the NWOT kernel of its own output's sign (``layer_kernels``); -inf when K is singular,
    # nan when the output held NaN/inf
    output_logdet: float | None = None
    # proxies memoise statistics derived from the fields above (a record is read-only once built)
    derived: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class SiteRecord:
    """One activation site (the output of an activation module), in execution order."""

    name: str
    kind: str
    units: int          # elements per sample
    percentile: int
    finite: bool = True  # False when the output held NaN or inf (its patterns mean nothing)
    #: (units, W) int64: each unit's binarised sample-wise pattern packed as bits (see :func:`words_of`)
    codes: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _distinct: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def distinct_codes(self) -> torch.Tensor:
        """The distinct rows of ``codes``, sorted; computed on first use (a proxy whose depth window
        leaves a site out never pays for its sort)."""
        if self._distinct is None:
            self._distinct = unique_codes(self.codes)
        return self._distinct

    @property
    def patterns(self) -> int:
        """Λ: the number of distinct binarised sample-wise patterns over the units."""
        return int(self.distinct_codes.shape[0])


@dataclass
class BlockRecord:
    """One feature map of the ``features`` pass (AZ-NAS), in execution order.

    ``entropy`` is AZ-NAS's expressivity of the map: the entropy −Σ_k p_k ln(p_k + 1e-8) of the
    eigenvalue shares p = λ / Σλ of the channel covariance, samples being every (sample, position)
    pair (positions: H×W of a 4-D map, tokens of a 3-D one, none of a 2-D one), float64, ddof 0.
    ``gain`` is the spectral norm σ_max of M = G_inᵀ G_out / N, G_out a ±1 gradient drawn for this
    map and G_in its vector-Jacobian product back to the previous map (rows aligned as described in
    :func:`block_gain`); None for the first map, and when ``problem`` says why it could not be taken.
    ``identity`` is True when G_in equals G_out exactly (the block passes the previous map through
    unchanged), which AZ-NAS scores −inf.
    """

    name: str
    shape: tuple[int, ...]
    entropy: float
    gain: float | None = None
    identity: bool = False
    problem: str | None = None


@dataclass
class Record:
    """What one probe recorded; proxies are functions of it (and of the model)."""

    batch: Batch
    layers: list[LayerRecord]
    sites: list[SiteRecord]
    kernel: np.ndarray | None = None          # NWOT kernel, B x B, float64
    #: ``draw_patterns``: the sites with Λ counted over the draws passes (each chunk normalised by its own
    #: BatchNorm statistics) instead of one whole-batch forward; None when not recorded
    draw_sites: list[SiteRecord] | None = None
    network_patterns: int | None = None       # distinct patterns over all sites' units together
    loss: float | None = None                 # loss of the whole-batch gradient pass
    input_jacobian: torch.Tensor | None = None  # (B, D): ∂(Σ logits)/∂x, each sample's row flattened
    output_width: int | None = None           # size of the logits' last axis (classes), jacobian pass
    blocks: list[BlockRecord] | None = None   # ``features`` pass: the block feature maps, in execution order
    block_container: str | None = None        # qualified names of the containers whose children are the blocks
    ntk: np.ndarray | None = None             # ``ntk`` pass: B x B float64 empirical NTK
    #: the depth percentiles [p1, p2] whose layers have gradient draws; None: every layer
    draw_window: tuple[int, int] | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each pass
    #: the ``output`` callable given to :func:`record`, if any (see :meth:`logits`)
    pick_logits: Callable | None = field(default=None, repr=False, compare=False)

    def logits(self, output) -> torch.Tensor:
        """The logits in a model output, picked as the probe picked them; proxies that run their
        own copy of the model (synflow, flops, zen) go through this too."""
        return (self.pick_logits or logits_of)(output)

    @property
    def num_draws(self) -> int:
        draws = next((layer.gradient_draws for layer in self.layers if layer.gradient_draws is not None), None)
        return 0 if draws is None else draws.shape[0]


def percentile(position: int, count: int) -> int:
    """Depth percentile ``ceil(PERC_BINS * position / count)`` of the 1-based ``position``."""
    return math.ceil(PERC_BINS * position / count)


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


def pack_bytes(active: torch.Tensor) -> torch.Tensor:
    """Pack a (B, U) boolean map into (ceil(B/8), U) uint8: column u holds unit u's sample-wise
    pattern as bits, sample b in bit b % 8 of byte b // 8 (padding bits 0 for every unit)."""
    batch, units = active.shape
    padded = batch + (-batch) % 8
    if padded != batch:
        active = torch.cat([active, active.new_zeros(padded - batch, units)])
    bits = torch.arange(8, dtype=torch.uint8, device=active.device)[:, None]
    # a bool tensor is stored as 0/1 bytes: viewed as uint8 it needs no copy
    return (active.contiguous().view(torch.uint8).view(padded // 8, 8, units) << bits).sum(1, dtype=torch.uint8)


def words_of(byte_chunks: list[torch.Tensor]) -> torch.Tensor:
    """(U, W) int64 codes from the byte patterns (:func:`pack_bytes`) of consecutive chunks of
    the batch, concatenated: two units have the same code exactly when they have the same pattern
    over every chunk."""
    packed = torch.cat(byte_chunks) if len(byte_chunks) > 1 else byte_chunks[0]
    if packed.shape[0] % 8:
        packed = torch.cat([packed, packed.new_zeros(8 - packed.shape[0] % 8, packed.shape[1])])
    return packed.T.contiguous().view(torch.int64)


def unique_codes(codes: torch.Tensor) -> torch.Tensor:
    """The distinct rows of packed codes (U, W).

    ``torch.unique(dim=0)`` is ~100x slower than a 1-D unique, so one-word codes (B <= 64) use the
    latter and longer ones NumPy's unique over each row's bytes.
    """
    if codes.shape[1] == 1:
        return torch.unique(codes[:, 0]).unsqueeze(1)
    rows = np.ascontiguousarray(codes.cpu().numpy())
    distinct = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))))
    return torch.from_numpy(distinct.view(rows.dtype).reshape(-1, rows.shape[1]).copy()).to(codes.device)


def sample_codes(sites: list[SiteRecord], batch: int) -> torch.Tensor:
    """(B, W) int64 codes of each sample's pattern over every unit of ``sites`` (of a whole-batch
    pass, whose codes hold ``batch`` sample bits per unit): two samples have the same code exactly
    when they are in the same linear region of the network."""
    bits = torch.arange(8, dtype=torch.uint8)
    unit_maps = []
    for site in sites:
        packed = site.codes.cpu().contiguous().view(torch.uint8)        # (U, bytes): sample b in bit b % 8
        unit_maps.append(((packed.unsqueeze(-1) >> bits) & 1).flatten(1)[:, :batch].bool())
    return words_of([pack_bytes(torch.cat(unit_maps))])                   # packed along the units


def count_unique(codes: torch.Tensor) -> int:
    """Number of distinct rows of packed codes."""
    return int(unique_codes(codes).shape[0])


def nwot_kernel(active: torch.Tensor) -> torch.Tensor:
    """NWOT's c cᵀ + (1−c)(1−c)ᵀ for a (B, U) boolean map: units minus Hamming distance, float64."""
    batch, units = active.shape
    kernel = torch.zeros(batch, batch, dtype=torch.float64, device=active.device)
    for u0 in range(0, units, _UNIT_BLOCK):
        c = active[:, u0:u0 + _UNIT_BLOCK].to(torch.float32)  # block sums < 2^24: exact in float32
        ones = c.sum(1, keepdim=True)
        block = 2 * (c @ c.T) - ones - ones.T + c.shape[1]
        kernel += block.to(torch.float64)
    return kernel


def in_memory_order(tensor: torch.Tensor) -> torch.Tensor:
    """A view of ``tensor`` whose dimensions follow its memory: a channels-last map (B, C, H, W)
    as (B, H, W, C), so that flattening it or reducing over it needs no copy; others unchanged."""
    if tensor.dim() == 4 and not tensor.is_contiguous() and tensor.is_contiguous(memory_format=torch.channels_last):
        return tensor.permute(0, 2, 3, 1)
    return tensor


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or inf in ``tensor``; min/max propagate NaN, and are ~10x cheaper than ``isfinite``."""
    return bool(torch.isfinite(torch.stack(torch.aminmax(in_memory_order(tensor.detach())))).all())


def _binarised(output: torch.Tensor) -> torch.Tensor:
    """(B, units) sign map of ``output``; units in memory order, which no pattern count depends on."""
    return (in_memory_order(output.detach()) > 0).reshape(output.shape[0], -1)


def _kernel_logdet(output: torch.Tensor) -> float:
    """ln|det K| of the NWOT kernel of ``output > 0`` (B × units), or -inf when K is singular.

    K is a sum of Gram matrices, so det K >= 0; a sign <= 0 from the LU factorisation means singular.
    """
    sign, logdet = np.linalg.slogdet(nwot_kernel(_binarised(output)).cpu().numpy())
    return float(logdet) if sign > 0 else -math.inf


def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy in probe mode: no user hooks, train mode, dropout/drop-path off, all parameters trainable."""
    clone = copy.deepcopy(model)
    clone.train()
    for module in clone.modules():
        # deepcopy copies the user's hooks; they may have side effects, so the copy runs without them
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
                      module._backward_pre_hooks):
            hooks.clear()
        kind = type(module).__name__
        if isinstance(module, nn.modules.dropout._DropoutNd) or "DropPath" in kind or "Dropout" in kind:
            module.eval()
    for parameter in clone.parameters():
        parameter.requires_grad_(True)
    return clone


def initialise(net: nn.Module, init: str, seed: int) -> None:
    """Redraw ``net``'s Conv/Linear weights in place: ``kaiming`` is N(0, 2/fan_in) (He et al.,
    fan-in, ReLU gain), ``normal`` is N(0, 1); their biases become 0 and norm layers' affine
    parameters 1 and 0. Draws come from a CPU generator seeded with ``seed``, in module order,
    so the result is the same on every device. ``given`` leaves the weights as they are.
    """
    if init not in INITS:
        raise unknown_choice("init", init, INITS)
    if init == "given":
        return
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, LAYER_TYPES):
                weight = module.weight
                std = math.sqrt(2.0 / weight[0].numel()) if init == "kaiming" else 1.0
                weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype) * std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, NORM_TYPES) and getattr(module, "weight", None) is not None:
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()


class _Patterns:
    """The activation patterns of one pass over the batch, run whole or as consecutive chunks.

    Each chunk runs the same network, so its sites are matched to the first chunk's by order of
    execution. A site's sample-wise bits are packed per chunk and the chunks' bytes concatenated,
    so the patterns counted at the end run over the whole batch whatever the chunking (each
    chunk's BatchNorm having used its own statistics). The B × B products (``kernel``,
    ``layer_kernels``) and ``union`` are recorded by a pass that runs the batch whole.

    A layer's own output is packed when it is asked for (``outputs_of_all_layers``) or when the
    layer may need it as the fallback of l_swag's pairing: no site feeds it and no site runs after
    it. Such a layer's output is binarised when it runs and dropped when the next site runs.
    """

    def __init__(self, needs: frozenset[str], whole: bool, outputs_of_all_layers: bool):
        self.needs, self.whole, self.outputs_of_all_layers = needs, whole, outputs_of_all_layers
        self.sites: list[dict] = []          # name, kind, units, chunks (byte codes), finite
        self.layers: dict[str, dict] = {}    # name -> input_site, sites_before, chunks, logdet
        self.kernel: torch.Tensor | None = None
        self.chunk = 0
        self._calls = 0
        self._pending: dict[str, torch.Tensor] = {}   # fallback candidates awaiting a site
        self._site_of_tensor: dict[int, tuple[weakref.ref, int]] = {}

    def end_chunk(self) -> None:
        for name, active in self._pending.items():
            self.layers[name]["chunks"].append(pack_bytes(active))
        self._pending.clear()
        self._site_of_tensor.clear()
        self._calls = 0
        self.chunk += 1

    def layer_called(self, name: str, inputs) -> None:
        if name not in self.layers:
            self.layers[name] = {"input_site": self._site_feeding(inputs[0] if inputs else None),
                                 "sites_before": len(self.sites), "chunks": [], "finite": True, "chunk": -1}

    def layer_output(self, name: str, output) -> None:
        info = self.layers.get(name)
        if info is None or info["chunk"] == self.chunk or not isinstance(output, torch.Tensor) or output.dim() < 1:
            return
        info["chunk"] = self.chunk    # a layer called twice (weight sharing) is read on its first call
        info["finite"] = info["finite"] and all_finite(output)
        if self.outputs_of_all_layers:
            info["chunks"].append(pack_bytes(_binarised(output)))
        elif info["input_site"] is None:
            self._pending[name] = _binarised(output)
        if self.whole and "layer_kernels" in self.needs:
            info["logdet"] = _kernel_logdet(output) if all_finite(output) else math.nan

    def site_output(self, name: str, kind: str, output) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() < 2:
            return
        index = self._calls
        self._calls += 1
        active = _binarised(output)
        if self.chunk == 0:
            self.sites.append({"name": name, "kind": kind, "units": active.shape[1], "chunks": [], "finite": True})
        elif index >= len(self.sites) or self.sites[index]["name"] != name:
            raise LswagError(f"the network ran different activation sites on two chunks of the batch "
                             f"(call {index + 1}: {name}); it must run the same way for every input")
        site = self.sites[index]
        site["chunks"].append(pack_bytes(active))
        site["finite"] = site["finite"] and all_finite(output)
        self._site_of_tensor[id(output)] = (weakref.ref(output), index)
        self._pending.clear()
        if self.whole and "kernel" in self.needs:
            site_kernel = nwot_kernel(active)
            self.kernel = site_kernel if self.kernel is None else self.kernel + site_kernel

    def _site_feeding(self, tensor) -> int | None:
        if not isinstance(tensor, torch.Tensor):
            return None
        entry = self._site_of_tensor.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return None

    def site_records(self) -> tuple[list[SiteRecord], int | None]:
        """The sites (Λ counted when first read), and (``union``) the distinct patterns over all their units."""
        sites = [SiteRecord(name=site["name"], kind=site["kind"], units=site["units"],
                            percentile=percentile(i + 1, len(self.sites)), finite=site["finite"],
                            codes=words_of(site["chunks"]))
                 for i, site in enumerate(self.sites)]
        union = None
        if self.whole and "union" in self.needs and sites:   # each site's Λ_s distinct rows, merged once
            union = count_unique(torch.cat([site.distinct_codes for site in sites]))
        return sites, union

    def next_site(self, name: str) -> int | None:
        before = self.layers[name]["sites_before"] if name in self.layers else None
        return before if before is not None and before < len(self.sites) else None

    def output_patterns(self, name: str) -> int | None:
        """Λ of the layer's own output; None when it was not kept or held NaN/inf."""
        info = self.layers.get(name)
        if info is None or not info["chunks"] or not info["finite"]:
            return None
        if len(info["chunks"]) != self.chunk:     # not seen on every chunk
            return None
        return count_unique(words_of(info["chunks"]))


class _Recorder:
    """Hooks for one probe run; every handle is removed when the ``hooks`` context exits."""

    def __init__(self, model: nn.Module):
        self.layer_modules = [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
        self.site_modules = [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]
        self.layer_order: list[str] = []          # layer names in first-execution order
        self.layer_info: dict[str, dict] = {}
        self.patterns: _Patterns | None = None    # the pattern state of the pass that runs, if it records them
        self.fisher: dict[str, dict[str, torch.Tensor]] = {}   # fisher need -> layer name -> its terms

    @contextlib.contextmanager
    def hooks(self, patterns: _Patterns | None = None):
        """Hooks for one forward: layer order always; activation patterns into ``patterns`` when given."""
        self.patterns = patterns
        with contextlib.ExitStack() as stack:
            for name, module in self.layer_modules:
                stack.callback(module.register_forward_pre_hook(self._layer_pre_hook(name)).remove)
                if patterns is not None:
                    stack.callback(module.register_forward_hook(self._layer_post_hook(name)).remove)
            if patterns is not None:
                for name, module in self.site_modules:
                    stack.callback(module.register_forward_hook(self._site_hook(name)).remove)
                if not self.site_modules:
                    stack.enter_context(_FunctionalActivations(self))
            try:
                yield
            finally:
                if patterns is not None:
                    patterns.end_chunk()
                self.patterns = None

    @contextlib.contextmanager
    def fisher_hooks(self, needs: frozenset[str]):
        """Forward hooks on every layer that hook the gradient of its output (removed on exit);
        ``needs`` are the fisher needs whose reductions :meth:`_add_fisher` takes.

        The output is copied when recorded, so that an in-place operation after the layer (e.g.
        ``ReLU(inplace=True)``) cannot change A; a tensor hook registered before such an operation
        receives the gradient with respect to the value before it (PyTorch's documented rule).
        """
        self.fisher = {need: {} for need in needs}
        tensor_handles: list = []

        def forward_hook(name):
            def hook(module, inputs, output):
                if not isinstance(output, torch.Tensor) or output.dim() < 2 or not output.requires_grad:
                    return
                activation = output.detach().clone()
                channel_axis = -1 if isinstance(module, nn.Linear) else 1
                tensor_handles.append(output.register_hook(
                    lambda grad: self._add_fisher(name, activation, grad, channel_axis)))
            return hook

        with contextlib.ExitStack() as stack:
            for name, module in self.layer_modules:
                stack.callback(module.register_forward_hook(forward_hook(name)).remove)
            try:
                yield
            finally:
                for handle in tensor_handles:
                    handle.remove()

    def _add_fisher(self, name, activation, grad, channel_axis):
        product = activation * grad.detach()
        for need, terms in self.fisher.items():
            # "fisher": Σ over positions per channel; "fisher_suite_zero": NASLib's Σ over the axes
            # after the second, which on a Linear's (B, T, C) output sums the channels of each token
            per_sample = product.movedim(channel_axis, 1) if need == "fisher" else product
            per_sample = per_sample.reshape(product.shape[0], per_sample.shape[1], -1).sum(2)
            delta = 0.5 * per_sample.to(torch.float64).pow(2).mean(0)
            if need == "fisher_suite_zero":
                delta = delta.sum()
            terms[name] = delta if name not in terms else terms[name] + delta

    def _layer_pre_hook(self, name):
        def hook(module, inputs):
            if name not in self.layer_info:
                self.layer_order.append(name)
                self.layer_info[name] = {"module": module}
            if self.patterns is not None:
                self.patterns.layer_called(name, inputs)
        return hook

    def _layer_post_hook(self, name):
        def hook(module, inputs, output):
            self.patterns.layer_output(name, output)
        return hook

    def _site_hook(self, name):
        def hook(module, inputs, output):
            self.patterns.site_output(name, type(module).__name__, output)
        return hook


class _FunctionalActivations(TorchFunctionMode):
    """Records the outputs of functional activations (``F.gelu``, ``torch.relu``, ``x.relu()``...)
    as sites, for networks that have no activation module; sites are named ``F.<function>#<call>``."""

    def __init__(self, recorder: _Recorder):
        super().__init__()
        self.recorder = recorder
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "").rstrip("_")
        if name in FUNCTIONAL_ACTIVATIONS:
            self.calls += 1
            self.recorder.patterns.site_output(f"F.{name}#{self.calls}", f"F.{name}", output)
        return output


def _loss(model, batch: Batch, loss_fn, output) -> torch.Tensor:
    logits = (output or logits_of)(model(batch.x))
    return loss_fn(logits, batch.y)


def record(model: nn.Module, batch: Batch, needs: Iterable[str], *, gradient_draws: int = 2,
           loss_fn: Callable | None = None, output: Callable | None = None, ntk_samples: int | None = None,
           draw_window: tuple[int, int] | None = None,
           memory_format: torch.memory_format = torch.contiguous_format) -> Record:
    """Run the passes that ``needs`` (a subset of :data:`NEEDS`) call for and return the record.

    ``gradient_draws`` is M, the number of chunks the batch is split into for the ``draws``
    passes. ``loss_fn(logits, y)`` defaults to cross-entropy; ``output`` picks the logits from the
    model's output when :func:`logits_of` cannot. ``ntk_samples`` limits the ``ntk`` pass to the
    first examples of the batch (None: all of it). ``draw_window`` (p1, p2) limits the ``draws``
    passes to the layers of depth percentiles p1..p2 (None: every layer). ``memory_format`` is
    the layout the private copy's 4-D weights and the batch's images run in
    (``torch.channels_last`` speeds up the convolutions of some networks on CPU; values change
    only by rounding).
    """
    needs = frozenset(needs)
    if needs - NEEDS:
        raise unknown_choice("probe need", sorted(needs - NEEDS)[0], NEEDS)
    if "draws" in needs and not 1 <= gradient_draws <= len(batch):
        raise LswagError(f"gradient_draws must be between 1 and the batch size {len(batch)}, got {gradient_draws}")
    if draw_window is not None and not 1 <= draw_window[0] <= draw_window[1] <= PERC_BINS:
        raise LswagError(f"draw_window {draw_window} must satisfy 1 <= p1 <= p2 <= {PERC_BINS}")
    loss_fn = loss_fn or F.cross_entropy
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = batch.x.to(device)
    batch = Batch(x=x.contiguous(memory_format=memory_format) if x.dim() == 4 else x, y=batch.y.to(device),
                  num_classes=batch.num_classes, source=batch.source)
    net = _private_copy(model).to(memory_format=memory_format)
    recorder = _Recorder(net)
    seconds: dict[str, float] = {}
    loss_value = None
    gradients: dict[str, torch.Tensor] = {}
    draws: dict[str, list[torch.Tensor]] = {}

    passes = {PASS_OF_NEED[need] for need in needs}
    whole_patterns = draw_patterns = None
    if "patterns" in passes:
        whole_patterns = _Patterns(needs, whole=True, outputs_of_all_layers="layer_outputs" in needs)
    differentiated = passes & {"gradient", "hessian"}
    containers = block_containers(net) if "features" in passes else []
    capture = _BlockCapture(containers, net) if containers else None   # None: no blocks to record
    shares_features = capture is not None and bool(differentiated)
    if "patterns" in passes and not differentiated:
        start = time.perf_counter()
        with recorder.hooks(whole_patterns), torch.no_grad():
            net(batch.x)
        seconds["patterns"] = time.perf_counter() - start

    fisher: dict[str, torch.Tensor] | None = None
    fisher_suite_zero: dict[str, torch.Tensor] | None = None
    hessian: dict[str, torch.Tensor] = {}
    jacobian = width = None
    blocks = container = None
    if differentiated:
        # one whole-batch forward serves the patterns, the gradient (and fisher), grasp's H g, the
        # input Jacobian (its backward asks for ∂/∂x only) and AZ-NAS's block maps
        start = time.perf_counter()
        shares_jacobian = "jacobian" in passes and batch.x.is_floating_point()
        x = _differentiable_input(batch.x) if shares_jacobian else batch.x
        fisher_needs = needs & {"fisher", "fisher_suite_zero"}
        fisher_hooks = recorder.fisher_hooks(fisher_needs) if fisher_needs else contextlib.nullcontext()
        attention = _twice_differentiable_attention() if "hessian" in passes else contextlib.nullcontext()
        # entered first, so that the other hooks see the clones the block hooks hand on
        block_hooks = capture.hooks() if shares_features else contextlib.nullcontext()
        with block_hooks, recorder.hooks(whole_patterns), fisher_hooks, attention:
            logits = (output or logits_of)(net(x))
            loss = loss_fn(logits, batch.y)
            weights = [(name, recorder.layer_info[name]["module"].weight) for name in recorder.layer_order]
            first = _first_gradient(loss, weights, create_graph="hessian" in passes,
                                    retain_graph=shares_jacobian or shares_features)
        fisher, fisher_suite_zero = recorder.fisher.get("fisher"), recorder.fisher.get("fisher_suite_zero")
        loss_value = float(loss.detach())
        if "gradient" in needs:
            gradients = {name: grad.detach() for name, grad in first.items()}
        # after the fisher hooks are gone, which these backwards would feed; before H g, whose
        # backward frees the forward's graph
        if shares_jacobian:
            jacobian, width = _jacobian_rows(x, logits, retain_graph="hessian" in passes or shares_features)
        if shares_features:
            blocks, container = _block_statistics(capture, x if shares_jacobian else None)
        if "hessian" in passes:
            hessian = _hessian_gradient(first, weights)
        elapsed = time.perf_counter() - start
        shared = {"patterns", "gradient", "hessian", "jacobian", "features"}
        seconds.update({name: elapsed for name in passes & shared})

    if "draws" in passes:
        start = time.perf_counter()
        if needs & {"draw_patterns", "draw_layer_outputs"}:
            draw_patterns = _Patterns(needs, whole=False,
                                      outputs_of_all_layers="draw_layer_outputs" in needs)
        low, high = draw_window or (1, PERC_BINS)
        for chunk in batch.split(gradient_draws):
            with recorder.hooks(draw_patterns):
                loss = _loss(net, chunk, loss_fn, output)
            count = len(recorder.layer_order)
            # asking autograd for these weights only is what spares the rest of the backward
            weights = [(name, recorder.layer_info[name]["module"].weight)
                       for position, name in enumerate(recorder.layer_order, start=1)
                       if low <= percentile(position, count) <= high]
            for name, grad in _first_gradient(loss, weights, create_graph=False).items():
                draws.setdefault(name, []).append(grad.detach())
        seconds["draws"] = time.perf_counter() - start

    if "jacobian" in passes and not differentiated:
        start = time.perf_counter()
        jacobian, width = _input_jacobian(net, recorder, batch, output)
        seconds["jacobian"] = time.perf_counter() - start

    if "features" in passes and not shares_features:
        start = time.perf_counter()
        blocks, container = [], None
        if capture is not None:
            with capture.hooks(), recorder.hooks():
                net(batch.x)
            blocks, container = _block_statistics(capture)
        seconds["features"] = time.perf_counter() - start

    ntk = None
    if "ntk" in passes:
        start = time.perf_counter()
        ntk = _empirical_ntk(net, recorder, batch if ntk_samples is None else batch.head(ntk_samples), output)
        seconds["ntk"] = time.perf_counter() - start

    return _assemble(recorder, batch, gradients, draws, loss_value, seconds, output, fisher=fisher,
                     fisher_suite_zero=fisher_suite_zero, hessian=hessian, whole_patterns=whole_patterns,
                     draw_patterns=draw_patterns, jacobian=jacobian, width=width, blocks=blocks,
                     container=container, ntk=ntk, draw_window=draw_window)


def _twice_differentiable_attention():
    """Attention by the math kernel: the fused CPU/GPU kernels of scaled_dot_product_attention
    have no double backward, which the Hessian-vector product needs (ViTs)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:   # torch < 2.3 has no fused CPU kernel to avoid
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def _first_gradient(loss: torch.Tensor, weights: list[tuple[str, torch.Tensor]],
                    create_graph: bool, retain_graph: bool = False) -> dict[str, torch.Tensor]:
    """g = ∂L/∂W of each layer's weight (zeros where the loss does not reach it); differentiable
    again with ``create_graph`` (for :func:`_hessian_gradient`); ``retain_graph`` keeps the forward's
    graph for another backward."""
    tensors = [weight for _, weight in weights]
    grads = [None] * len(tensors)
    if tensors and loss.requires_grad:   # a network without parameters has no gradient to record
        grads = torch.autograd.grad(loss, tensors, create_graph=create_graph,
                                    retain_graph=create_graph or retain_graph, allow_unused=True)
    return {name: torch.zeros_like(weight) if grad is None else grad
            for (name, weight), grad in zip(weights, grads)}


def _hessian_gradient(first: dict[str, torch.Tensor], weights: list[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
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


def _input_jacobian(net, recorder: _Recorder, batch: Batch, output) -> tuple[torch.Tensor | None, int | None]:
    """(B, D) rows ∂(Σ logits)/∂x_b, flattened per sample, and the logits' last-axis width.

    The batch runs as a whole (train mode: BatchNorm couples the samples, so row b also holds the
    other samples' outputs' dependence on x_b, as in NASLib's ``y.backward(ones_like(y))``). An
    input that is not floating-point (token ids) has no Jacobian: (None, None), nothing is run.
    """
    if not batch.x.is_floating_point():
        return None, None
    x = _differentiable_input(batch.x)
    with recorder.hooks():
        logits = (output or logits_of)(net(x))
    return _jacobian_rows(x, logits)


def _differentiable_input(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)


def _jacobian_rows(x: torch.Tensor, logits: torch.Tensor, retain_graph: bool = False) -> tuple[torch.Tensor, int]:
    """(B, D) rows ∂(Σ logits)/∂x_b of an input ``x`` that requires grad, and the logits' last-axis width."""
    width = int(logits.shape[-1]) if logits.dim() else 1
    grad = None
    if logits.requires_grad:
        (grad,) = torch.autograd.grad(logits.sum(), x, retain_graph=retain_graph, allow_unused=True)
    if grad is None:             # the output does not depend on the input
        grad = torch.zeros_like(x)
    return grad.detach().reshape(x.shape[0], -1), width


def _is_container(module: nn.Module) -> bool:
    return isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module) >= 2


def block_containers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The containers whose children are AZ-NAS's blocks, as (qualified name, module), in
    ``named_modules()`` order; empty when the network has none.

    Stages first: the shallowest ``nn.Sequential``/``nn.ModuleList`` with at least two children
    that are all composite modules (modules with children of their own; depth = number of name
    components, the model itself being 0), every one of them at that depth -- torchvision's ResNet
    gives its four stages ``layer1``..``layer4``, so its blocks are all its residual blocks in
    order. Without such a container, the shallowest container with at least two children of any
    kind, the one with the most children when several are equally shallow (then the first): on
    NB201's TinyNetwork ``cells`` (its stem and last activation hold only leaf modules), on a ViT
    its list of transformer blocks, on a plain ``nn.Sequential`` the model itself.

    A model can name its block containers itself with a ``block_containers`` attribute (qualified
    names), as lswag's TransNAS-Bench-101 networks name their encoder's modules (the rules above
    would pick the decoder).
    """
    named = getattr(net, "block_containers", None)
    if named is not None:
        modules = dict(net.named_modules())
        missing = [name for name in named if name not in modules]
        if missing:
            raise LswagError(f"block_containers names {', '.join(missing)}, which the model does not have")
        return [(name, modules[name]) for name in named]
    containers = [(name.count(".") + 1 if name else 0, name, module) for name, module in net.named_modules()
                  if _is_container(module)]
    stages = [c for c in containers if all(any(True for _ in child.children()) for child in c[2].children())]
    if stages:
        shallowest = min(depth for depth, _, _ in stages)
        return [(name, module) for depth, name, module in stages if depth == shallowest]
    if not containers:
        return []
    _, name, module = min(containers, key=lambda c: (c[0], -len(c[2])))
    return [(name, module)]


class _BlockCapture:
    """Hooks that keep the feature maps of the containers' children (removed on exit).

    Each child call's tensor output (2-D or more, floating-point) is kept as it is and a clone is
    handed on to the rest of the network, so that no later in-place operation can alter the kept map
    or its place in the graph; unless the first container is the model itself, the input of its
    first call (the stem's output) is kept the same way.
    """

    def __init__(self, containers: list[tuple[str, nn.Module]], net: nn.Module):
        self.containers, self.keep_input = containers, containers[0][1] is not net
        self.features: list[tuple[str, torch.Tensor]] = []

    @staticmethod
    def _usable(tensor) -> bool:
        return isinstance(tensor, torch.Tensor) and tensor.dim() >= 2 and tensor.is_floating_point()

    @contextlib.contextmanager
    def hooks(self):
        self.features, self.input_kept = [], False
        with contextlib.ExitStack() as stack:
            for name, container in self.containers:
                for child_name, child in container.named_children():
                    qualified = f"{name}.{child_name}" if name else child_name
                    if self.keep_input:
                        stack.callback(child.register_forward_pre_hook(self._pre_hook(qualified)).remove)
                    stack.callback(child.register_forward_hook(self._post_hook(qualified)).remove)
            yield

    def _pre_hook(self, qualified):
        def hook(module, inputs):
            if self.features or self.input_kept or not inputs or not self._usable(inputs[0]):
                return None
            self.features.append((f"input of {qualified}", inputs[0]))
            self.input_kept = True
            return (inputs[0].clone(), *inputs[1:])
        return hook

    def _post_hook(self, qualified):
        def hook(module, inputs, output):
            # a block called again (a Siamese network's shared encoder) is kept on its first call only
            if not self._usable(output) or any(name == qualified for name, _ in self.features):
                return None
            self.features.append((qualified, output))
            return output.clone()
        return hook


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    """(samples, channels): a 4-D or 5-D map (B, C, *positions) gives B·positions rows of C, a 3-D
    one (B, T, C) B·T rows of C (the token convention), a 2-D one its B rows."""
    if tensor.dim() >= 4:
        return tensor.movedim(1, -1).reshape(-1, tensor.shape[1])
    if tensor.dim() == 3:
        return tensor.reshape(-1, tensor.shape[-1])
    return tensor.reshape(tensor.shape[0], -1)


def feature_entropy(feature: torch.Tensor) -> float:
    """AZ-NAS expressivity of one map: −Σ_k p_k ln(p_k + 1e-8), p = λ / Σλ, λ the eigenvalues of the
    channel covariance (rows of :func:`_rows`, mean-centred, divided by the number of rows), float64.
    NaN when the map holds NaN/inf or is constant (Σλ = 0)."""
    rows = _rows(feature.detach()).to(torch.float64)
    if not all_finite(rows):
        return math.nan
    rows = rows - rows.mean(dim=0, keepdim=True)
    eigenvalues = torch.linalg.eigvalsh(rows.T @ rows / rows.shape[0])
    shares = eigenvalues / eigenvalues.sum()
    return float(-(shares * torch.log(shares + ENTROPY_EPS)).sum())


def block_gain(g_in: torch.Tensor, g_out: torch.Tensor) -> tuple[float | None, str | None]:
    """(σ_max of G_inᵀ G_out / N, None), or (None, why) when the two maps cannot be aligned.

    Rows as :func:`_rows`. Two 4-D maps of different resolution are aligned as AZ-NAS does: the
    larger gradient is pixel-unshuffled by the integer stride s = H_in / H_out (C_in·s² channels);
    two 3-D maps with the same number of tokens are aligned token by token. Maps of different rank
    (e.g. around a Flatten) and token maps of different lengths (token pooling: PiT, Swin's patch
    merging; a token axis carries no grid to unshuffle) are compared per sample, each flattened
    (N = B) -- lswag extensions, AZ-NAS has only 4-D maps.
    """
    if g_in.dim() == g_out.dim() >= 4:
        if g_in.shape[2:] != g_out.shape[2:]:
            if g_in.dim() != 4:
                return None, f"cannot align maps of shapes {tuple(g_in.shape)} and {tuple(g_out.shape)}"
            (h_in, w_in), (h_out, w_out) = g_in.shape[2:], g_out.shape[2:]
            stride = h_in // h_out if h_out else 0
            if stride < 1 or h_in != stride * h_out or w_in != stride * w_out:
                return None, f"cannot align a {h_in}x{w_in} map with a {h_out}x{w_out} one"
            g_in = F.pixel_unshuffle(g_in, stride)
        rows_in, rows_out = _rows(g_in), _rows(g_out)
    elif g_in.dim() == g_out.dim() == 3 and g_in.shape[1] == g_out.shape[1]:
        rows_in, rows_out = _rows(g_in), _rows(g_out)
    else:                               # 2-D maps, maps of different rank or token count: one row per sample
        rows_in, rows_out = g_in.reshape(g_in.shape[0], -1), g_out.reshape(g_out.shape[0], -1)
    matrix = rows_in.to(torch.float64).T @ rows_out.to(torch.float64) / rows_out.shape[0]
    if not all_finite(matrix):
        return math.nan, None
    return float(torch.linalg.matrix_norm(matrix, ord=2)), None


def _block_statistics(capture: _BlockCapture, differentiable_input: torch.Tensor | None = None
                      ) -> tuple[list[BlockRecord], str | None]:
    """The ``features`` pass's statistics of the block maps a forward left in ``capture``: their
    entropies, then for each pair of consecutive maps (last pair first, as AZ-NAS) a ±1 gradient
    G_out drawn for the later map from a CPU generator seeded with :data:`RADEMACHER_SEED`
    (``randint(0, 2) * 2 − 1``) and its vector-Jacobian product G_in = ∂⟨map_i, G_out⟩/∂map_{i−1};
    a map the later one does not depend on, or that depends on no weight, gets G_in = 0.

    ``differentiable_input`` is the input of a forward shared with the input Jacobian: maps that
    require grad through it alone are treated as the pass's own forward sees them, constants."""
    name = ", ".join(n or "the model" for n, _ in capture.containers)
    features = capture.features
    blocks = [BlockRecord(name=n, shape=tuple(t.shape), entropy=feature_entropy(t)) for n, t in features]
    generator = torch.Generator().manual_seed(RADEMACHER_SEED)
    for i in reversed(range(1, len(features))):
        f_in, f_out = features[i - 1][1], features[i][1]
        g_out = (torch.randint(0, 2, f_out.shape, generator=generator) * 2 - 1).to(f_out.dtype).to(f_out.device)
        g_in = None
        if f_out.requires_grad and f_in.requires_grad and (
                differentiable_input is None or _reaches_a_weight(f_in, differentiable_input)):
            (g_in,) = torch.autograd.grad(f_out, f_in, g_out, retain_graph=True, allow_unused=True)
        if g_in is None:
            g_in = torch.zeros_like(f_in)
        if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
            blocks[i].identity = True
            continue
        blocks[i].gain, blocks[i].problem = block_gain(g_in.detach(), g_out)
    return blocks, name


def _reaches_a_weight(tensor: torch.Tensor, differentiable_input: torch.Tensor) -> bool:
    """Whether ``tensor``'s autograd graph leads to a leaf other than ``differentiable_input``
    (a parameter): what its ``requires_grad`` would say had the input not required grad."""
    stack, seen = [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)      # AccumulateGrad's
        if leaf is not None and leaf is not differentiable_input:
            return True
        stack.extend(next_node for next_node, _ in node.next_functions)
    return False


def _empirical_ntk(net, recorder: _Recorder, batch: Batch, output) -> np.ndarray:
    """Θ = G Gᵀ (B × B, float64): row b of G is ∂(Σ_c logits[b, c])/∂θ over the parameters whose
    name contains ``weight`` (TE-NAS's ``get_ntk_n``: Conv, Linear and norm-layer scales), one
    backward per sample through the whole-batch forward (train mode: BatchNorm couples the samples).
    G is held in the parameters' dtype (B × #weights); the products are summed in float64."""
    params = [p for n, p in net.named_parameters() if "weight" in n and p.requires_grad]
    with recorder.hooks():
        logits = (output or logits_of)(net(batch.x))
    size = len(batch)
    if not params or not logits.requires_grad:
        return np.zeros((size, size))
    rows = []
    for b in range(size):
        grads = torch.autograd.grad(logits[b].sum(), params, retain_graph=b < size - 1, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)]))
    stacked = torch.stack(rows)
    kernel = torch.zeros(size, size, dtype=torch.float64, device=stacked.device)
    for c0 in range(0, stacked.shape[1], _UNIT_BLOCK * 16):
        chunk = stacked[:, c0:c0 + _UNIT_BLOCK * 16].to(torch.float64)
        kernel += chunk @ chunk.T
    return kernel.cpu().numpy()


def _out_channels(module: nn.Module) -> int:
    """Output channels of a layer: Conv/Linear weights are (C_out, ...), ConvTranspose ones (C_in, C_out/g, ...)."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return module.weight.shape[1] * module.groups
    return module.weight.shape[0]


def _assemble(recorder: _Recorder, batch, gradients, draws, loss_value, seconds, pick_logits, *, fisher=None,
              fisher_suite_zero=None, hessian=None, whole_patterns: _Patterns | None = None,
              draw_patterns: _Patterns | None = None,
              jacobian=None, width=None, blocks=None, container=None, ntk=None, draw_window=None) -> Record:
    sites, union = whole_patterns.site_records() if whole_patterns else ([], None)
    draw_sites = draw_patterns.site_records()[0] if draw_patterns else None
    pairing = whole_patterns or draw_patterns   # both passes see the same sites in the same order
    layers = []
    for position, name in enumerate(recorder.layer_order, start=1):
        info = recorder.layer_info[name]
        paired = pairing.layers.get(name, {}) if pairing else {}
        layers.append(LayerRecord(
            name=name,
            kind=type(info["module"]).__name__,
            weight=info["module"].weight.detach(),   # the private copy: nothing changes it after the probe
            percentile=percentile(position, len(recorder.layer_order)),
            input_site=paired.get("input_site"),
            next_site=pairing.next_site(name) if pairing else None,
            gradient=gradients.get(name),
            gradient_draws=torch.stack(draws[name]) if name in draws else None,
            output_patterns=whole_patterns.output_patterns(name) if whole_patterns else None,
            draw_output_patterns=draw_patterns.output_patterns(name) if draw_patterns else None,
            output_logdet=whole_patterns.layers.get(name, {}).get("logdet") if whole_patterns else None,
            fisher=None if fisher is None else fisher.get(name, torch.zeros(_out_channels(info["module"]),
                                                                         dtype=torch.float64)),
            fisher_suite_zero=None if fisher_suite_zero is None else fisher_suite_zero.get(
                name, torch.zeros((), dtype=torch.float64)),
            hessian_gradient=(hessian or {}).get(name),
        ))
    return Record(
        batch=batch, layers=layers, sites=sites, draw_sites=draw_sites,
        kernel=None if whole_patterns is None or whole_patterns.kernel is None else whole_patterns.kernel.cpu().numpy(),
        network_patterns=union,
        loss=loss_value, seconds=seconds, input_jacobian=jacobian, output_width=width, pick_logits=pick_logits,
        blocks=blocks, block_container=container, ntk=ntk, draw_window=draw_window,
    )
