"""Tests of the proxies against independent computations written here: gradients taken by hand
with torch.autograd on a deep copy, activation patterns counted with Python sets over the
test's own forward hooks, closed forms for synflow and the size proxies.
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
from lswag.data import Batch, load_batch
from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.proxies.lswag import trainability_profile

SITE_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU)
GRADIENT_PROXIES = ("grad_norm", "snip", "zico", "l_swag")


# --------------------------------------------------------------------------- independent helpers

def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def make_batch(x, num_classes=4, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed + 1000)
    return Batch(x, torch.randint(0, num_classes, (x.shape[0],), generator=g), num_classes, "test")


def layer_names(model):
    """Weight-carrying modules; the test nets run them in definition order."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def hand_gradients(model, x, y) -> dict[str, np.ndarray]:
    """dL/dW of every Conv/Linear weight, cross-entropy on (x, y), train mode, on a deep copy."""
    net = copy.deepcopy(model).train()
    modules = dict(net.named_modules())
    loss = F.cross_entropy(net(x), y)
    weights = [modules[n].weight for n in layer_names(net)]
    grads = torch.autograd.grad(loss, weights)
    return {n: g.double().numpy() for n, g in zip(layer_names(net), grads)}


def hand_draws(model, batch, m=2) -> list[dict[str, np.ndarray]]:
    size = len(batch)
    bounds = [size * i // m for i in range(m + 1)] if size % m == 0 else None
    assert bounds is not None, "test batches split evenly"
    return [hand_gradients(model, batch.x[a:b], batch.y[a:b]) for a, b in zip(bounds, bounds[1:])]


def psi(g1, g2, numerator=None):
    """ln Σ_{σ>0} n/σ with σ = |g1 - g2| / 2 (the ddof-0 std of two draws)."""
    sigma = np.abs(g1 - g2).ravel() / 2
    keep = sigma > 0
    top = np.ones_like(sigma) if numerator is None else numerator.ravel()
    total = float(np.sum(top[keep] / sigma[keep]))
    return math.log(total) if total > 0 else None


def outputs_in_order(model, x, types):
    seen = []
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: seen.append((n, o.detach().clone())))
               for n, m in model.named_modules() if isinstance(m, types)]
    try:
        with torch.no_grad():   # the test nets have no BN or dropout: train/eval give the same output
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def binary_codes(out) -> np.ndarray:
    """(B, units) 0/1 codes of a map, units enumerated with plain index loops."""
    a = out.numpy()
    return np.array([[1 if a[(b,) + u] > 0 else 0 for u in np.ndindex(a.shape[1:])] for b in range(a.shape[0])])


def distinct_columns(codes: np.ndarray) -> int:
    return len({tuple(int(codes[b, u]) for b in range(codes.shape[0])) for u in range(codes.shape[1])})


def two_layer_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))


def conv_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4))


def value(model, batch, name, **kwargs):
    return lswag.score(model, batch, [name], **kwargs)[name]


# --------------------------------------------------------------------------- zico and Ψ

@pytest.mark.parametrize("build,shape", [(two_layer_net, (8, 6)), (conv_net, (8, 2, 4, 4))])
def test_zico_closed_form(build, shape):
    model = build(seed=1)
    batch = make_batch(randn(*shape, seed=1))
    g1, g2 = hand_draws(model, batch)
    terms = [psi(g1[n], g2[n], numerator=(np.abs(g1[n]) + np.abs(g2[n])) / 2) for n in layer_names(model)]
    assert all(t is not None for t in terms)
    assert value(model, batch, "zico") == pytest.approx(sum(terms), rel=1e-9)


def test_zico_skips_layers_whose_gradient_never_varies():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[2].weight.zero_()                 # no signal flows back to W1: its gradient is 0 on both
                                                # halves, while W2's (dL/dout · hiddenᵀ) varies
    batch = make_batch(randn(8, 6, seed=2))
    g1, g2 = hand_draws(model, batch)
    assert not np.any(g1["0"]) and not np.any(g2["0"])
    expected = psi(g1["2"], g2["2"], numerator=(np.abs(g1["2"]) + np.abs(g2["2"])) / 2)
    assert value(model, batch, "zico") == pytest.approx(expected, rel=1e-9)


def test_zico_needs_two_draws():
    model = two_layer_net()
    batch = make_batch(randn(8, 6))
    result = value(model, batch, "zico", gradient_draws=1)
    assert isinstance(result, Failure) and "2 gradient draws" in result.reason
    assert isinstance(value(model, batch, "l_swag", gradient_draws=1), Failure)


