"""The probe: the one place where lswag runs a network and records what the proxies need.

A proxy never runs the network itself (synflow and flops aside, which need a differently
configured copy). ``record(model, batch, needs)`` runs only the passes that the union of the
requested proxies' needs calls for, on a private deep copy of the model, so the caller's model
is left exactly as it was (parameters, buffers, train/eval mode, requires_grad, hooks):

* ``patterns`` pass, forward only on the whole batch: for every activation site (the output of a
  ReLU, ReLU6, LeakyReLU, GELU or SiLU module, in execution order) the number Λ of distinct
  binarised sample-wise patterns ``(1[a_n(x_1) > 0], ..., 1[a_n(x_B) > 0])`` over its units n
  (every element of the map except the batch axis; 2-D, 3-D and 4-D tensors alike); optionally
  the NWOT kernel summed over sites (``kernel``), the number of distinct patterns over the
  units of all sites together (``union``, network-level SWAP) and Λ of each layer's own output
  (``layer_outputs``). ``out > 0`` equals ``input > 0`` for all these activations (GELU and SiLU
  included), so one binarisation serves ReLU and GELU networks.
* ``gradient`` pass, forward + backward on the whole batch: each layer's weight gradient.
* ``draws`` passes: the batch split into M chunks, zero_grad before each, one forward + backward
  per chunk: each layer's M gradient draws (ZiCo, L-SWAG).

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

from lswag.data import Batch
from lswag.errors import LswagError, unknown_choice

LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU)
#: what a proxy can need -> the pass that records it
PASS_OF_NEED = {"patterns": "patterns", "kernel": "patterns", "union": "patterns", "layer_outputs": "patterns",
                "gradient": "gradient", "draws": "draws"}
NEEDS = frozenset(PASS_OF_NEED)
#: weight initialisations a network can be scored with (METHOD.md §1); "given" keeps its own weights
INITS = ("given", "kaiming", "normal")
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
PERC_BINS = 10
# Units are packed a block at a time so that a 224x224 feature map never needs an int64 copy.
_UNIT_BLOCK = 1 << 16


@dataclass
class LayerRecord:
    """One weight-carrying module, in forward execution order."""

    name: str
    kind: str
    weight: torch.Tensor                      # detached copy of the weight at probe time
    percentile: int                           # ceil(10 l / L), 1..10
    input_site: int | None = None             # index of the activation site whose output it consumed
    next_site: int | None = None              # first activation site executed after it
    gradient: torch.Tensor | None = None      # dL/dw on the whole batch
    gradient_draws: torch.Tensor | None = None  # (M, *weight.shape), one per batch chunk
    output_patterns: int | None = None        # Λ of the sign of its own output
    # proxies memoise statistics derived from the fields above (a record is read-only once built)
    derived: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class SiteRecord:
    """One activation site (the output of an activation module), in execution order."""

    name: str
    kind: str
    units: int          # elements per sample
    patterns: int       # Λ: distinct binarised sample-wise patterns over the units
    percentile: int
    finite: bool = True  # False when the output held NaN or inf (its patterns mean nothing)


@dataclass
class Record:
    """What one probe recorded; proxies are functions of it (and of the model)."""

    batch: Batch
    layers: list[LayerRecord]
    sites: list[SiteRecord]
    kernel: np.ndarray | None = None          # NWOT kernel, B x B, float64
    network_patterns: int | None = None       # distinct patterns over all sites' units together
    loss: float | None = None                 # loss of the whole-batch gradient pass
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each pass

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


def pack_patterns(active: torch.Tensor) -> torch.Tensor:
    """Pack a (B, U) boolean map into (U, ceil(B/64)) int64 codes: unit u's pattern as bits.

    Two units have the same code exactly when they have the same sample-wise pattern.
    """
    batch, units = active.shape
    shifts = torch.arange(64, dtype=torch.int64, device=active.device)
    words = []
    for start in range(0, batch, 64):
        chunk = active[start:start + 64]
        rows = chunk.shape[0]
        word = torch.empty(units, dtype=torch.int64, device=active.device)
        for u0 in range(0, units, _UNIT_BLOCK):
            block = chunk[:, u0:u0 + _UNIT_BLOCK].to(torch.int64) << shifts[:rows, None]
            word[u0:u0 + _UNIT_BLOCK] = block.sum(0)  # distinct bits: the sum is their OR
        words.append(word)
    return torch.stack(words, dim=1)


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


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or inf in ``tensor``; min/max propagate NaN, and are ~10x cheaper than ``isfinite``."""
    return bool(torch.isfinite(torch.stack(torch.aminmax(tensor.detach()))).all())


