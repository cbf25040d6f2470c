"""Tests of the NAS-Bench-Suite-Zero baselines plain, l2_norm, fisher, grasp, jacov and epe_nas
against independent computations written here: closed forms on single Linear layers, explicit
functional forwards with autograd for the activation gradients, an explicit Hessian from
torch.autograd.functional.hessian, input Jacobians from torch.autograd.functional.jacobian, and
the EPE-NAS per-class formula re-implemented with plain loops.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lswag
from lswag import probe, proxies
from lswag.data import Batch
from lswag.errors import LswagError
from lswag.proxies import Failure

NEW = ("plain", "l2_norm", "fisher", "grasp", "jacov", "epe_nas")
K = 1e-5


# --------------------------------------------------------------------------- helpers

def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def make_batch(x, num_classes=4, seed=0, y=None) -> Batch:
    if y is None:
        g = torch.Generator().manual_seed(seed + 1000)
        y = torch.randint(0, num_classes, (x.shape[0],), generator=g)
    return Batch(x, torch.as_tensor(y), num_classes, "test")


def value(model, batch, name, **options):
    return lswag.score(model, batch, [name], options={name: options} if options else None)[name]


def conv_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(48, 4))


def mlp(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).to(dtype)


def one_hot(y, classes):
    return np.eye(classes)[y.numpy()]


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# --------------------------------------------------------------------------- plain and l2_norm

def test_plain_against_autograd_on_a_copy_in_train_mode():
    model = conv_net(seed=1)
    with torch.no_grad():                      # running stats that eval mode would use instead
        model[1].running_mean.fill_(2.0)
        model[1].running_var.fill_(16.0)
    model.eval()
    batch = make_batch(randn(6, 2, 4, 4, seed=1))
    net = copy.deepcopy(model).train()
    weights = [net[0].weight, net[4].weight]
    grads = torch.autograd.grad(F.cross_entropy(net(batch.x), batch.y), weights)
    expected = sum(float((g.double() * w.detach().double()).sum()) for g, w in zip(grads, weights))
    snip = sum(float((g.double() * w.detach().double()).abs().sum()) for g, w in zip(grads, weights))
    got = lswag.score(model, batch, ["plain", "snip"])
    assert got["plain"] == pytest.approx(expected, rel=1e-5)
    assert got["snip"] == pytest.approx(snip, rel=1e-5)
    assert abs(got["plain"]) < got["snip"]                      # signed, not absolute


def test_plain_closed_form_single_linear():
    # L = CE(W x + b): ∂L/∂W = (P − Y)ᵀ X / B, so Σ ∂L/∂W ⊙ W = Σ_n Σ_k (p − y)_nk (W x_n)_k / B
    torch.manual_seed(2)
    model = nn.Linear(5, 3).double()
    x = randn(7, 5, seed=2, dtype=torch.float64)
    batch = make_batch(x, num_classes=3)
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    xs = x.numpy()
    p = softmax(xs @ w.T + b)
    expected = float(np.sum((p - one_hot(batch.y, 3)) * (xs @ w.T)) / 7)
    assert value(model, batch, "plain") == pytest.approx(expected, rel=1e-10)


def test_l2_norm_closed_form_counts_conv_and_linear_weights_only():
    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = conv_net(seed=3)
            self.unused = nn.Linear(2, 2)           # never executed: NASLib's net.modules() counts it

        def forward(self, x):
            return self.body(x)

    model = WithUnused()
    weights = [model.body[0].weight, model.body[4].weight, model.unused.weight]
    expected = sum(math.sqrt(float(np.sum(w.detach().double().numpy() ** 2))) for w in weights)
    got = value(model, make_batch(randn(4, 2, 4, 4)), "l2_norm")
    assert got == pytest.approx(expected, rel=1e-12)
    assert proxies.get("l2_norm").needs == frozenset()          # weights only: no pass runs


def test_l2_norm_failures():
    got = value(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()), make_batch(randn(4, 3), num_classes=3), "l2_norm")
    assert isinstance(got, Failure) and "Conv or Linear" in got.reason
    model = mlp()
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    got = value(model, make_batch(randn(4, 3), num_classes=3), "l2_norm")
    assert isinstance(got, Failure) and "non-finite weight" in got.reason and "2" in got.reason


# --------------------------------------------------------------------------- fisher

def fisher_term(a, g, channel_axis):
    """½ mean_n (Σ_positions a⊙g)² per channel, with explicit loops over samples and channels."""
    a = np.moveaxis(a.detach().double().numpy(), channel_axis, 1)
    g = np.moveaxis(g.detach().double().numpy(), channel_axis, 1)
    n, c = a.shape[:2]
    out = np.zeros(c)
    for k in range(c):
        for i in range(n):
            out[k] += float(np.sum(a[i, k] * g[i, k])) ** 2
    return 0.5 * out / n


def test_fisher_closed_form_single_linear():
    # A = z = W x + b, G = ∂L/∂z = (P − Y)/B: Σ_k ½ mean_n (z (p − y) / B)²_nk, times fan-in 5
    torch.manual_seed(4)
    model = nn.Linear(5, 3).double()
    x = randn(6, 5, seed=4, dtype=torch.float64)
    batch = make_batch(x, num_classes=3)
    z = x.numpy() @ model.weight.detach().numpy().T + model.bias.detach().numpy()
    per_channel = 0.5 * np.mean((z * (softmax(z) - one_hot(batch.y, 3)) / 6) ** 2, axis=0)
    assert value(model, batch, "fisher") == pytest.approx(5 * per_channel.sum(), rel=1e-10)
    assert value(model, batch, "fisher", weighting="channel") == pytest.approx(per_channel.sum(), rel=1e-10)


def test_fisher_uses_the_pre_activation_output_and_fan_in():
    torch.manual_seed(5)
    # the in-place LeakyReLU overwrites the conv output: A must still be the pre-activation value
    # (with a ReLU the difference would not show: G is 0 wherever the ReLU changes A)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.LeakyReLU(0.1, inplace=True), nn.Flatten(),
                          nn.Linear(48, 4))
    batch = make_batch(randn(6, 2, 4, 4, seed=5))
    w1, b1, w2, b2 = (t.detach().clone() for t in (model[0].weight, model[0].bias, model[3].weight, model[3].bias))
    a1 = F.conv2d(batch.x, w1, b1, padding=1).requires_grad_(True)
    a2 = F.linear(F.leaky_relu(a1, 0.1).flatten(1), w2, b2)
    a2.retain_grad()
    F.cross_entropy(a2, batch.y).backward()
    t1, t2 = fisher_term(a1, a1.grad, 1), fisher_term(a2, a2.grad, -1)
    assert (a1 < 0).any()                                   # the activation really changes the conv output
    rec = probe.record(model, batch, {"fisher"})
    np.testing.assert_allclose(rec.layers[0].fisher.numpy(), t1, rtol=1e-5)
    np.testing.assert_allclose(rec.layers[1].fisher.numpy(), t2, rtol=1e-5)
    assert set(rec.seconds) == {"gradient"}                 # fisher rides on the whole-batch gradient pass
    fan_in = (2 * 3 * 3, 48)
    got = proxies.compute("fisher", rec, model)[0]
    assert got == pytest.approx(fan_in[0] * t1.sum() + fan_in[1] * t2.sum(), rel=1e-5)
    assert proxies.compute("fisher", rec, model, weighting="channel")[0] == pytest.approx(t1.sum() + t2.sum(), rel=1e-5)


def test_fisher_on_tokens_and_a_layer_called_twice():
    class TokenNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = nn.Linear(4, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, x):                             # x: (B, T, 4)
            h = F.gelu(self.mix(F.gelu(self.mix(x))))     # the same Linear twice
            return self.head(h.mean(1))

    torch.manual_seed(6)
    model = TokenNet()
    batch = make_batch(randn(5, 7, 4, seed=6), num_classes=3)
    wm, bm, wh, bh = (t.detach().clone() for t in (model.mix.weight, model.mix.bias, model.head.weight,
                                                    model.head.bias))
    first = F.linear(batch.x, wm, bm).requires_grad_(True)
    second = F.linear(F.gelu(first), wm, bm)
    second.retain_grad()
    head = F.linear(F.gelu(second).mean(1), wh, bh)
    head.retain_grad()
    F.cross_entropy(head, batch.y).backward()
    # tokens are positions: the channel is the last axis and Σ runs over the T tokens
    mix = fisher_term(first, first.grad, -1) + fisher_term(second, second.grad, -1)
    top = fisher_term(head, head.grad, -1)
    rec = probe.record(model, batch, {"fisher"})
    assert [l.name for l in rec.layers] == ["mix", "head"]
    np.testing.assert_allclose(rec.layers[0].fisher.numpy(), mix, rtol=1e-5)
    assert value(model, batch, "fisher") == pytest.approx(4 * mix.sum() + 4 * top.sum(), rel=1e-5)


def test_fisher_bad_weighting():
    with pytest.raises(lswag.LswagError, match="fan_in"):
        value(mlp(), make_batch(randn(4, 3), num_classes=3), "fisher", weighting="per_weight")


# --------------------------------------------------------------------------- grasp

def test_grasp_against_explicit_hessian():
    model = mlp(seed=7, dtype=torch.float64)
    x = randn(6, 3, seed=7, dtype=torch.float64)
    batch = make_batch(x, num_classes=3)
    b1, b2 = model[0].bias.detach(), model[2].bias.detach()     # biases are constants in H
    shapes = [model[0].weight.shape, model[2].weight.shape]
    sizes = [s.numel() for s in shapes]

    def loss_of(theta):
        w1, w2 = theta[:sizes[0]].reshape(shapes[0]), theta[sizes[0]:].reshape(shapes[1])
        return F.cross_entropy(F.linear(torch.tanh(F.linear(x, w1, b1)), w2, b2), batch.y)

    theta = torch.cat([model[0].weight.detach().ravel(), model[2].weight.detach().ravel()])
    hessian = torch.autograd.functional.hessian(loss_of, theta)
    gradient = torch.autograd.functional.jacobian(loss_of, theta)
    assert hessian.shape == (24, 24)
    expected = -float(theta @ (hessian @ gradient))
    rec = probe.record(model, batch, {"hessian"})
    hv = hessian @ gradient
    np.testing.assert_allclose(torch.cat([l.hessian_gradient.ravel() for l in rec.layers]).numpy(),
                               hv.numpy(), rtol=1e-9, atol=1e-15)
    assert set(rec.seconds) == {"hessian"} and all(l.gradient is None for l in rec.layers)
    assert proxies.compute("grasp", rec, model)[0] == pytest.approx(expected, rel=1e-9)


def test_grasp_on_a_bn_conv_net_float32():
    # a second implementation: the Hessian-vector product by double backward on a copy
    model = conv_net(seed=8)
    batch = make_batch(randn(6, 2, 4, 4, seed=8))
    net = copy.deepcopy(model).train()
    weights = [net[0].weight, net[4].weight]
    loss = F.cross_entropy(net(batch.x), batch.y)
    g = torch.autograd.grad(loss, weights, create_graph=True)
    hv = torch.autograd.grad(sum((gi.detach() * gi).sum() for gi in g), weights)
    expected = -sum(float((w.detach().double() * h.double()).sum()) for w, h in zip(weights, hv))
    assert value(model, batch, "grasp") == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------- jacov

def hand_jacobian(model, x):
    """∂(Σ f(x))/∂x on the whole batch (train mode, a copy), flattened per sample, float64."""
    net = copy.deepcopy(model).train()
    jac = torch.autograd.functional.jacobian(lambda inp: net(inp).sum(), x)
    return jac.reshape(x.shape[0], -1).double().numpy()


def jacov_reference(rows):
    eig = np.linalg.eig(np.corrcoef(rows))[0].real       # NASLib takes eig, not eigvalsh
    return float(-np.sum(np.log(eig + K) + 1.0 / (eig + K)))


def seq_net(seed=9):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.GELU(), nn.Flatten(), nn.Linear(18, 4))


@pytest.mark.parametrize("build,shape", [(conv_net, (6, 2, 4, 4)),      # images, BatchNorm coupling samples
                                         (seq_net, (6, 3, 5)),          # (B, T, C) sequences
                                         (lambda: mlp(seed=10), (6, 3))])
def test_jacov_against_autograd_jacobian(build, shape):
    model = build()
    batch = make_batch(randn(*shape, seed=11), num_classes=4)
    rows = hand_jacobian(model, batch.x)
    rec = probe.record(model, batch, {"input_jacobian"})
    assert tuple(rec.input_jacobian.shape) == (shape[0], int(np.prod(shape[1:])))
    np.testing.assert_allclose(rec.input_jacobian.double().numpy(), rows, rtol=1e-5, atol=1e-7)
    assert set(rec.seconds) == {"jacobian"} and rec.output_width in (3, 4)
    assert proxies.compute("jacov", rec, model)[0] == pytest.approx(jacov_reference(rows), rel=1e-4)


def test_jacov_closed_form_linear_network():
    # f(x) = W x + b: every row of J is 1ᵀW, corrcoef is all ones, eigenvalues B and 0 (B−1 times)
    torch.manual_seed(12)
    model = nn.Linear(5, 3).double()
    batch = make_batch(randn(4, 5, seed=12, dtype=torch.float64), num_classes=3)
    expected = -(math.log(4 + K) + 1 / (4 + K) + 3 * (math.log(K) + 1 / K))
    assert value(model, batch, "jacov") == pytest.approx(expected, rel=1e-8)


def test_jacobian_proxies_fail_without_dependence_on_the_input():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            return self.fc(torch.ones_like(x))

    got = lswag.score(Constant(), make_batch(randn(6, 3)), ["jacov", "epe_nas"])
    for name in ("jacov", "epe_nas"):
        assert isinstance(got[name], Failure) and "does not depend on the input" in got[name].reason


def test_jacobian_proxies_need_a_floating_input():
    torch.manual_seed(13)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 3))
    tokens = torch.randint(0, 10, (6, 3), generator=torch.Generator().manual_seed(13))
    got = lswag.score(model, make_batch(tokens, num_classes=3), ["jacov", "epe_nas", "plain"])
    for name in ("jacov", "epe_nas"):
        assert isinstance(got[name], Failure) and "not floating-point" in got[name].reason
    assert isinstance(got["plain"], float)


# --------------------------------------------------------------------------- epe_nas

def epe_reference(rows, labels, n_classes):
    """EPE-NAS per class, written with a dict of row lists and explicit loops."""
    groups: dict[int, list] = {}
    for row, label in zip(rows, labels):
        groups.setdefault(int(label), []).append(row)
    scores = {}
    for c, members in groups.items():
        if len(members) == 1:
            if n_classes > 100:
                continue                       # skipped, as in the reference
            scores[c] = math.log(1 + K)        # corrcoef of one row is 1
            continue
        m = np.array(members)
        n = len(members)
        total = 0.0
        for i in range(n):
            for j in range(n):
                a, b = m[i] - m[i].mean(), m[j] - m[j].mean()
                corr = float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))
                total += math.log(abs(corr) + K)
        scores[c] = total / n if n_classes > 100 else total
    if n_classes <= 100:
        return sum(abs(s) for s in scores.values())
    return sum(abs(scores[c] - scores[d]) for c in scores for d in scores) / len(scores)


LABELS = [0, 2, 0, 1, 1, 5, 0, 2]          # classes 0 (3 samples), 1 (2), 2 (2), 5 (1)


@pytest.mark.parametrize("n_classes", [10, 101])
def test_epe_nas_against_per_class_reference(n_classes):
    torch.manual_seed(14)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, n_classes))
    batch = make_batch(randn(8, 2, 4, 4, seed=14), num_classes=n_classes, y=LABELS)
    rows = hand_jacobian(model, batch.x)
    expected = epe_reference(rows, LABELS, n_classes)
    got = value(model, batch, "epe_nas")
    assert got == pytest.approx(expected, rel=1e-4)
    # the two regimes really differ: the single-sample class counts below 101 classes only
    without_single = epe_reference(rows[[i for i, c in enumerate(LABELS) if c != 5]],
                                   [c for c in LABELS if c != 5], n_classes)
    if n_classes > 100:
        assert expected == pytest.approx(without_single, rel=1e-12)
    else:
        assert expected == pytest.approx(without_single + math.log(1 + K), rel=1e-12)


def test_epe_nas_many_classes_needs_a_class_with_two_samples():
    torch.manual_seed(15)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 120))
    batch = make_batch(randn(5, 3, seed=15), num_classes=120, y=[3, 9, 17, 40, 119])
    got = value(model, batch, "epe_nas")
    assert isinstance(got, Failure) and "at least 2 samples" in got.reason


# --------------------------------------------------------------------------- failures and the user's model

def nan_batch(shape=(8, 3)):
    x = randn(*shape)
    x[:] = float("nan")
    return make_batch(x, num_classes=3)


def test_nan_input_fails_every_data_dependent_new_proxy():
    got = lswag.score(mlp(), nan_batch(), list(NEW))
    for name in ("plain", "fisher", "grasp", "jacov", "epe_nas"):
        assert isinstance(got[name], Failure), name
        assert "non-finite" in got[name].reason, (name, got[name].reason)
    # l2_norm reads the weights only: the batch cannot change it
    assert got["l2_norm"] == pytest.approx(value(mlp(), make_batch(randn(8, 3), num_classes=3), "l2_norm"))


def test_no_layer_fails_layer_proxies():
    model = nn.Sequential(nn.BatchNorm1d(3), nn.ReLU())
    got = lswag.score(model, make_batch(randn(4, 3), num_classes=3), ["plain", "l2_norm", "fisher", "grasp"])
    for name, result in got.items():
        assert isinstance(result, Failure) and "Conv or Linear" in result.reason, name


def test_new_passes_run_only_when_needed():
    model, batch = mlp(), make_batch(randn(6, 3), num_classes=3)
    rec = probe.record(model, batch, {"gradient"})
    assert set(rec.seconds) == {"gradient"} and rec.input_jacobian is None and rec.output_width is None
    assert all(l.fisher is None and l.hessian_gradient is None for l in rec.layers)
    rec = probe.record(model, batch, {"fisher", "hessian", "input_jacobian"})
    assert set(rec.seconds) == {"gradient", "hessian", "jacobian"} and all(v >= 0 for v in rec.seconds.values())
    assert all(l.gradient is None for l in rec.layers) and rec.sites == []


def test_jacobian_on_the_gradient_pass_forward_changes_no_value():
    """With a gradient pass, the input Jacobian's backward runs on that pass's forward: the rows
    equal those of the Jacobian's own pass, and the gradient, fisher and H g those without it."""
    model, batch = conv_net(seed=17), make_batch(randn(6, 2, 4, 4, seed=17))
    alone = probe.record(model, batch, {"input_jacobian"})
    without = probe.record(model, batch, {"gradient", "fisher", "hessian"})
    shared = probe.record(model, batch, {"gradient", "fisher", "hessian", "input_jacobian"})
    assert set(shared.seconds) == {"gradient", "hessian", "jacobian"}
    assert torch.equal(shared.input_jacobian, alone.input_jacobian) and shared.output_width == alone.output_width
    for a, b in zip(without.layers, shared.layers):
        assert torch.equal(a.gradient, b.gradient) and torch.equal(a.fisher, b.fisher)
        assert torch.equal(a.hessian_gradient, b.hessian_gradient)


