"""The hooks of a probe pass and the state they fill: the layers' execution order, the
activation patterns of the sites and layers (module or functional activations), and the terms
of the fisher need; every hook is removed when its context exits."""
from __future__ import annotations

import contextlib
import math
import weakref

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from lswag.errors import LswagError
from lswag.probe.patterns import binarised, count_unique, kernel_logdet, nwot_kernel, pack_bytes, words_of
from lswag.probe.records import SiteRecord, percentile
from lswag.probe.tensors import all_finite
from lswag.probe.vocabulary import ACTIVATION_TYPES, FUNCTIONAL_ACTIVATIONS, LAYER_TYPES, PERC_BINS


class PassPatterns:
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
            info["chunks"].append(pack_bytes(binarised(output)))
        elif info["input_site"] is None:
            self._pending[name] = binarised(output)
        if self.whole and "layer_kernels" in self.needs:
            info["logdet"] = kernel_logdet(output) if all_finite(output) else math.nan

    def site_output(self, name: str, kind: str, output) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() < 2:
            return
        index = self._calls
        self._calls += 1
        active = binarised(output)
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

    def input_site(self, name: str) -> int | None:
        """The index of the site whose output the layer consumed, if one did."""
        return self.layers.get(name, {}).get("input_site")

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

    def output_logdet(self, name: str) -> float | None:
        """ln|det K| of the NWOT kernel of the layer's own output (``layer_kernels``); None when not recorded."""
        return self.layers.get(name, {}).get("logdet")


class Recorder:
    """Hooks for one probe run; every handle is removed when the ``hooks`` context exits."""

    def __init__(self, model: nn.Module):
        self.layer_modules = [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
        self.site_modules = [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]
        self.layer_order: list[str] = []          # layer names in first-execution order
        self.layer_info: dict[str, dict] = {}
        self.patterns: PassPatterns | None = None    # the pattern state of the pass that runs, if it records them
        self.fisher: dict[str, dict[str, torch.Tensor]] = {}   # fisher need -> layer name -> its terms

    @contextlib.contextmanager
    def hooks(self, patterns: PassPatterns | None = None):
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
                    stack.enter_context(FunctionalActivations(self))
            try:
                yield
            finally:
                if patterns is not None:
                    patterns.end_chunk()
                self.patterns = None

    def weights(self, window: tuple[int, int] | None = None) -> list[tuple[str, torch.Tensor]]:
        """(name, weight) of the layers run so far, in execution order; with ``window`` [p1, p2],
        only those of depth percentiles p1..p2."""
        low, high = window or (1, PERC_BINS)
        count = len(self.layer_order)
        return [(name, self.layer_info[name]["module"].weight)
                for position, name in enumerate(self.layer_order, start=1)
                if low <= percentile(position, count) <= high]

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


class FunctionalActivations(TorchFunctionMode):
    """Records the outputs of functional activations (``F.gelu``, ``torch.relu``, ``x.relu()``...)
    as sites, for networks that have no activation module; sites are named ``F.<function>#<call>``."""

    def __init__(self, recorder: Recorder):
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
