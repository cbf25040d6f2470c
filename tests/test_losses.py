"""Task losses by name, and the gradient proxies under each (dense outputs, soft and float targets)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lswag import losses
from lswag.data import Batch
from lswag.errors import LswagError
from lswag.scoring import evaluate


def test_losses_closed_forms():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    one_hot = F.one_hot(labels, 4).float()
    assert losses.get("soft_cross_entropy")(logits, one_hot) == pytest.approx(float(F.cross_entropy(logits, labels)))
    soft = torch.softmax(torch.randn(6, 4), 1)
    by_hand = -sum(float((soft[i] * torch.log_softmax(logits[i], 0)).sum()) for i in range(6)) / 6
    assert losses.get("soft_cross_entropy")(logits, soft) == pytest.approx(by_hand, rel=1e-6)
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert losses.get("l1")(a, b) == pytest.approx(float((a - b).abs().sum() / a.numel()))
    assert losses.get("mse")(a, b) == pytest.approx(float(((a - b) ** 2).sum() / a.numel()))
    with pytest.raises(LswagError, match="unknown loss 'hinge'; valid choices: cross_entropy, l1, mse, soft_cross_entropy"):
        losses.get("hinge")


def grad_norm_by_hand(model, x, y, loss):
    model = model.train()
    model.zero_grad()
    loss(model(x), y).backward()
    return sum(float(m.weight.grad.norm()) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def dense_net(out_channels):
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, out_channels, 1))


@pytest.mark.parametrize("loss, make_target", [
    ("l1", lambda x: x.clone()),                                            # autoencoder: reconstruct the input
    ("mse", lambda x: torch.randn(len(x), 3, 8, 8)),                        # dense regression
    ("cross_entropy", lambda x: torch.randint(0, 3, (len(x), 8, 8))),       # per-pixel segmentation
    ("soft_cross_entropy", lambda x: torch.softmax(torch.randn(len(x), 3, 8, 8), 1)),
])
def test_gradient_proxies_under_each_task_loss(loss, make_target):
    torch.manual_seed(0)
    model = dense_net(3)
    x = torch.randn(8, 3, 8, 8)
    batch = Batch(x=x, y=make_target(x), num_classes=3, source="test")
    results = {r.name: r.value for r in evaluate(model, batch, ["grad_norm", "zico", "l_swag"], loss_fn=loss)}
    expected = grad_norm_by_hand(copy.deepcopy(model), x, batch.y, losses.get(loss))
    assert results["grad_norm"] == pytest.approx(expected, rel=1e-5)
    assert all(isinstance(v, float) and v > 0 for v in results.values()), results
