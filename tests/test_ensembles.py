"""Tests of zen, reg_swap, tcet, the AZ-NAS and TE-NAS components and the pool ensembles
(lswag.ensembles), each against an independent computation written here: batch norm, running
statistics and feature maps by hand, covariance spectra and spectral norms with NumPy,
vector-Jacobian products through explicit functional forwards, the NTK of a linear model in
closed form and of a BatchNorm MLP through torch.autograd.functional.jacobian, activation
patterns counted with Python sets, and rank combinations worked out by hand.
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
from lswag import ensembles, probe
from lswag.data import Batch
from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.proxies.zen import zen_score


# --------------------------------------------------------------------------- helpers

def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def make_batch(x, num_classes=3, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed + 1000)
    return Batch(x, torch.randint(0, num_classes, (x.shape[0],), generator=g), num_classes, "test")


def value(model, batch, name, **options):
    return lswag.score(model, batch, [name], options={name: options} if options else None)[name]


def failure(model, batch, name, **options) -> str:
    result = value(model, batch, name, **options)
    assert isinstance(result, Failure), result
    return result.reason


def entropy(rows: np.ndarray) -> float:
    """−Σ p ln(p + 1e-8), p the eigenvalue shares of the biased covariance of (samples, channels) rows."""
    eig = np.linalg.eigvalsh(np.cov(rows.T, bias=True))
    p = eig / eig.sum()
    return float(-np.sum(p * np.log(p + 1e-8)))


def map_rows(a: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B·H·W, C); (B, C) stays."""
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1]) if a.ndim == 4 else a


def rademacher_stream(shapes):
    """The ±1 gradients of the documented draw: one CPU generator seeded RADEMACHER_SEED, in the given order."""
    g = torch.Generator().manual_seed(probe.RADEMACHER_SEED)
    return [(torch.randint(0, 2, s, generator=g) * 2 - 1).double() for s in shapes]


def az_term(sigma: float) -> float:
    return -sigma - 1 / (sigma + 1e-6) + 2


# --------------------------------------------------------------------------- zen

def bn_net(seed=0, track=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3, track_running_stats=track),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))


def hand_bn_zen(weight, gamma, beta, x, noise, statistic="running") -> float:
    """Zen of conv -> BN (train) -> ReLU -> global pool, all by hand in float64."""
    w, gamma, beta = weight.double(), gamma.double(), beta.double()
    running = torch.ones(3, dtype=torch.float64)
    features, first_var = [], None
    for inputs in (x.double(), x.double() + 0.01 * noise.double()):
        a = F.conv2d(inputs, w, padding=1)
        mean = a.mean(dim=(0, 2, 3))
        var = a.var(dim=(0, 2, 3), unbiased=False)
        n = a.numel() / a.shape[1]
        running = 0.9 * running + 0.1 * var * n / (n - 1)          # momentum 0.1, unbiased update
        first_var = var if first_var is None else first_var
        z = (a - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-5)
        features.append(torch.relu(z * gamma[None, :, None, None] + beta[None, :, None, None]))
    delta = (features[0] - features[1]).abs().sum(dim=(1, 2, 3)).mean()
    sigma2 = running.mean() if statistic == "running" else first_var.mean()
    return float(torch.log(delta) + 0.5 * torch.log(sigma2))


@pytest.mark.parametrize("statistic", ["running", "batch"])
def test_zen_score_with_batchnorm_by_hand(statistic):
    net = bn_net(1)
    x, noise = randn(6, 2, 5, 5, seed=1), randn(6, 2, 5, 5, seed=2)
    expected = hand_bn_zen(net[0].weight.detach(), net[1].weight.detach(), net[1].bias.detach(), x, noise, statistic)
    got = zen_score(copy.deepcopy(net).train(), x, noise, bn_statistic=statistic)
    assert got == pytest.approx(expected, rel=1e-5)


