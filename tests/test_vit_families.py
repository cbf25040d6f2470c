"""The whole proxy zoo on the ViT families beyond the plain ViT of test_any_module.py: a pooling
ViT (PiT: token grid pooled by a strided depthwise conv), a DeiT (class and distillation tokens,
fused scaled_dot_product_attention) and a Swin (window attention with a relative position bias
table, shifted windows by torch.roll, patch merging). Written out at test size: timm does not
install beside the CPU torch wheel here."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lswag import probe, proxies
from lswag.data import Batch
from lswag.scoring import evaluate


class Attention(nn.Module):
    """timm's Attention: one qkv Linear; the fused kernel or the softmax written out."""

    def __init__(self, dim, heads=2, fused=False):
        super().__init__()
        self.heads, self.fused = heads, fused
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, bias=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            scores = q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5
            out = (scores if bias is None else scores + bias).softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def mlp(dim):
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


class Block(nn.Module):
    def __init__(self, dim, fused=False):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention, self.mlp = Attention(dim, fused=fused), mlp(dim)

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------- PiT

class Pooling(nn.Module):
    """PiT's pooling: a strided depthwise conv on the token grid, a Linear on the class token."""

    def __init__(self, cin, cout, stride=2):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, stride + 1, stride, stride // 2, groups=cin)
        self.fc = nn.Linear(cin, cout)

    def forward(self, grid, cls):
        return self.conv(grid), self.fc(cls)


class PiT(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, 4)                      # 16x16 -> a 4x4 grid of tokens
        self.position = nn.Parameter(0.02 * torch.randn(1, 8, 4, 4))
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, 8))
        self.stages = nn.ModuleList([nn.Sequential(Block(8)), nn.Sequential(Block(16), Block(16))])
        self.pool = Pooling(8, 16)                              # 4x4 -> 2x2, width 8 -> 16
        self.norm, self.head = nn.LayerNorm(16), nn.Linear(16, classes)

    def forward(self, x):
        grid = self.patch(x) + self.position
        cls = self.cls.expand(len(x), -1, -1)
        for i, stage in enumerate(self.stages):
            b, c, h, w = grid.shape
            tokens = stage(torch.cat([cls, grid.flatten(2).transpose(1, 2)], 1))
            cls, grid = tokens[:, :1], tokens[:, 1:].transpose(1, 2).reshape(b, c, h, w)
            if i == 0:
                grid, cls = self.pool(grid, cls)
        return self.head(self.norm(cls[:, 0]))


# --------------------------------------------------------------------------- DeiT

class DeiT(nn.Module):
    """DeiT distilled: class and distillation tokens, each with its head; their mean at inference
    (timm's ``distilled_training=False``, also in train mode)."""

    def __init__(self, dim=16, patch=4, size=16, classes=4):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.dist = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.position = nn.Parameter(0.02 * torch.randn(1, (size // patch) ** 2 + 2, dim))
        self.blocks = nn.Sequential(Block(dim, fused=True), Block(dim, fused=True))
        self.norm = nn.LayerNorm(dim)
        self.head, self.head_dist = nn.Linear(dim, classes), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), self.dist.expand(len(x), -1, -1), x], 1) + self.position
        x = self.norm(self.blocks(x))
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


# --------------------------------------------------------------------------- Swin

def window_partition(x, size):
    """(B, H, W, C) -> (B·windows, size², C), windows sample-major."""
    b, h, w, c = x.shape
    return x.view(b, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, size * size, c)