# --------------------------------------------------------------------------- l_swag

#: what l_swag needs under any of its options (Λ from the draws and from a whole-batch pass, own outputs)
ALL_L_SWAG_NEEDS = {"draws", "draw_patterns", "draw_layer_outputs", "patterns", "layer_outputs"}


def test_l_swag_patterns_of_the_draws_use_each_chunks_batchnorm():
    """With BatchNorm, Λ over the draws' forwards (each half normalised by its own statistics) differs
    from Λ over one whole-batch forward; each must equal its hand computation."""
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(6, 300), nn.BatchNorm1d(300), nn.ReLU(), nn.Linear(300, 4))
    batch = make_batch(randn(6, 6, seed=11) * 3 + 1)     # 2^6 patterns at most: 300 units must collide
    g1, g2 = hand_draws(model, batch)
    psis = {n: psi(g1[n], g2[n]) for n in ("0", "3")}
    reference = copy.deepcopy(model).train()
    with torch.no_grad():
        whole = reference[:3](batch.x) > 0
        halves = torch.cat([reference[:3](chunk.x) > 0 for chunk in batch.split(2)])
    lam_whole, lam_halves = distinct_columns(whole.numpy()), distinct_columns(halves.numpy())
    assert lam_whole != lam_halves                       # the chunks' own statistics really matter here

    rec = probe.record(model, batch, ALL_L_SWAG_NEEDS)
    assert [s.patterns for s in rec.sites] == [lam_whole]
    assert [s.patterns for s in rec.draw_sites] == [lam_halves]
    total = psis["0"] + psis["3"]                        # both layers pair with the one ReLU
    assert proxies.compute("l_swag", rec, model)[0] == pytest.approx(total * lam_halves, rel=1e-9)
    assert proxies.compute("l_swag", rec, model, patterns="batch")[0] == pytest.approx(total * lam_whole, rel=1e-9)
    # the default needs run only the draws, and give the same value
    assert proxies.get("l_swag").needs == {"draws", "draw_patterns"}
    assert value(model, batch, "l_swag") == pytest.approx(total * lam_halves, rel=1e-9)

def test_l_swag_pairings_and_products_closed_form():
    model = two_layer_net(seed=3)
    batch = make_batch(randn(8, 6, seed=3))
    g1, g2 = hand_draws(model, batch)
    psis = {n: psi(g1[n], g2[n]) for n in ("0", "2")}
    assert all(p is not None for p in psis.values())
    outs = dict(outputs_in_order(model, batch.x, (nn.Linear, nn.ReLU)))
    own = {n: distinct_columns(binary_codes(outs[n])) for n in ("0", "2")}   # the layers' own outputs
    relu = distinct_columns(binary_codes(outs["1"]))
    # the 2nd Linear is fed by the ReLU; the 1st has no feeding site and takes the first one after it
    feeding = {"0": relu, "2": relu}
    assert own != feeding                                      # the two pairings really differ here

    rec = probe.record(model, batch, ALL_L_SWAG_NEEDS)
    assert [(l.name, l.input_site, l.next_site) for l in rec.layers] == [("0", None, 0), ("2", 0, None)]

    def compute(**options):
        # without BatchNorm the draws' chunks binarise exactly as the whole batch does
        results = [proxies.compute("l_swag", rec, model, patterns=patterns, **options) for patterns in ("draws", "batch")]
        assert all(seconds >= 0 for _, seconds in results)
        assert results[0][0] == results[1][0]
        return results[0][0]

    cases = {
        ("own", "sum"): sum(psis[n] * own[n] for n in psis),
        ("feeding", "sum"): sum(psis[n] * feeding[n] for n in psis),
        ("own", "log"): sum(psis[n] + math.log(own[n]) for n in psis),
        ("feeding", "log"): sum(psis[n] + math.log(feeding[n]) for n in psis),
    }
    for (pairing, product), expected in cases.items():
        assert compute(pairing=pairing, product=product) == pytest.approx(expected, rel=1e-9), (pairing, product)
    # defaults: feeding, sum, every layer; and the same through lswag.score
    assert compute() == pytest.approx(cases[("feeding", "sum")], rel=1e-9)
    assert value(model, batch, "l_swag") == pytest.approx(cases[("feeding", "sum")], rel=1e-9)
    assert value(model, batch, "l_swag", options={"l_swag": {"window": "1-10", "pairing": "own"}}) == \
        pytest.approx(cases[("own", "sum")], rel=1e-9)


