"""Define-by-run families for tests/test_family.py, importable by name (``--space families:tiny_cnn``)
because pytest puts this folder on ``sys.path``. Plain functions, not ``@lswag.space``: importing
the module registers nothing, so the spaces that tests/test_contracts.py is parametrised over do not
depend on which test module is collected first. Tiny widths, for 8 to 16 px inputs."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: tiny_cnn's options, for the closed-form count of its architectures
CNN_WIDTHS, CNN_DEPTHS, CNN_KERNELS, CNN_ACTIVATIONS = (4, 8), (1, 2, 3), (1, 3), ("relu", "gelu")


def tiny_cnn(trial, num_classes=10, stem=4):
    """A tiny CNN: a width, a depth, a kernel per layer and an activation."""
    width = trial.choice("width", CNN_WIDTHS)
    depth = trial.integer("depth", CNN_DEPTHS[0], CNN_DEPTHS[-1])
    kernels = trial.choices("kernel", CNN_KERNELS, count=depth)
    activation = nn.ReLU if trial.choice("act", CNN_ACTIVATIONS) == "relu" else nn.GELU
    layers: list[nn.Module] = [nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), activation()]
    channels = stem
    for kernel in kernels:
        layers += [nn.Conv2d(channels, width, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(width),
                   activation()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


class Block(nn.Module):
    """A pre-norm transformer layer of its own MLP ratio and head count."""

    def __init__(self, width: int, mlp_ratio: float, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attention = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attention.transpose(1, 2).reshape(batch, tokens, width))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """4 px patches, learned position embeddings for ``image_size`` (so the space is input-sized), mean pooling."""

    def __init__(self, width: int, ratios, heads, num_classes: int, image_size: int, patch: int = 4):
        super().__init__()
        self.patches = nn.Conv2d(3, width, patch, stride=patch)
        self.position = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2, width))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(*(Block(width, ratio, head) for ratio, head in zip(ratios, heads)))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2) + self.position
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


def tiny_vit(trial, num_classes=10, image_size=16):
    """A tiny ViT whose per-layer choices follow its depth, as ViT-Bench-101's."""
    width = trial.choice("hidden_dim", [8, 16])
    depth = trial.integer("depth", 1, 3)
    ratios = trial.choices("mlp_ratio", [2.0, 4.0], count=depth)
    heads = trial.choices("num_heads", [1, 2], count=depth)
    return TinyViT(width, ratios, heads, num_classes, image_size)


def huge(trial, num_classes=10):
    """100^8 architectures: too many to enumerate."""
    widths = trial.choices("width", list(range(1, 101)), count=8)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, widths[0]), nn.ReLU(), nn.Linear(widths[0], num_classes))


def counted_on_meta(trial, num_classes=10):
    """Reads a tensor's value while building (``.item()``), which the meta device cannot: lswag replays
    it on the CPU instead, drawing weights that must not move the global RNG."""
    width = trial.choice("width", [4, 8])
    probe = nn.Linear(width, 1)
    hidden = 4 if probe.weight.abs().sum().item() >= 0 else 8     # always 4, once the value can be read
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def not_a_network(trial):
    trial.choice("width", [4, 8])
    return "a string"


def asks_twice(trial):
    trial.choice("width", [4, 8])
    trial.choice("width", [4, 8])
    return nn.Linear(1, 1)


def no_options(trial):
    trial.choice("width", [])
    return nn.Linear(1, 1)


def list_option(trial):
    trial.choice("widths", [[4, 8], [8, 16]])
    return nn.Linear(1, 1)


def reversed_bounds(trial):
    trial.integer("depth", 4, 2)
    return nn.Linear(1, 1)


def negative_count(trial):
    trial.choices("kernel", [1, 3], count=-1)
    return nn.Linear(1, 1)


NOT_A_FUNCTION = 3
