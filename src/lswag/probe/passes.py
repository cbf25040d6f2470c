"""The probe's passes and :func:`record`, which runs those that the needs call for, each returning
its part of the record, and gathers the parts into the :class:`Record` (the package docstring
describes each pass)."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lswag.data import Batch
from lswag.errors import LswagError, unknown_choice
from lswag.probe.blocks import BlockCapture, block_containers, block_statistics
from lswag.probe.derivatives import (differentiable_input, empirical_ntk, first_gradient, hessian_gradient,
                                     jacobian_rows, twice_differentiable_attention)
from lswag.probe.hooks import PassPatterns, Recorder
from lswag.probe.preparation import batch_for, private_copy
from lswag.probe.records import BlockRecord, LayerRecord, Record, percentile
from lswag.probe.tensors import logits_of
from lswag.probe.vocabulary import NEEDS, PASS_OF_NEED, PERC_BINS

#: the passes whose work the gradient pass's whole-batch forward does when they run with it
SERVED_BY_GRADIENT_PASS = frozenset({"patterns", "gradient", "hessian", "jacobian", "features"})


@dataclass
class _Run:
    """What the passes of one record share: the private copy and its hooks, the batch on the
    copy's device, and the settings."""

    net: nn.Module
    recorder: Recorder
    batch: Batch
    needs: frozenset[str]
    passes: frozenset[str]
    loss_fn: Callable
    output: Callable | None
    capture: BlockCapture | None      # the block maps' hooks; None: no blocks to record

    @classmethod
    def start(cls, model: nn.Module, batch: Batch, needs: frozenset[str], loss_fn: Callable,
              output: Callable | None, memory_format: torch.memory_format) -> _Run:
        net = private_copy(model).to(memory_format=memory_format)
        passes = frozenset(PASS_OF_NEED[need] for need in needs)
        containers = block_containers(net) if "features" in passes else []
        return cls(net, Recorder(net), batch_for(model, batch, memory_format), needs, passes, loss_fn, output,
                   BlockCapture(containers, net) if containers else None)

    @property
    def differentiated(self) -> bool:
        """Whether the whole-batch gradient pass runs."""
        return bool(self.passes & {"gradient", "hessian"})

    @property
    def shares_features(self) -> bool:
        """Whether the gradient pass's forward keeps the block maps."""
        return self.capture is not None and self.differentiated

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return (self.output or logits_of)(self.net(x))