def window_reverse(windows, size, h, w):
    b = windows.shape[0] // ((h // size) * (w // size))
    return windows.view(b, h // size, w // size, size, size, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def shifted_window_mask(resolution, size, shift):
    """(windows, size², size²): -100 between tokens that the roll brought together from different regions."""
    region = torch.zeros(1, resolution, resolution, 1)
    cuts = (slice(0, -size), slice(-size, -shift), slice(-shift, None))
    for label, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
        region[:, rows, cols] = label
    labels = window_partition(region, size).squeeze(-1)
    return (labels[:, None, :] != labels[:, :, None]).float() * -100.0


class WindowAttention(nn.Module):
    def __init__(self, dim, size, heads=2):
        super().__init__()
        self.table = nn.Parameter(0.02 * torch.randn((2 * size - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + size - 1
        self.register_buffer("index", relative[..., 0] * (2 * size - 1) + relative[..., 1], persistent=False)
        self.attention = Attention(dim, heads)

    def forward(self, windows, mask=None):
        n = windows.shape[1]
        bias = self.table[self.index.reshape(-1)].view(n, n, -1).permute(2, 0, 1)      # (heads, N, N)
        if mask is not None:                                   # windows are sample-major: repeat per sample
            bias = (bias + mask.unsqueeze(1)).repeat(windows.shape[0] // mask.shape[0], 1, 1, 1)
        return self.attention(windows, bias)


class SwinBlock(nn.Module):
    def __init__(self, dim, resolution, size, shift):
        super().__init__()
        self.resolution, self.size, self.shift = resolution, size, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention, self.mlp = WindowAttention(dim, size), mlp(dim)
        self.register_buffer("mask", shifted_window_mask(resolution, size, shift) if shift else None,
                             persistent=False)

    def forward(self, x):                                      # (B, L, C), L = resolution²
        b, length, c = x.shape
        h = w = self.resolution
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = window_reverse(self.attention(window_partition(y, self.size), self.mask), self.size, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y.reshape(b, length, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim, resolution):
        super().__init__()
        self.resolution = resolution
        self.norm, self.reduction = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        b, _, c = x.shape
        x = x.view(b, self.resolution, self.resolution, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class Swin(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.patch, self.patch_norm = nn.Conv2d(3, 8, 2, 2), nn.LayerNorm(8)    # 16x16 -> 8x8 tokens
        self.stages = nn.Sequential(
            nn.Sequential(SwinBlock(8, 8, 4, 0), SwinBlock(8, 8, 4, 2)),
            nn.Sequential(PatchMerging(8, 8), SwinBlock(16, 4, 4, 0)))        # one 4x4 window: no shift
        self.norm, self.head = nn.LayerNorm(16), nn.Linear(16, classes)

    def forward(self, x):
        x = self.patch_norm(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(self.stages(x)).mean(1))


# --------------------------------------------------------------------------- tests

FAMILIES = {"pit": PiT, "deit": DeiT, "swin": Swin}


def tiny_batch():
    # 4 classes, 2 samples each: epe_nas's per-class correlations are defined
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return Batch(x=x, y=torch.arange(8) % 4, num_classes=4, source="test")


def executed(model, x):
    """The Conv/Linear modules in first-call order, and each GELU call's elements per sample,
    from this test's own hooks on a copy."""
    net = copy.deepcopy(model).train()
    layers, gelus, handles = [], [], []
    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_pre_hook(
                lambda m, i, name=name: layers.append(name) if name not in layers else None))
        elif isinstance(module, nn.GELU):
            handles.append(module.register_forward_hook(lambda m, i, out: gelus.append(out[0].numel())))
    net(x)
    for handle in handles:
        handle.remove()
    return layers, gelus


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_proxy_scores_each_vit_family(family):
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()        # the probe scores a train-mode copy; the user's mode stays
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = tiny_batch()
    results = {r.name: r.value for r in evaluate(model, batch, "all")}
    assert sorted(results) == proxies.names()
    failed = {name: value.reason for name, value in results.items() if isinstance(value, proxies.Failure)}
    assert not failed, failed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not any(m.training for m in model.modules())


#: AZ-NAS's block maps: the stem output, then each stage's (PiT, Swin) or block's (DeiT) output tokens
BLOCK_MAPS = {"pit": [(8, 17, 8), (8, 17, 8), (8, 5, 16)], "deit": [(8, 18, 16)] * 3,
              "swin": [(8, 64, 8), (8, 64, 8), (8, 16, 16)]}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_probe_sees_every_layer_and_gelu_of_each_vit_family(family):
    torch.manual_seed(0)
    model = FAMILIES[family]()
    batch = tiny_batch()
    layers, gelus = executed(model, batch.x)
    record = probe.record(model, batch, {"patterns", "gradient", "fisher", "blocks"})
    assert [block.shape for block in record.blocks] == BLOCK_MAPS[family]
    assert all(block.problem is None and block.gain > 0 for block in record.blocks[1:])
    assert [layer.name for layer in record.layers] == layers
    assert len(layers) == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())   # each one runs
    assert [(site.kind, site.units) for site in record.sites] == [("GELU", units) for units in gelus]
    modules = dict(model.named_modules())
    for layer in record.layers:
        assert layer.gradient.shape == modules[layer.name].weight.shape and layer.gradient.abs().sum() > 0
        assert layer.fisher.shape == (layer.weight.shape[0],) and layer.fisher.sum() > 0


# --------------------------------------------------------------------------- AZ-NAS across token pooling

class PairPool(nn.Module):
    """Token pooling: each two neighbouring tokens averaged, (B, T, C) -> (B, T/2, C)."""

    def forward(self, x):
        return x.view(x.shape[0], -1, 2, x.shape[2]).mean(2)


def az_term(sigma):
    return -sigma - 1 / (sigma + 1e-6) + 2


def test_az_trainability_across_token_pooling_compares_flattened_samples():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), PairPool(), nn.Linear(6, 5))       # blocks: the three children
    x = torch.randn(6, 8, 4, generator=torch.Generator().manual_seed(1))
    w2 = net[2].weight.detach().double()
    stream = torch.Generator().manual_seed(probe.RADEMACHER_SEED)          # ±1 gradients, last pair first
    g2, g1 = ((torch.randint(0, 2, shape, generator=stream) * 2 - 1).double() for shape in ((6, 4, 5), (6, 4, 6)))
    gin2 = g2 @ w2                                        # through the Linear, token by token
    gin1 = g1.repeat_interleave(2, dim=1) / 2             # through the mean of each pair: half to each token
    # 4 tokens -> 4 tokens: (sample, token) rows; 8 tokens -> 4: one flattened row per sample
    sigma2 = torch.linalg.matrix_norm(gin2.reshape(24, 6).T @ g2.reshape(24, 5) / 24, ord=2)
    sigma1 = torch.linalg.matrix_norm(gin1.reshape(6, -1).T @ g1.reshape(6, -1) / 6, ord=2)
    batch = Batch(x=x, y=torch.zeros(6, dtype=torch.long), num_classes=5, source="test")
    got = {r.name: r.value for r in evaluate(net, batch, ["az_trainability"])}["az_trainability"]
    assert got == pytest.approx((az_term(float(sigma1)) + az_term(float(sigma2))) / 2, rel=1e-6)