def deep_net(seed=4, depth=12):
    torch.manual_seed(seed)
    modules = []
    for _ in range(depth - 1):
        modules += [nn.Linear(5, 5), nn.LeakyReLU(0.1)]
    return nn.Sequential(*modules, nn.Linear(5, 3))


def test_l_swag_window_and_bins_on_a_deep_net():
    model = deep_net()
    batch = make_batch(randn(8, 5, seed=4), num_classes=3)
    names = layer_names(model)
    assert len(names) == 12
    p_layer = {n: -(-10 * (i + 1) // 12) for i, n in enumerate(names)}
    assert list(p_layer.values()) == [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 10]
    g1, g2 = hand_draws(model, batch)
    psis = {n: psi(g1[n], g2[n]) for n in names}
    outs = outputs_in_order(model, batch.x, (nn.Linear, nn.LeakyReLU))
    site_lambda = [distinct_columns(binary_codes(o)) for n, o in outs if isinstance(model[int(n)], nn.LeakyReLU)]
    own = {n: distinct_columns(binary_codes(o)) for n, o in outs if n in names}
    # layer i (0-based) is fed by site i-1; the first layer takes site 0, the one after it
    feeding = {n: site_lambda[max(i - 1, 0)] for i, n in enumerate(names)}

    rec = probe.record(model, batch, ALL_L_SWAG_NEEDS)
    assert [l.percentile for l in rec.layers] == list(p_layer.values())
    assert [s.patterns for s in rec.sites] == site_lambda
    assert [s.patterns for s in rec.draw_sites] == site_lambda
    assert [s.percentile for s in rec.sites] == [-(-10 * i // 11) for i in range(1, 12)]

    def expected(window, lam, log=False):
        keep = [n for n in names if window[0] <= p_layer[n] <= window[1] and psis[n] is not None]
        assert keep
        return sum(psis[n] + math.log(lam[n]) if log else psis[n] * lam[n] for n in keep)

    for window in ((1, 10), (3, 5), (10, 10), (6, 9)):
        for text in (window, f"{window[0]}-{window[1]}"):
            got = proxies.compute("l_swag", rec, model, window=text)[0]
            assert got == pytest.approx(expected(window, feeding), rel=1e-9)
        got = proxies.compute("l_swag", rec, model, window=window, pairing="own", product="log")[0]
        assert got == pytest.approx(expected(window, own, log=True), rel=1e-9)
    assert proxies.compute("l_swag", rec, model, window=(3, 5))[0] != \
        pytest.approx(proxies.compute("l_swag", rec, model)[0], rel=1e-6)

    # bins: Σ over percentile bins in the window of (Σ Ψ of its layers) times (Σ Λ of its sites)
    site_bins = [-(-10 * i // 11) for i in range(1, 12)]
    for window in ((1, 10), (4, 7)):
        total = 0.0
        for b in range(window[0], window[1] + 1):
            ps = [psis[n] for n in names if p_layer[n] == b and psis[n] is not None]
            ls = [lam for lam, sb in zip(site_lambda, site_bins) if sb == b]
            if ps and ls:
                total += sum(ps) * sum(ls)
        got = proxies.compute("l_swag", rec, model, window=window, pairing="bins")[0]
        assert got == pytest.approx(total, rel=1e-9)

    # the per-percentile gradient profile (paper Fig. 2b): mean Ψ of the layers in each percentile
    profile = trainability_profile(rec)
    for b in range(1, 11):
        ps = [psis[n] for n in names if p_layer[n] == b and psis[n] is not None]
        assert profile[b] == pytest.approx(sum(ps) / len(ps), rel=1e-12)



def test_l_swag_draws_only_its_window_and_zico_beside_it_still_sees_every_layer():
    model = deep_net()
    batch = make_batch(randn(8, 5, seed=4), num_classes=3)
    full = probe.record(model, batch, ALL_L_SWAG_NEEDS)
    part = probe.record(model, batch, ALL_L_SWAG_NEEDS, draw_window=(4, 7))
    assert full.draw_window is None and part.draw_window == (4, 7)
    for whole, windowed in zip(full.layers, part.layers):
        if 4 <= whole.percentile <= 7:       # the same backward, with less of it run: the same values
            assert torch.equal(whole.gradient_draws, windowed.gradient_draws)
        else:
            assert windowed.gradient_draws is None
    for window in ((4, 7), (5, 6)):
        assert proxies.compute("l_swag", part, model, window=window)[0] == \
            proxies.compute("l_swag", full, model, window=window)[0]
    assert "percentiles 4-7 only; depth percentiles 3-7 needed" in str(
        proxies.compute("l_swag", part, model, window=(3, 7))[0])
    assert "every layer needed" in str(proxies.compute("zico", part, model)[0])

    # evaluate records the hull of the windows its proxies read: zico's is every layer
    together = lswag.score(model, batch, ["l_swag", "zico"], options={"l_swag": {"window": (4, 7)}})
    assert together["zico"] == value(model, batch, "zico") == proxies.compute("zico", full, model)[0]
    assert together["l_swag"] == proxies.compute("l_swag", full, model, window=(4, 7))[0]

    # three layers sit at percentiles 4, 7 and 10: none in [5, 6]
    three = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 3))
    failure = value(three, batch, "l_swag", options={"l_swag": {"window": (5, 6)}})
    assert isinstance(failure, Failure) and "no layer lies in the depth percentiles 5-6" in failure.reason

# --------------------------------------------------------------------------- activation proxies

def relu_conv_net(seed=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(48, 6), nn.ReLU(), nn.Linear(6, 4))


def gelu_net(seed=6):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 24), nn.GELU(), nn.Linear(24, 24), nn.GELU(), nn.Linear(24, 4))


@pytest.mark.parametrize("build,shape", [(relu_conv_net, (6, 2, 4, 4)), (gelu_net, (6, 5))])
def test_nwot_against_hand_built_kernel(build, shape):
    model = build()
    batch = make_batch(randn(*shape, seed=7))
    codes = [binary_codes(o) for _, o in outputs_in_order(model, batch.x, SITE_TYPES)]
    assert len(codes) in (2, 3)
    size = shape[0]
    kernel = np.zeros((size, size))
    for c in codes:
        for i in range(size):
            for j in range(size):
                kernel[i, j] += int(np.sum(c[i] == c[j]))
    sign, logdet = np.linalg.slogdet(kernel)
    assert sign != 0
    rec = probe.record(model, batch, {"kernel"})
    np.testing.assert_array_equal(rec.kernel, kernel)
    assert value(model, batch, "nwot") == pytest.approx(logdet, rel=1e-12)


def test_nwot_singular_kernel_is_a_failure():
    model = two_layer_net()
    x = randn(6, 6)
    x[3] = x[2]                                       # two identical samples: identical codes
    result = value(model, make_batch(x), "nwot")
    assert isinstance(result, Failure) and "singular" in result.reason


@pytest.mark.parametrize("build,shape", [(relu_conv_net, (7, 2, 4, 4)), (gelu_net, (3, 5)), (gelu_net, (70, 5))])
def test_swap_is_network_level_distinct_patterns(build, shape):
    model = build()
    batch = make_batch(randn(*shape, seed=8))
    codes = np.concatenate([binary_codes(o) for _, o in outputs_in_order(model, batch.x, SITE_TYPES)], axis=1)
    expected = distinct_columns(codes)
    per_site_sum = sum(s.patterns for s in probe.record(model, batch, {"patterns"}).sites)
    assert value(model, batch, "swap") == expected
    if shape[0] == 3:
        assert expected <= 8 < per_site_sum         # counted once over all sites, not summed per site
    layer_level = sum(distinct_columns(binary_codes(o)) for _, o in outputs_in_order(model, batch.x, SITE_TYPES))
    assert lswag.score(model, batch, ["swap"], options={"swap": {"level": "layers"}})["swap"] == layer_level


def quadrant_net():
    """2 inputs -> 4 ReLU units of weights (±1, ±1): on (1, 0) and (0, 1) the units show all 4 patterns."""
    model = nn.Sequential(nn.Linear(2, 4, bias=False), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]))
    return model