def _out_channels(module: nn.Module) -> int:
    """Output channels of a layer: Conv/Linear weights are (C_out, ...), ConvTranspose ones (C_in, C_out/g, ...)."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return module.weight.shape[1] * module.groups
    return module.weight.shape[0]


@dataclass
class _Gradient:
    """The gradient pass's own part: the loss, the weight gradients (``gradient`` need), the
    fisher terms (None when not needed) and H g (``hessian``)."""

    loss: float
    gradients: dict[str, torch.Tensor]
    fisher: dict[str, torch.Tensor] | None
    fisher_suite_zero: dict[str, torch.Tensor] | None
    hessian: dict[str, torch.Tensor] = field(default_factory=dict)

    def layer_fields(self, name: str, module: nn.Module) -> dict:
        """The fields of the layer's :class:`LayerRecord` this part fills; a needed fisher term is 0
        for a layer whose output the loss does not reach."""
        return {
            "gradient": self.gradients.get(name),
            "fisher": None if self.fisher is None else self.fisher.get(
                name, torch.zeros(_out_channels(module), dtype=torch.float64)),
            "fisher_suite_zero": None if self.fisher_suite_zero is None else self.fisher_suite_zero.get(
                name, torch.zeros((), dtype=torch.float64)),
            "hessian_gradient": self.hessian.get(name),
        }


@dataclass
class _Draws:
    """The draws passes' part: each layer's (M, *weight.shape) gradient draws, and their
    activation patterns when needed."""

    gradients: dict[str, torch.Tensor]
    patterns: PassPatterns | None


@dataclass
class _Parts:
    """What the passes returned; a part keeps its default when its pass did not run."""

    patterns: PassPatterns | None = None      # of the whole batch, from the patterns or the gradient pass
    gradient: _Gradient | None = None
    draws: _Draws | None = None
    jacobian: tuple[torch.Tensor | None, int | None] = (None, None)   # input Jacobian rows, logits' width
    blocks: tuple[list[BlockRecord] | None, str | None] = (None, None)  # block statistics, their containers
    ntk: np.ndarray | None = None


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
    _check_settings(needs, batch, gradient_draws, draw_window)
    run = _Run.start(model, batch, needs, loss_fn or F.cross_entropy, output, memory_format)
    seconds: dict[str, float] = {}
    parts = _Parts()
    # in a fixed order; a pass the gradient pass's forward has served does not run again
    if run.differentiated:
        parts = _timed(seconds, run.passes & SERVED_BY_GRADIENT_PASS, _gradient_pass, run)
    elif "patterns" in run.passes:
        parts.patterns = _timed(seconds, ["patterns"], _patterns_pass, run)
    if "draws" in run.passes:
        parts.draws = _timed(seconds, ["draws"], _draws_pass, run, gradient_draws, draw_window)
    if "jacobian" in run.passes and not run.differentiated:
        parts.jacobian = _timed(seconds, ["jacobian"], _jacobian_pass, run)
    if "features" in run.passes and not run.shares_features:
        parts.blocks = _timed(seconds, ["features"], _features_pass, run)
    if "ntk" in run.passes:
        parts.ntk = _timed(seconds, ["ntk"], _ntk_pass, run, ntk_samples)
    return _gathered(run, parts, seconds, draw_window)


def _check_settings(needs: frozenset[str], batch: Batch, gradient_draws: int,
                    draw_window: tuple[int, int] | None) -> None:
    if needs - NEEDS:
        raise unknown_choice("probe need", sorted(needs - NEEDS)[0], NEEDS)
    if "draws" in needs and not 1 <= gradient_draws <= len(batch):
        raise LswagError(f"gradient_draws must be between 1 and the batch size {len(batch)}, got {gradient_draws}")
    if draw_window is not None and not 1 <= draw_window[0] <= draw_window[1] <= PERC_BINS:
        raise LswagError(f"draw_window {draw_window} must satisfy 1 <= p1 <= p2 <= {PERC_BINS}")


def _timed(seconds: dict[str, float], passes: Iterable[str], run_pass: Callable, *args):
    """``run_pass(*args)``'s part; its wall time is entered in ``seconds`` for each of ``passes``
    (one forward can do the work of several)."""
    start = time.perf_counter()
    part = run_pass(*args)
    seconds.update(dict.fromkeys(passes, time.perf_counter() - start))
    return part


def _whole_patterns(run: _Run) -> PassPatterns | None:
    """The pattern state of a whole-batch forward; None when no need calls for patterns."""
    if "patterns" not in run.passes:
        return None
    return PassPatterns(run.needs, whole=True, outputs_of_all_layers="layer_outputs" in run.needs)


def _patterns_pass(run: _Run) -> PassPatterns:
    """Forward only on the whole batch: the activation patterns."""
    patterns = _whole_patterns(run)
    with run.recorder.hooks(patterns), torch.no_grad():
        run.net(run.batch.x)
    return patterns


def _gradient_pass(run: _Run) -> _Parts:
    """Forward + backward on the whole batch: the loss, each layer's weight gradient, the fisher
    terms and H g. Its forward serves the other passes that run with it, whose parts it returns
    too: the patterns, the input Jacobian (its backward asks for ∂/∂x only) and AZ-NAS's block
    statistics."""
    patterns = _whole_patterns(run)
    shares_jacobian = "jacobian" in run.passes and run.batch.x.is_floating_point()
    x = differentiable_input(run.batch.x) if shares_jacobian else run.batch.x
    logits, loss, weights, first = _gradient_forward(run, x, patterns,
                                                     retain_graph=shares_jacobian or run.shares_features)
    gradients = {name: grad.detach() for name, grad in first.items()} if "gradient" in run.needs else {}
    fisher = run.recorder.fisher
    gradient = _Gradient(loss=float(loss.detach()), gradients=gradients, fisher=fisher.get("fisher"),
                         fisher_suite_zero=fisher.get("fisher_suite_zero"))
    parts = _Parts(patterns=patterns, gradient=gradient)
    # after the fisher hooks are gone, which these backwards would feed; before H g, whose
    # backward frees the forward's graph
    if shares_jacobian:
        parts.jacobian = jacobian_rows(x, logits, retain_graph="hessian" in run.passes or run.shares_features)
    if run.shares_features:
        parts.blocks = block_statistics(run.capture, x if shares_jacobian else None)
    if "hessian" in run.passes:
        gradient.hessian = hessian_gradient(first, weights)
    return parts


def _gradient_forward(run: _Run, x: torch.Tensor, patterns: PassPatterns | None, retain_graph: bool):
    """The gradient pass's forward under every hook that rides on it, and g = ∂L/∂W (with its graph
    for H g): (logits, loss, the layers' (name, weight), g)."""
    hessian = "hessian" in run.passes
    fisher_needs = run.needs & {"fisher", "fisher_suite_zero"}
    fisher_hooks = run.recorder.fisher_hooks(fisher_needs) if fisher_needs else contextlib.nullcontext()
    attention = twice_differentiable_attention() if hessian else contextlib.nullcontext()
    # entered first, so that the other hooks see the clones the block hooks hand on
    block_hooks = run.capture.hooks() if run.shares_features else contextlib.nullcontext()
    with block_hooks, run.recorder.hooks(patterns), fisher_hooks, attention:
        logits = run.logits(x)
        loss = run.loss_fn(logits, run.batch.y)
        weights = run.recorder.weights()
        first = first_gradient(loss, weights, create_graph=hessian, retain_graph=retain_graph)
    return logits, loss, weights, first


def _draws_pass(run: _Run, chunks: int, window: tuple[int, int] | None) -> _Draws:
    """One forward + backward per chunk of the batch: the gradient draws of the layers of depth
    percentiles ``window`` (None: every layer) and, when needed, the chunks' activation patterns."""
    patterns = None
    if run.needs & {"draw_patterns", "draw_layer_outputs"}:
        patterns = PassPatterns(run.needs, whole=False, outputs_of_all_layers="draw_layer_outputs" in run.needs)
    draws: dict[str, list[torch.Tensor]] = {}
    for chunk in run.batch.split(chunks):
        with run.recorder.hooks(patterns):
            loss = run.loss_fn(run.logits(chunk.x), chunk.y)
        # asking autograd for these weights only is what spares the rest of the backward
        for name, grad in first_gradient(loss, run.recorder.weights(window), create_graph=False).items():
            draws.setdefault(name, []).append(grad.detach())
    return _Draws(gradients={name: torch.stack(grads) for name, grads in draws.items()}, patterns=patterns)


def _jacobian_pass(run: _Run) -> tuple[torch.Tensor | None, int | None]:
    """(B, D) rows ∂(Σ logits)/∂x_b, flattened per sample, and the logits' last-axis width.

    The batch runs as a whole (train mode: BatchNorm couples the samples, so row b also holds the
    other samples' outputs' dependence on x_b, as in NASLib's ``y.backward(ones_like(y))``). An
    input that is not floating-point (token ids) has no Jacobian: (None, None), nothing is run.
    """
    if not run.batch.x.is_floating_point():
        return None, None
    x = differentiable_input(run.batch.x)
    with run.recorder.hooks():
        logits = run.logits(x)
    return jacobian_rows(x, logits)


def _features_pass(run: _Run) -> tuple[list[BlockRecord], str | None]:
    """Forward on the whole batch keeping the block maps, then their statistics; no blocks when
    the network has no block container."""
    if run.capture is None:
        return [], None
    with run.capture.hooks(), run.recorder.hooks():
        run.net(run.batch.x)
    return block_statistics(run.capture)


def _ntk_pass(run: _Run, samples: int | None) -> np.ndarray:
    """The empirical NTK of the first ``samples`` examples (None: all) over the parameters whose
    name contains ``weight`` (TE-NAS's ``get_ntk_n``: Conv, Linear and norm-layer scales), through
    one forward of them together (train mode: BatchNorm couples the samples)."""
    batch = run.batch if samples is None else run.batch.head(samples)
    weights = [p for n, p in run.net.named_parameters() if "weight" in n and p.requires_grad]
    with run.recorder.hooks():
        logits = run.logits(batch.x)
    return empirical_ntk(logits, weights, len(batch))


def _gathered(run: _Run, parts: _Parts, seconds: dict[str, float], draw_window: tuple[int, int] | None) -> Record:
    """The record of the parts the passes returned."""
    whole = parts.patterns
    sites, union = whole.site_records() if whole else ([], None)
    drawn = parts.draws.patterns if parts.draws else None
    (jacobian, width), (blocks, container) = parts.jacobian, parts.blocks
    return Record(
        batch=run.batch, layers=_layer_records(run.recorder, parts), sites=sites, network_patterns=union,
        kernel=None if whole is None or whole.kernel is None else whole.kernel.cpu().numpy(),
        draw_sites=drawn.site_records()[0] if drawn else None,
        loss=parts.gradient.loss if parts.gradient else None,
        input_jacobian=jacobian, output_width=width, blocks=blocks, block_container=container, ntk=parts.ntk,
        draw_window=draw_window, seconds=seconds, pick_logits=run.output,
    )


def _layer_records(recorder: Recorder, parts: _Parts) -> list[LayerRecord]:
    whole = parts.patterns
    drawn = parts.draws.patterns if parts.draws else None
    pairing = whole or drawn   # both passes see the same sites in the same order
    layers = []
    for position, name in enumerate(recorder.layer_order, start=1):
        module = recorder.layer_info[name]["module"]
        layers.append(LayerRecord(
            name=name,
            kind=type(module).__name__,
            weight=module.weight.detach(),   # the private copy: nothing changes it after the probe
            percentile=percentile(position, len(recorder.layer_order)),
            input_site=pairing.input_site(name) if pairing else None,
            next_site=pairing.next_site(name) if pairing else None,
            gradient_draws=parts.draws.gradients.get(name) if parts.draws else None,
            output_patterns=whole.output_patterns(name) if whole else None,
            draw_output_patterns=drawn.output_patterns(name) if drawn else None,
            output_logdet=whole.output_logdet(name) if whole else None,
            **(parts.gradient.layer_fields(name, module) if parts.gradient else {}),
        ))
    return layers