def test_zen_proxy_redraws_weights_and_inputs_as_documented():
    model = bn_net(2)
    batch = make_batch(randn(5, 2, 4, 4, seed=3))
    before = copy.deepcopy(model.state_dict())
    scores = []
    g = torch.Generator().manual_seed(7)
    for _ in range(2):                                   # the documented draw order, per repeat
        weight_seed = int(torch.randint(2 ** 62, (1,), generator=g))
        x = torch.randn(batch.x.shape, generator=g)
        noise = torch.randn(batch.x.shape, generator=g)
        redrawn = copy.deepcopy(model)
        probe.initialise(redrawn, "normal", weight_seed)
        assert float(redrawn[1].weight.detach().min()) == 1.0 and not redrawn[1].bias.detach().any()
        scores.append(hand_bn_zen(redrawn[0].weight.detach(), redrawn[1].weight.detach(),
                                  redrawn[1].bias.detach(), x, noise))
    assert value(model, batch, "zen", repeats=2, seed=7) == pytest.approx(np.mean(scores), rel=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())   # running stats untouched
    assert int(model[1].num_batches_tracked) == 0


class TokenNet(nn.Module):
    """BN-free: Linear on tokens -> LayerNorm -> GELU -> mean over tokens (a tensor op) -> Linear."""

    def __init__(self):
        super().__init__()
        self.embed, self.norm, self.act, self.head = nn.Linear(4, 6), nn.LayerNorm(6), nn.GELU(), nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.act(self.norm(self.embed(x))).mean(dim=1))


def test_zen_on_bn_free_layernorm_net_takes_the_map_before_pooling():
    torch.manual_seed(3)
    net = TokenNet()
    x, noise = randn(4, 5, 4, seed=4), randn(4, 5, 4, seed=5)

    @torch.no_grad()
    def feature(inputs):
        h = F.linear(inputs.double(), net.embed.weight.double(), net.embed.bias.double())
        h = F.layer_norm(h, (6,), net.norm.weight.double(), net.norm.bias.double())
        return F.gelu(h)                                  # (B, T, C): the last 3-D map before the head

    delta = (feature(x) - feature(x + 0.01 * noise)).abs().sum(dim=(1, 2)).mean()
    assert zen_score(net, x, noise) == pytest.approx(float(torch.log(delta)), rel=1e-5)   # BN term 0
    # the proxy runs on a BN-free net and returns a number
    assert math.isfinite(value(net, make_batch(randn(4, 5, 4)), "zen"))


def test_zen_falls_back_to_the_logits():
    torch.manual_seed(4)
    mlp = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    x, noise = randn(6, 5, seed=6), randn(6, 5, seed=7)
    with torch.no_grad():
        delta = (mlp(x).double() - mlp(x + 0.01 * noise).double()).abs().sum(dim=1).mean()
    assert zen_score(mlp, x, noise) == pytest.approx(float(torch.log(delta)), rel=1e-5)
    # feature="logits" forces the fallback on a conv net too
    net = bn_net(5)
    xc, nc = randn(4, 2, 4, 4, seed=8), randn(4, 2, 4, 4, seed=9)
    ref = copy.deepcopy(net).train()
    with torch.no_grad():
        out = ref(xc).double(), ref(xc + 0.01 * nc).double()
    rv = ref[1].running_var.double().mean()
    expected = math.log(float((out[0] - out[1]).abs().sum(1).mean())) + 0.5 * math.log(float(rv))
    assert zen_score(copy.deepcopy(net).train(), xc, nc, feature="logits") == pytest.approx(expected, rel=1e-5)


