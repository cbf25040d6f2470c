"""What the probe runs: a private copy of the model in probe mode, its weights redrawn for the
initialisations of METHOD.md §1, and the batch on the model's device in the chosen layout."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

from lswag.data import Batch
from lswag.errors import unknown_choice
from lswag.probe.vocabulary import LAYER_TYPES, NORM_TYPES
from lswag.settings import INITS


def private_copy(model: nn.Module) -> nn.Module:
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


def batch_for(model: nn.Module, batch: Batch, memory_format: torch.memory_format) -> Batch:
    """``batch`` on the device of ``model``'s parameters (the CPU for a model without any), its
    images (4-D inputs) in ``memory_format``."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = batch.x.to(device)
    return Batch(x=x.contiguous(memory_format=memory_format) if x.dim() == 4 else x, y=batch.y.to(device),
                 num_classes=batch.num_classes, source=batch.source)
