"""Tests of the probe (lswag.probe): pattern packing and counting, sites and layers, and the
promise that the user's model is left exactly as it was.

Every expected value is computed here independently: distinct patterns with Python sets over
plain index loops, activations captured with the test's own forward hooks.
"""
from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import lswag
from lswag import probe
from lswag.data import Batch
from lswag.errors import LswagError
from lswag.probe import NEEDS, count_unique, logits_of, nwot_kernel, pack_bytes, percentile, words_of

ACTIVATIONS = {
    "ReLU": lambda: nn.ReLU(),
    "ReLU6": lambda: nn.ReLU6(),
    "LeakyReLU": lambda: nn.LeakyReLU(0.1),
    "GELU": lambda: nn.GELU(),
    "SiLU": lambda: nn.SiLU(),
}


# --------------------------------------------------------------------------- independent helpers

def brute_patterns(a) -> int:
    """|{(1[a[0, unit] > 0], ..., 1[a[B-1, unit] > 0]) : unit}| with plain loops and a Python set."""
    a = np.asarray(a)
    batch = a.shape[0]
    return len({tuple(bool(a[(b,) + unit] > 0) for b in range(batch)) for unit in np.ndindex(a.shape[1:])})


def brute_sign_patterns(a) -> int:
    """Distinct sample-wise patterns of sign(a) (values -1, 0, 1) over the units."""
    a = np.asarray(a)
    batch = a.shape[0]
    return len({tuple(int(np.sign(a[(b,) + unit])) for b in range(batch)) for unit in np.ndindex(a.shape[1:])})


def captured_outputs(model: nn.Module, x: torch.Tensor, types) -> list[tuple[str, torch.Tensor]]:
    """(name, output) of every module of ``types`` in execution order, from the test's own hooks."""
    seen: list[tuple[str, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: seen.append((n, out.detach().clone())))
               for n, m in model.named_modules() if isinstance(m, types)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def make_batch(x: torch.Tensor, num_classes: int = 3, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(x, torch.randint(0, num_classes, (x.shape[0],), generator=g), num_classes, "test")


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- pack / count

def pack(active):
    return words_of([pack_bytes(active)])


@pytest.mark.parametrize("shape", [(5, 3, 4, 4), (5, 6, 4), (5, 9),          # B = 5
                                   (64, 2, 3, 3), (64, 5, 4), (64, 12),       # B = 64: one full word
                                   (70, 2, 3, 3), (70, 5, 4), (70, 12),       # B = 70: two words
                                   (3, 4, 3, 3), (3, 7, 5), (3, 40)])         # B = 3: 2^B binds
def test_count_unique_matches_python_set(shape):
    a = randn(*shape, seed=sum(shape))
    active = (a > 0).reshape(shape[0], -1)
    codes = pack(active)
    assert codes.shape == (active.shape[1], math.ceil(shape[0] / 64))
    assert count_unique(codes) == brute_patterns(a.numpy())


@pytest.mark.parametrize("batch", [64, 70, 130])
def test_count_unique_sees_every_sample_including_the_last_bits(batch):
    """Units that agree on every sample but one (the last one, the 64th, or one in a later word)."""
    rng = np.random.default_rng(batch)
    base = rng.random((batch, 4)) > 0.5
    columns = [base[:, j].copy() for j in range(4)]
    for row in sorted({batch - 1, 63, min(batch - 1, 64), 0}):
        for j in range(4):
            flipped = base[:, j].copy()
            flipped[row] = not flipped[row]
            columns.append(flipped)
    columns += [c.copy() for c in columns]                       # exact duplicates
    active = np.stack(columns, axis=1)                           # (B, U)
    expected = len({tuple(bool(active[b, u]) for b in range(batch)) for u in range(active.shape[1])})
    assert expected < active.shape[1]                            # duplicates really collapse
    assert count_unique(pack(torch.from_numpy(active))) == expected


def test_count_unique_across_unit_blocks():
    """More units than one packing block (2^16): the blocks are stitched correctly."""
    rng = np.random.default_rng(1)
    active = rng.random((3, (1 << 16) + 300)) > 0.5
    active[:, -5:] = [[True], [False], [True]]
    expected = len(set(map(tuple, active.T.tolist())))
    assert count_unique(pack(torch.from_numpy(active))) == expected
    kernel = nwot_kernel(torch.from_numpy(active)).numpy()
    hand = (active[:, None, :] == active[None, :, :]).sum(-1)
    np.testing.assert_array_equal(kernel, hand)


def test_nwot_kernel_counts_agreeing_units():
    rng = np.random.default_rng(2)
    active = rng.random((7, 33)) > 0.4
    hand = np.array([[sum(active[i, u] == active[j, u] for u in range(33)) for j in range(7)] for i in range(7)])
    np.testing.assert_array_equal(nwot_kernel(torch.from_numpy(active)).numpy(), hand)


# --------------------------------------------------------------------------- sites

def site_net(kind: str, dims: int) -> tuple[nn.Module, torch.Tensor]:
    act = ACTIVATIONS[kind]()
    if dims == 2:
        return nn.Sequential(nn.Linear(5, 6), act, nn.Linear(6, 3)), randn(12, 5, seed=1)
    if dims == 3:   # (B, tokens, features)
        return nn.Sequential(nn.Linear(5, 6), act, nn.Flatten(), nn.Linear(24, 3)), randn(12, 4, 5, seed=2)
    return (nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), act, nn.Flatten(), nn.Linear(48, 3)),
            randn(12, 2, 4, 4, seed=3))