def test_zen_failures_and_options():
    batch = make_batch(randn(4, 2, 4, 4))
    assert "running statistics" in failure(bn_net(track=False), batch, "zen")
    assert math.isfinite(value(bn_net(track=False), batch, "zen", bn_statistic="batch"))

    class Log(nn.Module):
        def forward(self, x):
            return torch.log(x)                           # NaN on negative inputs

    nan_net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), Log(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(3, 2))
    assert "non-finite" in failure(nan_net, batch, "zen")

    class Zero(nn.Module):
        def forward(self, x):
            return x.mul(0.0)

    dead = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), Zero(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    assert "does not change" in failure(dead, batch, "zen")
    for bad in ({"repeats": 0}, {"mixup_gamma": 0.0}, {"bn_statistic": "mean"}, {"feature": "pooled"}):
        with pytest.raises(LswagError):
            lswag.score(bn_net(), batch, ["zen"], options={"zen": bad})


# --------------------------------------------------------------------------- reg_swap

def test_reg_swap_closed_form_from_swap_and_params():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    batch = make_batch(randn(8, 2, 4, 4, seed=10))
    thousands = (4 * 2 * 9 + 4 + 64 * 3 + 3) / 1e3                    # 0.275 K parameters
    got = lswag.score(net, batch, ["swap", "reg_swap"], options={"reg_swap": {"mu": 0.2, "sigma": 0.01}})
    assert got["reg_swap"] == pytest.approx(got["swap"] * math.exp(-(thousands - 0.2) ** 2 / 0.01), rel=1e-12)
    defaults = lswag.score(net, batch, ["swap", "reg_swap"])
    assert defaults["reg_swap"] == pytest.approx(defaults["swap"] * math.exp(-(thousands - 1500.0) ** 2 / 1e6),
                                                 rel=1e-12)


def test_reg_swap_ignores_auxiliary_parameters_and_validates():
    class WithAux(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act, self.out = nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)
            self.auxiliary_head = nn.Linear(5, 100)         # SWAP's count leaves it out

        def forward(self, x):
            return self.out(self.act(self.fc(x)))

    torch.manual_seed(7)
    net, batch = WithAux(), make_batch(randn(6, 4, seed=11))
    got = lswag.score(net, batch, ["swap", "reg_swap"], options={"reg_swap": {"mu": 0.0, "sigma": 1.0}})
    assert got["reg_swap"] == pytest.approx(got["swap"] * math.exp(-((25 + 12) / 1e3) ** 2), rel=1e-12)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(LswagError, match="sigma"):
            lswag.score(net, batch, ["reg_swap"], options={"reg_swap": {"sigma": bad}})
    reason = failure(net, batch, "reg_swap", mu=1e6, sigma=1.0)
    assert "underflows" in reason


# --------------------------------------------------------------------------- AZ-NAS components

def test_az_expressivity_and_progressivity_on_a_sequential_mlp():
    torch.manual_seed(8)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5))
    x = randn(16, 4, seed=12)
    with torch.no_grad():
        h = net[0](x)
        maps = [h, torch.relu(h), net[2](torch.relu(h))]   # the model itself is the container
    e = [entropy(m.double().numpy()) for m in maps]
    batch = make_batch(x)
    assert value(net, batch, "az_expressivity") == pytest.approx(sum(e), rel=1e-9)
    assert value(net, batch, "az_progressivity") == pytest.approx(min(e[1] - e[0], e[2] - e[1]), rel=1e-9)


def test_az_trainability_on_a_sequential_mlp():
    torch.manual_seed(9)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5))
    x = randn(16, 4, seed=13)
    pre = net[0](x).detach().double()
    g2, g1 = rademacher_stream([(16, 5), (16, 6)])           # last pair first
    gin2 = g2 @ net[2].weight.detach().double()               # through Linear: g W
    gin1 = g1 * (pre > 0)                                     # through ReLU
    sigmas = [np.linalg.norm((gi.T @ go / 16).numpy(), 2) for gi, go in ((gin1, g1), (gin2, g2))]
    expected = np.mean([az_term(s) for s in sigmas])
    assert value(net, make_batch(x), "az_trainability") == pytest.approx(expected, rel=1e-6)   # float32 net


class StemBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.blocks = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 8, 3, stride=2, padding=1))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def test_az_components_on_stem_and_strided_blocks():
    torch.manual_seed(10)
    net = StemBlocks()
    x = randn(6, 2, 8, 8, seed=14)
    w0, b0 = net.blocks[0].weight.detach().double(), net.blocks[0].bias.detach().double()
    w1, b1 = net.blocks[1].weight.detach().double(), net.blocks[1].bias.detach().double()
    f0 = net.stem(x).detach().double().requires_grad_(True)       # input of blocks.0: the stem output
    f1 = F.conv2d(f0, w0, b0, padding=1)
    f2 = F.conv2d(f1, w1, b1, stride=2, padding=1)
    e = [entropy(map_rows(f.detach().numpy())) for f in (f0, f1, f2)]
    batch = make_batch(x)
    assert value(net, batch, "az_expressivity") == pytest.approx(sum(e), rel=1e-7)
    assert value(net, batch, "az_progressivity") == pytest.approx(min(e[1] - e[0], e[2] - e[1]), abs=1e-7)

    g2, g1 = rademacher_stream([tuple(f2.shape), tuple(f1.shape)])
    (gin2,) = torch.autograd.grad(f2, f1, g2, retain_graph=True)
    (gin1,) = torch.autograd.grad(f1, f0, g1)
    b, c, h, w = gin2.shape                                        # 8x8 -> 4x4: unshuffle by 2 by hand
    gin2 = gin2.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
    sigmas = []
    for gi, go in ((gin1, g1), (gin2, g2)):
        rows_in, rows_out = map_rows(gi.detach().numpy()), map_rows(go.numpy())
        sigmas.append(np.linalg.norm(rows_in.T @ rows_out / rows_out.shape[0], 2))
    expected = np.mean([az_term(s) for s in sigmas])
    assert value(net, batch, "az_trainability") == pytest.approx(expected, rel=1e-6)
    assert value(net, batch, "az_complexity") == value(net, batch, "flops")


class Residual(nn.Module):
    def __init__(self, channels, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride, 1)
        self.skip = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()

    def forward(self, x):
        return torch.relu(self.conv(x)) + self.skip(x)


class Staged(nn.Module):
    """torchvision's ResNet layout: a stem of leaf modules, then stage containers of residual blocks."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.layer1 = nn.Sequential(Residual(4), Residual(4))
        self.layer2 = nn.Sequential(Residual(4, 2), Residual(4))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.layer2(self.layer1(self.stem(x))).mean((2, 3)))


def test_az_blocks_span_every_stage_container():
    torch.manual_seed(12)
    net = Staged()
    assert [name for name, _ in probe.block_containers(net)] == ["layer1", "layer2"]
    x = randn(6, 2, 8, 8, seed=15)
    rec = probe.record(net, make_batch(x), {"blocks"})
    assert rec.block_container == "layer1, layer2"
    assert [b.name for b in rec.blocks] == ["input of layer1.0", "layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    # the kept maps are the blocks' outputs: the last one's entropy by hand
    with torch.no_grad():
        last = net.train().layer2(net.layer1(net.stem(x))).double().numpy()
    assert rec.blocks[-1].entropy == pytest.approx(entropy(map_rows(last)), rel=1e-7)
    # the stem holds only leaf modules, so a plain container of leaves is no stage
    assert [name for name, _ in probe.block_containers(StemBlocks())] == ["blocks"]


class InputBlocks(nn.Module):
    """Blocks fed a weight-free function of the input: the input of the first block requires grad only
    when the input does."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(Residual(2), Residual(2, 2), Residual(2))
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(self.blocks(2 * x).mean((2, 3)))


@pytest.mark.parametrize("model", [Staged, InputBlocks])
def test_az_blocks_on_the_gradient_pass_forward_change_no_value(model):
    """With a gradient pass, its forward keeps the block maps (and feeds the input Jacobian too): the
    block statistics equal those of the features pass's own forward, the gradients those without it."""
    torch.manual_seed(13)
    net, batch = model(), make_batch(randn(6, 2, 8, 8, seed=16))
    alone = probe.record(net, batch, {"blocks"})
    needs = {"gradient", "fisher", "hessian", "input_jacobian"}
    without = probe.record(net, batch, needs)
    shared = probe.record(net, batch, needs | {"blocks"})
    assert set(shared.seconds) == {"gradient", "hessian", "jacobian", "features"}
    assert shared.blocks == alone.blocks and shared.block_container == alone.block_container
    assert any(b.gain for b in alone.blocks)
    assert torch.equal(shared.input_jacobian, without.input_jacobian)
    for a, b in zip(without.layers, shared.layers):
        assert torch.equal(a.gradient, b.gradient) and torch.equal(a.fisher, b.fisher)
        assert torch.equal(a.hessian_gradient, b.hessian_gradient)