def warnings_of(batch, names, **kwargs):
    return {r.name: r.warning for r in lswag.evaluate(quadrant_net(), batch, names, **kwargs)}


def test_declared_ceilings_warn_exactly_when_a_count_reaches_them():
    names = ["swap", "te_linear_regions", "reg_swap"]
    two = Batch(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), 3, "test")
    pinned = warnings_of(two, names)
    assert pinned["swap"].startswith("swap = 4 is pinned at its ceiling (2^2,")   # 4 units, 2^2 patterns
    assert pinned["te_linear_regions"].startswith("te_linear_regions = 2 is pinned at its ceiling (the batch size")
    assert pinned["reg_swap"].startswith("reg_swap = ") and "swap's ceiling, 2^2" in pinned["reg_swap"]
    layers = warnings_of(two, ["swap"], options={"swap": {"level": "layers"}})["swap"]
    assert layers.startswith("swap = 4 is pinned at its ceiling (every site")
    # three samples could show 2^3 patterns, the 4 units only 4
    three = Batch(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1, 2]), 3, "test")
    assert warnings_of(three, ["swap"])["swap"].startswith("swap = 4 is pinned at its ceiling (its 4 units")
    # two equal samples: 2 patterns of 4, 1 region of 2
    same = Batch(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1]), 3, "test")
    assert warnings_of(same, names) == dict.fromkeys(names)