@pytest.mark.parametrize("kind,dims", list(itertools.product(ACTIVATIONS, (2, 3, 4))))
def test_activation_sites_found_and_counted(kind, dims):
    torch.manual_seed(0)
    net, x = site_net(kind, dims)
    # pre-activations from the test's own hooks: out > 0 must equal in > 0 for every activation
    (_, pre), = captured_outputs(net, x, (nn.Linear, nn.Conv2d))[:1]
    (_, post), = captured_outputs(net, x, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU))
    expected = brute_patterns(pre.numpy())
    assert brute_patterns(post.numpy()) == expected
    rec = probe.record(net, make_batch(x), {"patterns"})
    assert len(rec.sites) == 1
    site = rec.sites[0]
    assert (site.name, site.kind, site.units) == ("1", kind, post[0].numel())
    assert site.patterns == expected
    assert site.patterns <= min(site.units, 2 ** len(x))


def test_site_patterns_of_a_small_relu_net_include_multiword_batches():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(32, 3))
    for batch in (64, 70):
        x = randn(batch, 1, 4, 4, seed=batch)
        outputs = captured_outputs(net, x, nn.ReLU)
        rec = probe.record(net, make_batch(x), {"patterns"})
        assert [s.name for s in rec.sites] == ["1", "3"]
        assert [s.patterns for s in rec.sites] == [brute_patterns(o.numpy()) for _, o in outputs]
        assert [s.units for s in rec.sites] == [48, 32]


def test_gelu_sign_patterns_equal_positive_patterns():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 3))
    x = randn(5, 4, seed=5)
    outputs = captured_outputs(net, x, nn.GELU)
    rec = probe.record(net, make_batch(x), {"patterns"})
    expected = [brute_sign_patterns(o.numpy()) for _, o in outputs]
    assert [s.patterns for s in rec.sites] == expected
    assert [s.kind for s in rec.sites] == ["GELU", "GELU"]