def test_az_failures_with_reasons():
    batch = make_batch(randn(8, 4, seed=15))
    torch.manual_seed(11)
    identity = nn.Sequential(nn.Linear(4, 6), nn.Identity(), nn.Linear(6, 3))
    assert "unchanged" in failure(identity, batch, "az_trainability")
    assert math.isfinite(value(identity, batch, "az_expressivity"))

    class Flat(nn.Module):                                         # no Sequential/ModuleList anywhere
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    for name in ("az_expressivity", "az_progressivity", "az_trainability"):
        assert "nn.Sequential" in failure(Flat(), batch, name)
    class ToVector(nn.Module):
        def forward(self, x):
            return x.sum(dim=1)                                        # 1-D: not a feature map

    single = nn.Sequential(nn.Linear(4, 3), ToVector())                # one map only
    assert "2 block feature maps needed" in failure(single, batch, "az_progressivity")


# --------------------------------------------------------------------------- TE-NAS components

def test_te_ntk_cond_closed_form_for_a_linear_model():
    torch.manual_seed(12)
    net = nn.Linear(10, 3)
    x = randn(5, 10, seed=16)
    gram = x.double().numpy() @ x.double().numpy().T              # Θ = C · X Xᵀ (bias excluded)
    eig = np.linalg.eigvalsh(gram)
    assert value(net, make_batch(x), "te_ntk_cond") == pytest.approx(-eig[-1] / eig[0], rel=1e-6)


def test_te_ntk_cond_with_batchnorm_against_a_full_jacobian():
    torch.manual_seed(13)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    x = randn(6, 4, seed=17)
    ref = copy.deepcopy(net).train()
    names = [n for n, _ in ref.named_parameters() if "weight" in n]
    fixed = {n: p.detach() for n, p in ref.named_parameters() if "weight" not in n}
    buffers = {n: b.clone() for n, b in ref.named_buffers()}

    def condition(inputs):
        def summed_logits(*weights):
            params = {**fixed, **dict(zip(names, weights)), **{n: b.clone() for n, b in buffers.items()}}
            return torch.func.functional_call(ref, params, (inputs,)).sum(dim=1)

        weights = tuple(dict(ref.named_parameters())[n].detach() for n in names)
        jac = torch.autograd.functional.jacobian(summed_logits, weights)
        rows = torch.cat([j.reshape(len(inputs), -1) for j in jac], dim=1).double().numpy()
        eig = np.linalg.eigvalsh(rows @ rows.T)
        return -eig[-1] / eig[0]

    assert value(net, make_batch(x), "te_ntk_cond") == pytest.approx(condition(x), rel=1e-4)
    # samples=4: the NTK of the first 4 examples, run together (BatchNorm over those 4)
    fewer = lswag.score(net, make_batch(x), ["te_ntk_cond"], options={"te_ntk_cond": {"samples": 4}})["te_ntk_cond"]
    assert fewer == pytest.approx(condition(x[:4]), rel=1e-4) and fewer != pytest.approx(condition(x), rel=1e-2)
    with pytest.raises(LswagError, match="samples must be an integer >= 2"):
        lswag.score(net, make_batch(x), ["te_ntk_cond"], options={"te_ntk_cond": {"samples": 1}})