def test_epe_nas_without_a_repeated_class_is_pinned_at_one_value_and_says_so():
    # one sample per class: each class scores ln(1 + 1e-5), whatever the network
    x = randn(4, 6, seed=3)
    results = [lswag.evaluate(two_layer_net(seed), Batch(x, torch.arange(4), 4, "test"), ["epe_nas"])[0]
               for seed in (0, 1)]
    assert results[0].value == pytest.approx(4 * math.log(1 + 1e-5), rel=1e-12) == results[1].value
    assert all("no class of the batch has two samples" in r.warning for r in results)
    repeated = Batch(x, torch.tensor([0, 1, 2, 0]), 4, "test")
    assert lswag.evaluate(two_layer_net(), repeated, ["epe_nas"])[0].warning is None


# --------------------------------------------------------------------------- gradient baselines

def bn_conv_net(seed=9):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(48, 4))


def test_grad_norm_and_snip_against_hand_gradients():
    model = bn_conv_net()
    with torch.no_grad():                 # running statistics that eval mode would use instead of the batch's
        model[1].running_mean.fill_(1.0)
        model[1].running_var.fill_(9.0)
    model.eval()                          # the probe must still run in train mode (batch statistics)
    batch = make_batch(randn(8, 2, 4, 4, seed=9))
    grads = hand_gradients(model, batch.x, batch.y)
    modules = dict(model.named_modules())
    weights = {n: modules[n].weight.detach().double().numpy() for n in grads}
    expected_norm = sum(math.sqrt(float(np.sum(g * g))) for g in grads.values())
    expected_snip = sum(float(np.sum(np.abs(grads[n] * weights[n]))) for n in grads)
    got = lswag.score(model, batch, ["grad_norm", "snip"])
    assert got["grad_norm"] == pytest.approx(expected_norm, rel=1e-5)
    assert got["snip"] == pytest.approx(expected_snip, rel=1e-5)


# --------------------------------------------------------------------------- fisher reductions

class TokenMLP(nn.Module):
    """Linear -> GELU -> Linear on (B, T, C) tokens, the mean over tokens, a Linear head."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(4, 6), nn.Linear(6, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.fc2(F.gelu(self.fc1(x))).mean(1))


def outputs_and_their_gradients(model, batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each child's output A and ∂L/∂A (cross-entropy, train mode), by this test's hooks on a copy."""
    net = copy.deepcopy(model).train()
    kept = {}

    def keep(name):
        def hook(module, inputs, output):
            output.retain_grad()
            kept[name] = output
        return hook

    for name, module in net.named_children():
        module.register_forward_hook(keep(name))
    F.cross_entropy(net(batch.x), batch.y).backward()
    return {name: (a.detach().double().numpy(), a.grad.double().numpy()) for name, a in kept.items()}


def fisher_scores(model, batch, **options) -> float:
    return lswag.score(model, batch, ["fisher"], options={"fisher": options})["fisher"]


