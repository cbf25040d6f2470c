"""AZ-NAS's blocks: which modules they are (:func:`block_containers`), the hooks that keep their
feature maps in a forward, and the statistics of the ``features`` pass (:func:`block_statistics`)."""
from __future__ import annotations

import contextlib
import math
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from lswag.errors import LswagError
from lswag.probe.records import BlockRecord
from lswag.probe.tensors import all_finite
from lswag.probe.vocabulary import ENTROPY_EPS, RADEMACHER_SEED


class DeclaresBlocks:
    """A network that names the containers whose children are its AZ-NAS blocks, instead of
    leaving them to :func:`block_containers`' rules (lswag's TransNAS-Bench-101 networks name
    their encoder's modules, where the rules would pick the decoder)::

        class TaskNetwork(DeclaresBlocks, nn.Module):
            block_containers = ("encoder.layers",)
    """

    #: qualified names (``named_modules()``) of the containers, in execution order
    block_containers: ClassVar[tuple[str, ...]]


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

    A network that is a :class:`DeclaresBlocks` names its containers itself, in the given order.
    """
    if isinstance(net, DeclaresBlocks):
        return _declared_containers(net)
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


def _declared_containers(net: DeclaresBlocks) -> list[tuple[str, nn.Module]]:
    modules = dict(net.named_modules())
    missing = [name for name in net.block_containers if name not in modules]
    if missing:
        raise LswagError(f"block_containers names {', '.join(missing)}, which the model does not have")
    return [(name, modules[name]) for name in net.block_containers]


class BlockCapture:
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


def block_statistics(capture: BlockCapture, differentiable_input: torch.Tensor | None = None
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