def test_te_ntk_cond_fails_on_a_singular_kernel():
    torch.manual_seed(14)
    reason = failure(nn.Linear(2, 1), make_batch(randn(4, 2, seed=18)), "te_ntk_cond")   # rank <= 2 < 4
    assert "singular" in reason


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU])
def test_te_linear_regions_counts_distinct_sample_codes(act):
    torch.manual_seed(15)
    net = nn.Sequential(nn.Linear(3, 4), act(), nn.Linear(4, 4), act(), nn.Linear(4, 2))
    base = randn(7, 3, seed=19)
    x = torch.cat([base, base[:3], base[:2] * 1.001])                  # repeats share a region
    codes = {}
    handles = [m.register_forward_hook(lambda mod, i, o, k=k: codes.__setitem__(k, (o > 0).numpy()))
               for k, m in enumerate(net) if isinstance(m, act)]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    per_sample = {tuple(np.concatenate([codes[k][b] for k in sorted(codes)]).tolist()) for b in range(len(x))}
    got = value(net, make_batch(x), "te_linear_regions")
    assert got == len(per_sample) and got <= 7


def hand_thin_regions(net, x, seed=0, samples=3000):
    """TE-NAS's count on the thin copy, written out: the crops drawn as the docstring says, the copy
    built under the seed, every ReLU's output binarised, distinct samples counted with a set."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = x.shape
    image, channel, top, left = (torch.randint(n, (samples,), generator=g) for n in (b, c, h - 2, w - 2))
    crops = torch.stack([x[i, k, t:t + 3, l:l + 3] for i, k, t, l in zip(image, channel, top, left)]).unsqueeze(1)
    torch.manual_seed(seed)
    thin = net.thin_network().train()
    codes = []
    handles = [m.register_forward_hook(lambda mod, i, o: codes.append((o > 0).flatten(1)))
               for m in thin.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        thin(crops)
    for h_ in handles:
        h_.remove()
    rows = torch.cat(codes, 1)
    return len({tuple(row.tolist()) for row in rows})


@pytest.mark.parametrize("space, arch", [
    ("nb201", "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"),
    ("nb301", None)])
def test_te_linear_regions_on_the_thin_copy_counts_the_crops_regions(space, arch):
    s = lswag.spaces.get(space)
    arch = arch or s.sample(1, seed=3)[0]
    net = s.build(arch, seed=0, **({} if space == "nb201" else {"C": 4, "layers": 3}))
    x = randn(16, 3, 16, 16, seed=21)
    before = copy.deepcopy(net.state_dict())
    got = value(net, make_batch(x, num_classes=10), "te_linear_regions", network="thin")
    assert got == hand_thin_regions(net, x)
    assert 1 < got <= 3000
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())      # the model is not touched
    assert got != value(net, make_batch(x, num_classes=10), "te_linear_regions", network="thin", seed=1)


def test_thin_copies_have_te_nas_thin_shapes():
    nb201 = lswag.spaces.get("nb201").build("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|"
                                            "nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|", seed=0)
    # 6 width-1 3x3 convs and their BNs, the head's BN and a 1 -> 10 linear
    assert sum(p.numel() for p in nb201.thin_network().parameters()) == 6 * (9 + 2) + 2 + (10 + 10)
    darts = lswag.spaces.get("darts")
    genotype = ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 0), ('max_pool_3x3', 2), "
                "('avg_pool_3x3', 1), ('sep_conv_5x5', 3), ('dil_conv_3x3', 4), ('skip_connect', 0)], normal_concat=[2, 3, 4, 5], "
                "reduce=[('skip_connect', 0), ('max_pool_3x3', 1), ('sep_conv_5x5', 0), ('dil_conv_5x5', 2), "
                "('skip_connect', 1), ('sep_conv_3x3', 3), ('avg_pool_3x3', 4), ('dil_conv_3x3', 0)], reduce_concat=[2, 3, 4, 5])")
    thin = darts.build(genotype, seed=0, C=4, layers=3).thin_network()
    assert thin(randn(5, 1, 3, 3)).shape == (5, 10)          # the reduction's skips reduce a 3 x 3 map
    assert thin.classifier.in_features == 8                   # 4 nodes x 2 channels after the reduction


def test_factorized_reduce_pads_odd_maps_as_xautodl_and_leaves_even_ones_alone():
    from lswag.spaces.darts import FactorizedReduce
    torch.manual_seed(0)
    reduce = FactorizedReduce(2, 4).eval()
    for size in (3, 4):
        x = randn(1, 2, size, size, seed=size)
        r = F.relu(x)
        shifted = F.pad(r, (0, 1, 0, 1))[:, :, 1:, 1:] if size % 2 else r[:, :, 1:, 1:]
        expected = reduce.bn(torch.cat([F.conv2d(r, reduce.conv_1.weight, stride=2),
                                        F.conv2d(shifted, reduce.conv_2.weight, stride=2)], 1))
        assert torch.equal(reduce(x), expected)


def test_te_linear_regions_thin_fails_without_a_thin_copy_and_rejects_bad_options():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    x = randn(4, 3, 6, 6, seed=22)
    net(x)
    assert "thin copy for NB201 and DARTS" in failure(net, make_batch(x), "te_linear_regions", network="thin")
    with pytest.raises(LswagError, match="self, thin"):
        value(net, make_batch(x), "te_linear_regions", network="fat")


# --------------------------------------------------------------------------- T-CET

def hand_tcet(net, x, layers) -> float:
    """Σ lnwot_l · SNR_l: kernels from the test's own hooks, SynFlow saliency on a BN-free |w| double copy."""
    outputs = {}

    def keep(name):
        def hook(module, inputs, output):
            outputs.setdefault(name, (output > 0).double().reshape(output.shape[0], -1).numpy())
        return hook

    handles = [dict(net.named_modules())[n].register_forward_hook(keep(n)) for n in layers]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    syn = copy.deepcopy(net).double()
    with torch.no_grad():
        for p in syn.parameters():
            p.abs_()
    syn(torch.ones((1, *x.shape[1:]), dtype=torch.float64)).sum().backward()
    total = 0.0
    for n in layers:
        c = outputs[n]
        sign, logdet = np.linalg.slogdet(c @ c.T + (1 - c) @ (1 - c).T)
        lnwot = logdet if sign > 0 else 0.0
        w = dict(syn.named_modules())[n].weight
        s = (w * w.grad).abs().detach().numpy().ravel()
        total += lnwot * (s.sum() / s.std(ddof=1))
    return total