def test_fisher_suite_zero_reduction_sums_the_channels_of_each_token():
    torch.manual_seed(3)
    model = TokenMLP()
    batch = make_batch(randn(5, 7, 4, seed=3), num_classes=3)
    suite, channels = {}, {}
    for name, (a, g) in outputs_and_their_gradients(model, batch).items():
        ag = a * g
        if ag.ndim == 3:     # (B, T, C): NASLib sums each token's channels, lswag each channel's tokens
            suite[name] = sum(0.5 * np.mean(ag[:, t, :].sum(1) ** 2) for t in range(ag.shape[1]))
            channels[name] = sum(0.5 * np.mean(ag[:, :, k].sum(1) ** 2) for k in range(ag.shape[2]))
        else:                # (B, C): one term per channel either way
            suite[name] = channels[name] = sum(0.5 * np.mean(ag[:, k] ** 2) for k in range(ag.shape[1]))
    rec = probe.record(model, batch, {"fisher", "fisher_suite_zero"})
    assert set(rec.seconds) == {"gradient"}                 # both from the one whole-batch gradient pass
    for layer in rec.layers:
        assert float(layer.fisher_suite_zero) == pytest.approx(suite[layer.name], rel=1e-5)
        assert float(layer.fisher.sum()) == pytest.approx(channels[layer.name], rel=1e-5)
    fan_in = {"fc1": 4, "fc2": 6, "head": 4}               # NASLib broadcasts each term over weight.shape[1:]
    got = fisher_scores(model, batch, reduction="suite_zero")
    assert got == pytest.approx(sum(fan_in[n] * suite[n] for n in suite), rel=1e-5)
    assert fisher_scores(model, batch, reduction="suite_zero", weighting="channel") == pytest.approx(
        sum(suite.values()), rel=1e-5)
    assert fisher_scores(model, batch) == pytest.approx(sum(fan_in[n] * channels[n] for n in channels), rel=1e-5)
    assert got != pytest.approx(fisher_scores(model, batch), rel=1e-3)     # the reductions differ on tokens
    # the default records no per-token terms: they cost nothing unless asked for
    assert proxies.get("fisher").needs == {"fisher"}
    assert proxies.get("fisher").needs_for({"reduction": "suite_zero"}) == {"fisher_suite_zero"}
    assert all(layer.fisher_suite_zero is None for layer in probe.record(model, batch, {"fisher"}).layers)


def test_fisher_reductions_agree_on_conv_and_flat_linear_outputs():
    # axis 1 is the channel of a (B, C, H, W) conv output and of a (B, C) Linear output: NASLib's
    # Σ over the axes after the second is lswag's Σ over positions
    model = bn_conv_net()
    batch = make_batch(randn(6, 2, 4, 4, seed=4))
    rec = probe.record(model, batch, {"fisher", "fisher_suite_zero"})
    assert [layer.kind for layer in rec.layers] == ["Conv2d", "Linear"]
    for layer in rec.layers:
        assert float(layer.fisher_suite_zero) == pytest.approx(float(layer.fisher.sum()), rel=1e-12)
    channels = fisher_scores(model, batch)
    assert channels > 0 and fisher_scores(model, batch, reduction="suite_zero") == pytest.approx(channels, rel=1e-12)
    with pytest.raises(LswagError, match="suite_zero"):
        fisher_scores(model, batch, reduction="tokens")


# --------------------------------------------------------------------------- synflow

def test_synflow_closed_form():
    torch.manual_seed(10)
    model = nn.Sequential(nn.Linear(5, 7, bias=False), nn.ReLU(), nn.Linear(7, 3, bias=False))
    batch = make_batch(randn(4, 5))
    w1 = np.abs(model[0].weight.detach().double().numpy())
    w2 = np.abs(model[2].weight.detach().double().numpy())
    # R = 1ᵀ|W2||W1|1; ∂R/∂W1[j,k] = Σ_i |W2|[i,j]; ∂R/∂W2[i,j] = (|W1| 1)_j
    d_w1 = np.repeat(w2.sum(0)[:, None], 5, axis=1)
    d_w2 = np.repeat(w1.sum(1)[None, :], 3, axis=0)
    expected = math.log(np.sum(np.abs(w1 * d_w1)) + np.sum(np.abs(w2 * d_w2)))
    assert value(model, batch, "synflow") == pytest.approx(expected, rel=1e-12)
    assert model[0].weight.dtype == torch.float32 and (model[0].weight < 0).any()   # user's net untouched