def _binarised(output: torch.Tensor) -> torch.Tensor:
    return (output.detach() > 0).reshape(output.shape[0], -1)


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


class _Recorder:
    """Hooks for one probe run; every handle is removed when the ``hooks`` context exits."""

    def __init__(self, model: nn.Module, needs: frozenset[str]):
        self.needs = needs
        self.layer_modules = [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
        self.site_modules = [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]
        self.layer_order: list[str] = []          # layer names in first-execution order
        self.layer_info: dict[str, dict] = {}
        self.sites: list[dict] = []
        self.kernel: torch.Tensor | None = None
        self.distinct_codes: list[torch.Tensor] = []
        self._site_of_tensor: dict[int, tuple[weakref.ref, int]] = {}
        self.recording_patterns = False

    @contextlib.contextmanager
    def hooks(self, patterns: bool):
        self.recording_patterns = patterns
        with contextlib.ExitStack() as stack:
            for name, module in self.layer_modules:
                stack.callback(module.register_forward_pre_hook(self._layer_pre_hook(name)).remove)
                if patterns:
                    stack.callback(module.register_forward_hook(self._layer_post_hook(name)).remove)
            if patterns:
                for name, module in self.site_modules:
                    stack.callback(module.register_forward_hook(self._site_hook(name)).remove)
            try:
                yield
            finally:
                self._site_of_tensor.clear()

    def _layer_pre_hook(self, name):
        def hook(module, inputs):
            if name not in self.layer_info:
                self.layer_order.append(name)
                info = self.layer_info[name] = {"module": module}
                if self.recording_patterns:
                    info["input_site"] = self._site_feeding(inputs[0] if inputs else None)
                    info["sites_before"] = len(self.sites)
        return hook

    def _layer_post_hook(self, name):
        def hook(module, inputs, output):
            info = self.layer_info[name]
            if "layer_outputs" in self.needs and "output_patterns" not in info and isinstance(output, torch.Tensor):
                finite = all_finite(output)
                info["output_patterns"] = count_unique(pack_patterns(_binarised(output))) if finite else None
        return hook

    def _site_feeding(self, tensor) -> int | None:
        if not isinstance(tensor, torch.Tensor):
            return None
        entry = self._site_of_tensor.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return None

    def _site_hook(self, name):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() < 2:
                return
            index = len(self.sites)
            active = _binarised(output)
            distinct = unique_codes(pack_patterns(active))
            self.sites.append({"name": name, "kind": type(module).__name__, "units": active.shape[1],
                               "patterns": distinct.shape[0], "finite": all_finite(output)})
            self._site_of_tensor[id(output)] = (weakref.ref(output), index)
            if "kernel" in self.needs:
                site_kernel = nwot_kernel(active)
                self.kernel = site_kernel if self.kernel is None else self.kernel + site_kernel
            if "union" in self.needs:
                # each site's distinct codes only (Λ_s rows, not its units); merged once at the end
                self.distinct_codes.append(distinct)
        return hook


def _loss(model, batch: Batch, loss_fn, output) -> torch.Tensor:
    logits = (output or logits_of)(model(batch.x))
    return loss_fn(logits, batch.y)


def record(model: nn.Module, batch: Batch, needs: Iterable[str], *, gradient_draws: int = 2,
           loss_fn: Callable | None = None, output: Callable | None = None) -> Record:
    """Run the passes that ``needs`` (a subset of :data:`NEEDS`) call for and return the record.

    ``gradient_draws`` is M, the number of chunks the batch is split into for the ``draws``
    passes. ``loss_fn(logits, y)`` defaults to cross-entropy; ``output`` picks the logits from the
    model's output when :func:`logits_of` cannot.
    """
    needs = frozenset(needs)
    if needs - NEEDS:
        raise unknown_choice("probe need", sorted(needs - NEEDS)[0], NEEDS)
    if "draws" in needs and not 1 <= gradient_draws <= len(batch):
        raise LswagError(f"gradient_draws must be between 1 and the batch size {len(batch)}, got {gradient_draws}")
    loss_fn = loss_fn or F.cross_entropy
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    batch = Batch(x=batch.x.to(device), y=batch.y.to(device), num_classes=batch.num_classes,
                  source=batch.source)
    net = _private_copy(model)
    recorder = _Recorder(net, needs)
    seconds: dict[str, float] = {}
    loss_value = None
    gradients: dict[str, torch.Tensor] = {}
    draws: dict[str, list[torch.Tensor]] = {}

    passes = {PASS_OF_NEED[need] for need in needs}
    if "patterns" in passes:
        start = time.perf_counter()
        with recorder.hooks(patterns=True), torch.no_grad():
            net(batch.x)
        seconds["patterns"] = time.perf_counter() - start

    if "gradient" in passes:
        start = time.perf_counter()
        with recorder.hooks(patterns=False):
            net.zero_grad(set_to_none=True)
            loss = _loss(net, batch, loss_fn, output)
            if loss.requires_grad:  # a network without parameters has no gradient to record
                loss.backward()
        loss_value = float(loss.detach())
        gradients = {name: _weight_grad(recorder.layer_info[name]["module"]) for name in recorder.layer_order}
        seconds["gradient"] = time.perf_counter() - start

    if "draws" in passes:
        start = time.perf_counter()
        with recorder.hooks(patterns=False):
            for chunk in batch.split(gradient_draws):
                net.zero_grad(set_to_none=True)
                loss = _loss(net, chunk, loss_fn, output)
                if loss.requires_grad:
                    loss.backward()
                for name in recorder.layer_order:
                    draws.setdefault(name, []).append(_weight_grad(recorder.layer_info[name]["module"]))
        seconds["draws"] = time.perf_counter() - start

    return _assemble(recorder, batch, gradients, draws, loss_value, seconds)


def _weight_grad(module: nn.Module) -> torch.Tensor:
    grad = module.weight.grad
    return torch.zeros_like(module.weight) if grad is None else grad.detach().clone()


def _assemble(recorder: _Recorder, batch, gradients, draws, loss_value, seconds) -> Record:
    sites = [SiteRecord(name=s["name"], kind=s["kind"], units=s["units"], patterns=s["patterns"],
                        percentile=percentile(i + 1, len(recorder.sites)), finite=s["finite"])
             for i, s in enumerate(recorder.sites)]
    layers = []
    for position, name in enumerate(recorder.layer_order, start=1):
        info = recorder.layer_info[name]
        before = info.get("sites_before")
        layers.append(LayerRecord(
            name=name,
            kind=type(info["module"]).__name__,
            weight=info["module"].weight.detach().clone(),
            percentile=percentile(position, len(recorder.layer_order)),
            input_site=info.get("input_site"),
            next_site=before if before is not None and before < len(sites) else None,
            gradient=gradients.get(name),
            gradient_draws=torch.stack(draws[name]) if name in draws else None,
            output_patterns=info.get("output_patterns"),
        ))
    return Record(
        batch=batch, layers=layers, sites=sites,
        kernel=None if recorder.kernel is None else recorder.kernel.cpu().numpy(),
        network_patterns=count_unique(torch.cat(recorder.distinct_codes)) if recorder.distinct_codes else None,
        loss=loss_value, seconds=seconds,
    )