def test_tcet_against_hand_computation():
    torch.manual_seed(16)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4))
    x = randn(6, 2, 4, 4, seed=20)
    assert value(net, make_batch(x), "tcet") == pytest.approx(hand_tcet(net, x, ["0", "3"]), rel=1e-9)


def test_tcet_singular_layer_contributes_zero_and_all_singular_fails():
    torch.manual_seed(17)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        net[2].bias.fill_(100.0)                                       # output always > 0: K singular
    x = randn(6, 3, seed=21)
    got = value(net, make_batch(x), "tcet")
    assert got == pytest.approx(hand_tcet(net, x, ["0", "2"]), rel=1e-9)
    assert got == pytest.approx(hand_tcet(net, x, ["0"]), rel=1e-9) and got != 0
    twins = torch.cat([x[:3], x[:3]])                                   # every layer: repeated rows
    assert "singular" in failure(net, make_batch(twins), "tcet")


# --------------------------------------------------------------------------- NaN input

@pytest.mark.parametrize("name", ["az_expressivity", "az_trainability", "te_ntk_cond", "te_linear_regions", "tcet",
                                  "reg_swap"])
def test_nan_input_is_a_failure_with_a_reason(name):
    torch.manual_seed(18)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x = randn(6, 4, seed=22)
    x[2, 1] = float("nan")
    reason = failure(net, make_batch(x), name)
    assert "non-finite" in reason


# --------------------------------------------------------------------------- ensembles

FAIL = Failure("broken")