def test_user_model_left_exactly_as_it_was():
    model = conv_net(seed=16)
    model.eval()
    model[0].weight.requires_grad_(False)
    calls = []
    handle = model[4].register_forward_hook(lambda m, i, o: calls.append(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    x = randn(6, 2, 4, 4, seed=16)
    batch = make_batch(x)
    got = lswag.score(model, batch, list(NEW))
    assert all(isinstance(v, float) and math.isfinite(v) for v in got.values()), got
    after = model.state_dict()
    for k, v in state.items():
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), k
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert list(model[4]._forward_hooks) == [handle.id] and calls == []
    assert all(not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(batch.x, x) and not batch.x.requires_grad


def test_every_proxy_takes_the_output_picker_of_a_tuple_model():
    # proxies that run their own copy (synflow, flops, zen, tcet) must pick the logits as the probe does
    from lswag.scoring import evaluate

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                          nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head, self.aux = nn.Linear(4, 10), nn.Linear(4, 10)

        def forward(self, x):
            features = self.features(x)
            return self.aux(features), self.head(features)

    torch.manual_seed(0)
    model = TwoHeads()
    batch = Batch(x=torch.randn(8, 3, 8, 8), y=torch.arange(8) % 10, num_classes=10, source="test")
    with pytest.raises(LswagError, match="returned a tuple of 2"):
        evaluate(model, batch, ["synflow"])
    results = evaluate(model, batch, "all", output=lambda out: out[1])
    assert not [r for r in results if r.failed and "logits" in r.value.reason]
    single = nn.Sequential(model.features, model.head)           # the same network, one head
    expected = {r.name: r.value for r in evaluate(single, batch, ["synflow", "flops", "zen"])}
    got = {r.name: r.value for r in results}
    assert got["synflow"] == pytest.approx(expected["synflow"]) and got["zen"] == pytest.approx(expected["zen"])
    assert got["flops"] == pytest.approx(expected["flops"] + 40 / 1e6)   # the aux head's 4x10 MACs


def test_functional_activations_are_sites_when_there_is_no_activation_module():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(12, 16), nn.Linear(16, 16), nn.Linear(16, 5)

        def forward(self, x):
            return self.c(torch.relu(self.b(F.gelu(self.a(x.flatten(1))))))

    torch.manual_seed(0)
    functional = Functional()
    modules = nn.Sequential(nn.Flatten(), functional.a, nn.GELU(), functional.b, nn.ReLU(), functional.c)
    batch = Batch(x=torch.randn(16, 3, 2, 2), y=torch.arange(16) % 5, num_classes=5, source="test")
    names = ["nwot", "swap", "l_swag", "zico"]
    assert lswag.score(functional, batch, names) == lswag.score(modules, batch, names)
    record = probe.record(functional, batch, {"patterns"})
    assert [s.name for s in record.sites] == ["F.gelu#1", "F.relu#2"]
    linear = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))          # no nonlinearity at all: still a failure
    assert isinstance(lswag.score(linear, batch, ["nwot"])["nwot"], Failure)


def test_fused_passes_give_the_values_of_separate_runs():
    from lswag.scoring import evaluate
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    batch = make_batch(randn(8, 3, 4, 4), num_classes=3)
    names = ["fisher", "grad_norm", "snip", "plain", "zico", "l_swag", "swap", "nwot", "grasp", "jacov"]
    fused = {r.name: r.value for r in evaluate(model, batch, names)}
    alone = {name: evaluate(model, batch, [name])[0].value for name in names}
    assert fused == alone
