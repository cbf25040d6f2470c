"""The whole proxy zoo on tiny versions of the network families users bring: a ResNet, a
MobileNet-style net with depthwise convolutions, a ViT (GELU, LayerNorm, attention), an MLP and
an NB201 cell network. torchvision and timm do not install beside the CPU torch wheel here, so
the networks are written out below at test size (random init, nothing downloaded)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import lswag
from lswag import proxies
from lswag.data import Batch
from lswag.scoring import evaluate


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet(classes=10):
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                         BasicBlock(8, 8, 1), BasicBlock(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, classes))


def mobilenet(classes=10):
    def inverted(cin, cout, stride):
        hidden = 2 * cin
        return nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                             nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                             nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                             nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(inplace=True),
                         inverted(8, 8, 1), inverted(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, classes))


class EncoderBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(0.1), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, dim=16, patch=4, size=16, classes=10):
        super().__init__()
        tokens = (size // patch) ** 2 + 1
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(0.02 * torch.randn(1, tokens, dim))
        self.blocks = nn.Sequential(EncoderBlock(dim), EncoderBlock(dim))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.position
        return self.head(self.norm(self.blocks(x))[:, 0])


def mlp(classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(),
                         nn.Linear(32, classes))


def nb201(classes=10):
    space = lswag.spaces.get("nb201")
    return space.build(space.parse("13714"), num_classes=classes, C=4, N=1, seed=0)


@pytest.mark.parametrize("family, build", [("resnet", resnet), ("mobilenet", mobilenet), ("vit", ViT),
                                           ("mlp", mlp), ("nb201", nb201)])
def test_every_proxy_scores_each_network_family(family, build):
    torch.manual_seed(0)
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = Batch(x=torch.randn(16, 3, 16, 16), y=torch.arange(16) % 10, num_classes=10, source="test")
    results = {r.name: r.value for r in evaluate(model, batch, "all")}
    assert sorted(results) == proxies.names()
    failed = {name: value.reason for name, value in results.items() if isinstance(value, proxies.Failure)}
    assert not failed, failed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