TABLE = {
    "a": {"x": 3.0, "y": 10.0, "z": FAIL},
    "b": {"x": 1.0, "y": 10.0, "z": 5.0},
    "c": {"x": 3.0, "y": float("nan"), "z": 7.0},
    "d": {"x": 2.0, "y": 20.0, "z": FAIL},
}
# x: b 1, d 2, a/c tie 3.5.  y: c fails -> 1, a/b tie 2.5, d 4.  z: a/d fail -> 1.5 each, b 3, c 4.
RANKS = {"a": (3.5, 2.5, 1.5), "b": (1, 2.5, 3), "c": (3.5, 1, 4), "d": (2, 4, 1.5)}


def test_ranks_ties_and_failures_last():
    np.testing.assert_array_equal(ensembles.ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1, 3.5, 2])
    np.testing.assert_array_equal(ensembles.ranks([FAIL, 5.0, None, float("inf"), -2.0]), [2, 5, 2, 2, 4])


def test_te_nas_and_rank_average_by_hand():
    assert ensembles.te_nas(TABLE, ("x", "y", "z")) == {k: sum(r) for k, r in RANKS.items()}
    assert ensembles.rank_average(TABLE, ("x", "z")) == {k: (r[0] + r[2]) / 2 for k, r in RANKS.items()}
    assert ensembles.combine("te_nas", TABLE, ["x", "y"]) == {k: r[0] + r[1] for k, r in RANKS.items()}


def test_az_nas_by_hand():
    got = ensembles.az_nas(TABLE, ("x", "y", "z"))
    for arch, r in RANKS.items():
        assert got[arch] == pytest.approx(sum(math.log(v / 4) for v in r), rel=1e-12)
    best = {"p": {"u": 2.0}, "q": {"u": 1.0}}
    assert ensembles.az_nas(best, ["u"]) == {"p": 0.0, "q": pytest.approx(math.log(0.5))}


def test_ensemble_errors():
    with pytest.raises(LswagError, match="az_complexity"):
        ensembles.az_nas({"a": {c: 1.0 for c in ensembles.AZ_NAS[:3]}})
    with pytest.raises(LswagError, match="unknown ensemble"):
        ensembles.combine("libra", TABLE)
    with pytest.raises(LswagError, match="components"):
        ensembles.combine("rank_average", TABLE)
    with pytest.raises(LswagError):
        ensembles.te_nas({}, ("x",))


def test_component_table_scores_a_pool_and_feeds_the_ensembles():
    batch = make_batch(randn(8, 2, 6, 6, seed=23))
    pool = {}
    for seed in range(3):
        torch.manual_seed(seed)
        pool[f"net{seed}"] = nn.Sequential(nn.Conv2d(2, 3 + seed, 3, padding=1), nn.ReLU(),
                                           nn.Conv2d(3 + seed, 4, 3, padding=1), nn.ReLU(),
                                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    table = ensembles.component_table(pool, batch, ensembles.AZ_NAS + ensembles.TE_NAS)
    assert set(table) == set(pool) and all(set(row) == set(ensembles.AZ_NAS + ensembles.TE_NAS)
                                           for row in table.values())
    az = ensembles.combine("az_nas", table)
    te = ensembles.combine("te_nas", table)
    assert set(az) == set(te) == set(pool)
    assert all(v <= 0 for v in az.values()) and all(2 <= v <= 6 for v in te.values())


def test_pool_ensembles_combines_exactly_those_whose_components_are_all_there():
    from lswag.proxies import Failure
    archs = ["a", "b", "c"]
    values = {c: {a: float(i + j) for j, a in enumerate(archs)} for i, c in enumerate(ensembles.AZ_NAS)}
    values["az_trainability"]["b"] = Failure("no gradient")
    values["te_ntk_cond"] = {"a": 1.0, "b": 2.0, "c": 3.0}          # TE-NAS lacks te_linear_regions
    pooled = ensembles.pool_ensembles(values)
    assert set(pooled) == {"az_nas"}
    table = {a: {c: values[c][a] for c in ensembles.AZ_NAS} for a in archs}
    assert pooled["az_nas"] == ensembles.combine("az_nas", table)
    # the failed component ranks b last on that term, so b cannot beat c, which is best on every term
    assert pooled["az_nas"]["c"] > pooled["az_nas"]["b"]