def test_synflow_removes_batchnorm():
    torch.manual_seed(11)
    with_bn = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))
    with torch.no_grad():                     # a BN that would change the result if it were kept
        with_bn[1].weight.fill_(3.0)
        with_bn[1].bias.fill_(-2.0)
        with_bn[1].running_var.fill_(4.0)
        with_bn[1].running_mean.fill_(0.5)
    without = nn.Sequential(copy.deepcopy(with_bn[0]), nn.ReLU(), copy.deepcopy(with_bn[3]))
    batch = make_batch(randn(4, 5))
    a, b = value(with_bn, batch, "synflow"), value(without, batch, "synflow")
    assert isinstance(a, float) and a == pytest.approx(b, rel=1e-12)
    # a kept (eval-mode) BN would scale the hidden layer by 3/2 and shift it: a different value
    kept = copy.deepcopy(with_bn).double().eval()
    for p in kept.parameters():
        p.data.abs_()
    out = kept(torch.ones(1, 5, dtype=torch.float64)).sum()
    ws = [kept[0].weight, kept[3].weight]
    total = sum(float((w.detach() * g).abs().sum()) for w, g in zip(ws, torch.autograd.grad(out, ws)))
    assert math.log(total) != pytest.approx(a, rel=1e-6)


def test_synflow_fails_without_an_input_output_path():
    space = lswag.spaces.get("nb201")
    cell = space.parse("1651")
    assert set(cell) == {"none"}
    model = space.build(cell, C=4, N=1, seed=0)
    result = value(model, make_batch(randn(2, 3, 8, 8), num_classes=10), "synflow")
    assert isinstance(result, Failure) and "no input-output path" in result.reason


# --------------------------------------------------------------------------- size

def test_params_and_flops_hand_counted():
    torch.manual_seed(12)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2),
                          nn.Flatten(), nn.Linear(18, 5))
    batch = make_batch(randn(3, 3, 8, 8), num_classes=5)
    # MACs: conv C_out·H_out·W_out·C_in·k·k, linear in·out
    macs = 4 * 8 * 8 * 3 * 3 * 3 + 2 * 3 * 3 * 4 * 3 * 3 + 18 * 5
    count = (4 * 3 * 9 + 4) + (2 * 4 * 9 + 2) + (18 * 5 + 5)
    got = lswag.score(model, batch, ["params", "flops"])
    assert got["flops"] == pytest.approx(macs / 1e6, rel=1e-12)
    assert got["params"] == pytest.approx(count / 1e6, rel=1e-12)


class _TokenViT(nn.Module):
    """Patch embedding, PyTorch's own Transformer encoder layers, mean pooling: a user's ViT."""

    def __init__(self, dim, ratios, heads, patch=4, size=16, classes=5):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*[nn.TransformerEncoderLayer(dim, h, r * dim, activation=nn.GELU(), dropout=0.0,
                                                                 batch_first=True, norm_first=True)
                                      for r, h in zip(ratios, heads)])
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.blocks(self.embed(x).flatten(2).transpose(1, 2)).mean(1))