@pytest.mark.parametrize("seed", range(4))
def test_patterns_bounded_by_units_and_two_to_the_batch(seed):
    torch.manual_seed(seed)
    width = 4 + 2 * seed
    net = nn.Sequential(nn.Conv2d(2, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 2, 3, padding=1),
                        nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(2 * 16, 3), nn.SiLU(), nn.Linear(3, 3))
    x = randn(3, 2, 4, 4, seed=seed)
    outputs = captured_outputs(net, x, (nn.ReLU, nn.LeakyReLU, nn.SiLU))
    rec = probe.record(net, make_batch(x), {"patterns", "layer_outputs"})
    assert len(rec.sites) == 3
    for site, (_, out) in zip(rec.sites, outputs):
        assert 1 <= site.patterns <= min(site.units, 2 ** 3)
        assert site.patterns == brute_patterns(out.numpy())
    assert rec.sites[0].patterns == 8      # 2^B binds: 16*width units, only 8 possible patterns
    for layer in rec.layers:
        assert 1 <= layer.output_patterns <= 8


# --------------------------------------------------------------------------- layers

class Shuffled(nn.Module):
    """Creates its layers in one order and runs them in another."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.middle = nn.Linear(6, 6)
        self.first = nn.Linear(4, 6)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.head(self.act(self.middle(self.act(self.first(x)))))


def test_layers_in_execution_order_not_named_modules_order():
    torch.manual_seed(0)
    net = Shuffled()
    assert [n for n, m in net.named_modules() if isinstance(m, nn.Linear)] == ["head", "middle", "first"]
    batch = make_batch(randn(6, 4))
    for needs in ({"patterns"}, {"gradient"}, {"draws"}, set(NEEDS)):
        rec = probe.record(net, batch, needs)
        assert [l.name for l in rec.layers] == ["first", "middle", "head"]
        assert [l.kind for l in rec.layers] == ["Linear"] * 3
        assert [l.percentile for l in rec.layers] == [4, 7, 10]
        assert torch.equal(rec.layers[0].weight, net.first.weight)
    # a module used twice yields two sites, in order
    rec = probe.record(net, batch, {"patterns"})
    assert [s.name for s in rec.sites] == ["act", "act"]
    assert [s.percentile for s in rec.sites] == [5, 10]


def test_input_site_and_next_site():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 3))
    rec = probe.record(net, make_batch(randn(6, 4)), {"patterns"})
    assert [(l.name, l.input_site, l.next_site) for l in rec.layers] == [
        ("0", None, 0),        # fed by the input; first site after it: the ReLU
        ("2", 0, 1),           # fed by the ReLU; GELU comes after it
        ("4", 1, None),        # fed by the GELU; nothing after it
    ]
    # Conv -> BN -> ReLU -> Conv: the first conv has no feeding site, the ReLU comes after it
    conv = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1),
                         nn.Flatten(), nn.Linear(32, 3))
    rec = probe.record(conv, make_batch(randn(6, 2, 4, 4)), {"patterns"})
    assert [(l.name, l.input_site, l.next_site) for l in rec.layers] == [
        ("0", None, 0), ("3", 0, None), ("5", None, None)]


def test_percentile_formula():
    for count in range(1, 30):
        for position in range(1, count + 1):
            assert percentile(position, count) == -(-10 * position // count)
    assert [percentile(l, 12) for l in range(1, 13)] == [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 10]
    assert [percentile(l, 3) for l in (1, 2, 3)] == [4, 7, 10]


def test_layer_output_patterns():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 5))
    x = randn(9, 2, 4, 4, seed=9)
    outputs = captured_outputs(net, x, (nn.Conv2d, nn.Linear))
    rec = probe.record(net, make_batch(x), {"layer_outputs"})
    assert [l.output_patterns for l in rec.layers] == [brute_patterns(o.numpy()) for _, o in outputs]
    # not requested: recorded only for the layer no site feeds or follows (l_swag's fallback)
    fallback = [l.output_patterns for l in probe.record(net, make_batch(x), {"patterns"}).layers]
    assert fallback == [None, brute_patterns(outputs[1][1].numpy())]


def test_gradient_and_draws_shapes():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    rec = probe.record(net, make_batch(randn(9, 4)), {"gradient", "draws"}, gradient_draws=3)
    assert rec.num_draws == 3
    assert [tuple(l.gradient_draws.shape) for l in rec.layers] == [(3, 6, 4), (3, 3, 6)]
    assert [tuple(l.gradient.shape) for l in rec.layers] == [(6, 4), (3, 6)]
    assert math.isfinite(rec.loss) and rec.loss > 0
    assert set(rec.seconds) == {"gradient", "draws"} and all(v >= 0 for v in rec.seconds.values())
    assert rec.sites == [] and rec.kernel is None and rec.network_patterns is None


# --------------------------------------------------------------------------- the user's model

class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.drop(self.act(self.bn(self.conv(x)))), 1))


def test_user_model_left_exactly_as_it_was():
    import lswag

    torch.manual_seed(6)
    model = UserNet()
    model.eval()
    model.bn.train()                                  # eval model with a submodule in train mode
    model.conv.weight.requires_grad_(False)           # a frozen weight
    calls = []
    user_fwd = model.fc.register_forward_hook(lambda m, i, o: calls.append("fwd"))
    user_pre = model.conv.register_forward_pre_hook(lambda m, i: calls.append("pre"))
    hooks_before = {n: (dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
                    for n, m in model.named_modules()}
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    modes_before = {n: m.training for n, m in model.named_modules()}
    flags_before = {n: p.requires_grad for n, p in model.named_parameters()}
    params_before = list(model.parameters())
    x = randn(8, 2, 4, 4, seed=6)
    batch = make_batch(x)
    x_before = x.clone()

    probe.record(model, batch, NEEDS)
    probe.record(model, batch, {"draws", "draw_patterns"}, memory_format=torch.channels_last)
    results = lswag.evaluate(model, batch, lswag.proxies.names())
    assert len(results) == len(lswag.proxies.names())

    for n, m in model.named_modules():
        assert (dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks)) == hooks_before[n], n
    assert list(model.fc._forward_hooks) == [user_fwd.id]
    assert list(model.conv._forward_pre_hooks) == [user_pre.id]
    state_after = model.state_dict()
    assert state_after.keys() == state_before.keys()
    for k, v in state_before.items():
        assert state_after[k].dtype == v.dtype and torch.equal(state_after[k], v), k   # BN stats included
    assert int(model.bn.num_batches_tracked) == 0
    assert {n: m.training for n, m in model.named_modules()} == modes_before
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags_before
    assert all(p.grad is None for p in model.parameters())
    assert all(a is b for a, b in zip(model.parameters(), params_before))
    assert all(p.is_contiguous() for p in model.parameters())    # the probe's copy ran channels-last, not the model
    assert torch.equal(batch.x, x_before)


def test_no_hooks_left_on_the_probed_copy_or_model():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    probe.record(model, make_batch(randn(6, 4)), NEEDS)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


def _without_dropout(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    for parent in list(clone.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Dropout):
                setattr(parent, name, nn.Identity())
    return clone


def _assert_same_record(a, b):
    assert [(s.name, s.units, s.patterns) for s in a.sites] == [(s.name, s.units, s.patterns) for s in b.sites]
    np.testing.assert_array_equal(a.kernel, b.kernel)
    assert a.network_patterns == b.network_patterns
    assert a.loss == b.loss
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert torch.equal(la.gradient, lb.gradient)
        assert torch.equal(la.gradient_draws, lb.gradient_draws)
        assert la.output_patterns == lb.output_patterns


def test_dropout_disabled():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.9), nn.ReLU(), nn.Dropout(0.9), nn.Linear(8, 3))
    batch = make_batch(randn(10, 5, seed=8))
    first = probe.record(model, batch, NEEDS)
    second = probe.record(model, batch, NEEDS)
    _assert_same_record(first, second)
    _assert_same_record(first, probe.record(_without_dropout(model), batch, NEEDS))
    assert model[1].training                           # the user's dropout mode is untouched


# --------------------------------------------------------------------------- misc API

def test_logits_of():
    t = torch.zeros(2, 3)
    assert logits_of(t) is t
    assert logits_of({"logits": t, "aux": 1}) is t
    assert logits_of({"out": t}) is t

    class Out:
        logits = t

    assert logits_of(Out()) is t
    for bad in ((t, t), [t], "text"):
        with pytest.raises(LswagError) as info:
            logits_of(bad)
        assert "\n" not in str(info.value) and "output=" in str(info.value)


def test_output_callable_picks_logits():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return x, self.fc(x)

    torch.manual_seed(9)
    net = Pair()
    batch = make_batch(randn(6, 4))
    with pytest.raises(LswagError):
        probe.record(net, batch, {"gradient"})
    rec = probe.record(net, batch, {"gradient"}, output=lambda out: out[1])
    assert rec.layers[0].gradient.abs().sum() > 0


def test_record_rejects_bad_needs_and_draws():
    net = nn.Sequential(nn.Linear(4, 3))
    batch = make_batch(randn(4, 4))
    with pytest.raises(LswagError, match="unknown probe need 'bogus'.*draws"):
        probe.record(net, batch, {"bogus"})
    for m in (0, 5):
        with pytest.raises(LswagError, match="gradient_draws"):
            probe.record(net, batch, {"draws"}, gradient_draws=m)


def test_one_forward_serving_several_passes_counts_its_time_for_each():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU()),
                        nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU()), nn.Flatten(), nn.Linear(16, 3))
    rec = probe.record(net, make_batch(randn(6, 3, 4, 4)), {"patterns", "gradient", "input_jacobian", "blocks",
                                                            "draws", "ntk"})
    assert set(rec.seconds) == {"patterns", "gradient", "jacobian", "features", "draws", "ntk"}
    assert len({rec.seconds[name] for name in ("patterns", "gradient", "jacobian", "features")}) == 1
    assert rec.sites and rec.input_jacobian is not None and rec.blocks and rec.num_draws == 2 and rec.ntk is not None


# --------------------------------------------------------------------------- declared blocks

class TwoContainerNet(nn.Module):
    """Two stages the rules would pick (``stages``) and the blocks a network can declare (``chosen``)."""

    def __init__(self):
        super().__init__()
        self.stages = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()), nn.Sequential(nn.Conv2d(4, 4, 1)))
        self.chosen = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1))

    def forward(self, x):
        return self.chosen(self.stages(x)).mean((2, 3))


class DeclaredNet(probe.DeclaresBlocks, TwoContainerNet):
    block_containers = ("chosen",)


def test_a_network_declares_its_blocks_by_inheriting_declares_blocks():
    assert [name for name, _ in probe.block_containers(TwoContainerNet())] == ["stages"]
    declared = DeclaredNet()
    assert [(name, module) for name, module in probe.block_containers(declared)] == [("chosen", declared.chosen)]
    rec = probe.record(declared, make_batch(randn(4, 3, 2, 2)), {"blocks"})
    assert rec.block_container == "chosen"
    assert [block.name for block in rec.blocks] == ["input of chosen.0", "chosen.0", "chosen.1", "chosen.2"]

    class Misdeclared(probe.DeclaresBlocks, TwoContainerNet):
        block_containers = ("chosen", "decoder")

    with pytest.raises(LswagError, match="block_containers names decoder, which the model does not have"):
        probe.block_containers(Misdeclared())


def test_an_attribute_alone_does_not_declare_blocks():
    """Only the declared capability counts: an attribute of the same name on another network is not read."""
    net = TwoContainerNet()
    net.block_containers = ("chosen",)
    assert [name for name, _ in probe.block_containers(net)] == ["stages"]


def test_tnb101_networks_declare_their_encoder_as_their_blocks():
    network = lswag.spaces.get("tnb101_micro").build("64-41414-1_00_210", task="jigsaw")
    assert isinstance(network, probe.DeclaresBlocks)
    assert [name for name, _ in probe.block_containers(network)] == ["encoder.layers"]


# --------------------------------------------------------------------------- initialisations

def test_initialise_draws_the_documented_distributions():
    from lswag.probe import initialise
    net = nn.Sequential(nn.Conv2d(64, 256, 3), nn.BatchNorm2d(256), nn.ReLU(), nn.Flatten(), nn.Linear(400, 500))
    with torch.no_grad():
        net[1].weight.fill_(3.0)
    initialise(net, "kaiming", seed=1)
    conv, linear = net[0].weight, net[4].weight
    # He et al. fan-in: std sqrt(2 / (64*3*3)) and sqrt(2 / 400); ~150k and 200k draws each
    assert abs(conv.std().item() / (2 / 576) ** 0.5 - 1) < 0.01 and abs(conv.mean().item()) < 1e-3
    assert abs(linear.std().item() / (2 / 400) ** 0.5 - 1) < 0.01
    assert not net[0].bias.detach().any() and bool((net[1].weight.detach() == 1).all())
    initialise(net, "normal", seed=1)
    assert abs(net[4].weight.std().item() - 1) < 0.01
    again = copy.deepcopy(net)
    initialise(again, "normal", seed=1)
    assert torch.equal(again[0].weight, net[0].weight)                 # seeded: same draws
    initialise(again, "normal", seed=2)
    assert not torch.equal(again[0].weight, net[0].weight)
    with pytest.raises(LswagError, match="unknown init 'xavier'; valid choices: given, kaiming, normal"):
        initialise(net, "xavier", seed=0)


def test_scoring_with_a_redrawn_init_leaves_the_model_alone():
    from lswag import spaces
    from lswag.data import load_batch
    from lswag.probe import initialise
    from lswag.scoring import evaluate
    model = spaces.get("nb201").build(spaces.get("nb201").parse("13714"), num_classes=10, C=4, N=1, seed=0)
    before = copy.deepcopy(model.state_dict())
    batch = load_batch("gaussian", batch_size=8, image_size=(32, 32))
    given = {r.name: r.value for r in evaluate(model, batch, ["synflow", "params", "zico"])}
    kaiming = {r.name: r.value for r in evaluate(model, batch, ["synflow", "params", "zico"], init="kaiming", init_seed=3)}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert kaiming["params"] == given["params"] and kaiming["synflow"] != given["synflow"]
    redrawn = copy.deepcopy(model)
    initialise(redrawn, "kaiming", seed=3)                               # what init= means: the same as this
    assert {r.name: r.value for r in evaluate(redrawn, batch, ["synflow", "params", "zico"])} == kaiming


def test_channels_last_changes_only_the_order_of_the_sums():
    """The channels-last layout (lswag's on CPU for NB201, NB101 and DARTS) runs the same network:
    the same sites, the same patterns and NWOT kernel, gradients equal to float32 rounding."""
    torch.manual_seed(7)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    batch = make_batch(randn(16, 3, 6, 6, seed=7))
    needs = {"patterns", "kernel", "layer_outputs", "gradient", "draws", "draw_patterns"}
    default = probe.record(net, batch, needs)
    last = probe.record(net, batch, needs, memory_format=torch.channels_last)
    assert last.batch.x.is_contiguous(memory_format=torch.channels_last) and net[0].weight.is_contiguous()
    assert [(s.name, s.units, s.patterns) for s in last.sites] == [(s.name, s.units, s.patterns) for s in default.sites]
    assert [s.patterns for s in last.draw_sites] == [s.patterns for s in default.draw_sites]
    assert np.array_equal(last.kernel, default.kernel)
    for mine, theirs in zip(last.layers, default.layers):
        assert mine.output_patterns == theirs.output_patterns, mine.name
        scale = theirs.gradient.abs().max()
        assert torch.allclose(mine.gradient, theirs.gradient, rtol=1e-4, atol=1e-5 * scale), mine.name
        assert torch.allclose(mine.gradient_draws, theirs.gradient_draws, rtol=1e-4,
                              atol=1e-5 * theirs.gradient_draws.abs().max()), mine.name
