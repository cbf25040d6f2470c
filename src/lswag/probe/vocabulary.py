"""The probe's vocabulary: which modules are layers and sites, what a proxy can need and what
each pass costs, and the fixed constants of the recorded statistics."""
from __future__ import annotations

import torch.nn as nn

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
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
PERC_BINS = 10
# Units are packed a block at a time so that a 224x224 feature map never needs an int64 copy.
UNIT_BLOCK = 1 << 16
#: seed of the CPU generator that draws the ±1 output gradients of the ``features`` pass (AZ-NAS trainability)
RADEMACHER_SEED = 0
#: the constant AZ-NAS adds inside its logarithm of the eigenvalue shares
ENTROPY_EPS = 1e-8