def test_flops_count_the_attention_of_pytorch_transformer_layers():
    """PyTorch's fused encoder fast path and its CPU attention kernel are invisible to the FLOP counter:
    flops once counted this ViT as its patch embedding alone."""
    dim, ratios, tokens = 8, (2, 3), (16 // 4) ** 2
    model = _TokenViT(dim, ratios, (2, 4))
    batch = make_batch(randn(3, 3, 16, 16), num_classes=5)
    embed = tokens * 3 * 4 * 4 * dim
    # per block: q, k, v and output projections, the two attention products, the MLP
    blocks = sum(4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * r * dim for r in ratios)
    assert lswag.score(model, batch, ["flops"])["flops"] == pytest.approx((embed + blocks + dim * 5) / 1e6, rel=1e-12)
    assert torch.backends.mha.get_fastpath_enabled()     # left as it was


def test_nb201_cell_11_params_and_flops():
    space = lswag.spaces.get("nb201")
    model = space.build(space.parse("11"), seed=0)
    batch = load_batch("gaussian", batch_size=2, image_size=32)
    got = lswag.score(model, batch, ["params", "flops"])
    assert got["flops"] == pytest.approx(113.95137, abs=1e-4)
    assert got["params"] == pytest.approx(0.802426, abs=1e-9)


# --------------------------------------------------------------------------- failures

def test_no_activation_module_fails_activation_proxies():
    torch.manual_seed(13)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    got = lswag.score(model, make_batch(randn(6, 5), num_classes=3), ["nwot", "swap", "grad_norm"])
    for name in ("nwot", "swap"):
        assert isinstance(got[name], Failure) and "activation" in got[name].reason
    assert isinstance(got["grad_norm"], float)


def test_no_layer_fails_gradient_proxies():
    model = nn.Sequential(nn.BatchNorm1d(3), nn.ReLU())          # parameters, but no Conv/Linear
    got = lswag.score(model, make_batch(randn(4, 3), num_classes=3), GRADIENT_PROXIES)
    for name in GRADIENT_PROXIES:
        assert isinstance(got[name], Failure) and "Conv or Linear" in got[name].reason


def test_parameter_free_network_fails_gradient_proxies():
    got = lswag.score(nn.Sequential(nn.ReLU()), make_batch(randn(4, 3), num_classes=3), GRADIENT_PROXIES)
    for name in GRADIENT_PROXIES:
        assert isinstance(got[name], Failure) and "Conv or Linear" in got[name].reason


def nan_batch():
    x = randn(8, 6)
    x[:] = float("nan")
    return make_batch(x)


def test_nan_input_fails_every_gradient_proxy():
    got = lswag.score(two_layer_net(), nan_batch(), GRADIENT_PROXIES)
    for name in GRADIENT_PROXIES:
        assert isinstance(got[name], Failure), name
    assert "non-finite" in got["grad_norm"].reason and "non-finite" in got["snip"].reason


def test_nan_gradient_failure_reason_says_non_finite():
    got = lswag.score(two_layer_net(), nan_batch(), ["zico", "l_swag"])
    for name in ("zico", "l_swag"):
        assert any(w in got[name].reason.lower() for w in ("non-finite", "nan")), got[name].reason


def test_nan_activations_fail_swap():
    assert isinstance(value(two_layer_net(), nan_batch(), "swap"), Failure)


# --------------------------------------------------------------------------- determinism

def tiny_nb201(seed=0):
    space = lswag.spaces.get("nb201")
    return space.build("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|"
                       "skip_connect~2|", num_classes=10, seed=seed, C=4, N=1)


def test_scores_are_deterministic():
    batch = load_batch("gaussian", batch_size=8, image_size=8, seed=0)
    names = proxies.names()
    assert {"grad_norm", "snip", "zico", "nwot", "swap", "l_swag", "synflow", "params", "flops"} <= set(names)
    model = tiny_nb201()
    first = lswag.evaluate(model, batch, names)
    second = lswag.score(model, batch, names)
    rebuilt = lswag.score(tiny_nb201(), batch, names)
    values = {r.name: r.value for r in first}
    assert values == second == rebuilt
    assert [r.name for r in first] == names
    assert all(r.seconds >= 0 for r in first)
    assert all(isinstance(v, float) and math.isfinite(v) for v in values.values()), values
    other = lswag.score(tiny_nb201(seed=1), batch, ["grad_norm", "l_swag"])
    assert other["grad_norm"] != values["grad_norm"] and other["l_swag"] != values["l_swag"]


# --------------------------------------------------------------------------- options

def _one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_unknown_option_lists_options():
    model, batch = two_layer_net(), make_batch(randn(4, 6))
    with pytest.raises(LswagError) as info:
        lswag.score(model, batch, ["l_swag"], options={"l_swag": {"windw": (1, 10)}})
    text = _one_line(info)
    assert "windw" in text and all(k in text for k in ("window", "pairing", "product"))
    with pytest.raises(LswagError) as info:
        lswag.score(model, batch, ["zico"], options={"zico": {"window": (1, 10)}})
    assert "none" in _one_line(info)
    with pytest.raises(LswagError) as info:
        lswag.score(model, batch, ["zico"], options={"l_swag": {"window": (1, 10)}})
    _one_line(info)


@pytest.mark.parametrize("window", ["0-3", "3-11", "5-3", "3", "a-b", (0, 3), (4, 2)])
def test_bad_window(window):
    with pytest.raises(LswagError) as info:
        lswag.score(two_layer_net(), make_batch(randn(4, 6)), ["l_swag"], options={"l_swag": {"window": window}})
    _one_line(info)


def test_bad_pairing_and_product():
    model, batch = two_layer_net(), make_batch(randn(4, 6))
    with pytest.raises(LswagError) as info:
        lswag.score(model, batch, ["l_swag"], options={"l_swag": {"pairing": "nearest"}})
    text = _one_line(info)
    assert "nearest" in text and all(p in text for p in ("feeding", "own", "bins"))
    with pytest.raises(LswagError) as info:
        lswag.score(model, batch, ["l_swag"], options={"l_swag": {"product": "prod"}})
    assert all(p in _one_line(info) for p in ("sum", "log"))


def test_unknown_proxy_lists_proxies():
    with pytest.raises(LswagError) as info:
        proxies.get("zicoo")
    text = _one_line(info)
    assert all(n in text for n in proxies.names())
