"""Contracts that every registered space and proxy keeps, and that every registry enforces.

The tests are parametrised over what is registered (``lswag.spaces.names()``,
``lswag.proxies.names()``), so a space or proxy registered next is tested on arrival; a new space
also needs an entry in :data:`TINY_BUILDS`, the smallest network these tests build of it.
"""
from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn as nn

import lswag
from lswag import ensembles, losses, probe, proxies, spaces
from lswag.data import Batch
from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.proxies.tenas import HasThinNetwork
from lswag.spaces import SupernetSpace, nb201
from lswag.spaces.autoformer import AutoFormerSpace


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smallest_vit(space: AutoFormerSpace) -> str:
    """The grid's smallest config: an AutoFormer space has no width option, its configs are its sizes."""
    grid = space.grid
    depth = min(grid.depth)
    return space.format(space.validate(min(grid.embed_dim), [min(grid.mlp_ratio)] * depth,
                                       [min(grid.num_heads)] * depth))


#: space -> (the smallest width build options, the image side its tiny batch has, the arch: None for
#: the space's first sample, or a function of the space)
TINY_BUILDS = {
    "nb201": ({"C": 2, "N": 1}, 8, None),
    "darts": ({"C": 2, "layers": 3}, 8, None),
    "nb301": ({"C": 2, "layers": 3}, 8, None),
    "nb101": ({"stem_channels": 4}, 8, None),
    "autoformer-t": ({}, 16, smallest_vit),        # one 16 x 16 patch
    "autoformer-s": ({}, 16, smallest_vit),
    "autoformer-b": ({}, 16, smallest_vit),
    "vitbench101-autoformer": ({}, 16, smallest_vit),
    # no width option: the 64-channel benchmark networks, on 32 x 32 images of the default task
    "tnb101_micro": ({}, 32, None),
    "tnb101_macro": ({}, 32, None),
}

SPACES = spaces.names()
SUPERNET_SPACES = [name for name in SPACES if isinstance(spaces.get(name), SupernetSpace)]
#: AutoFormer's search moves, as their docstrings say: a mutation redraws values that may equal the old
#: ones, so a child may equal its parent, and crossover pairs parents of equal depth only
AUTOFORMER_SPACES = {name for name in SPACES if isinstance(spaces.get(name), AutoFormerSpace)}


def tiny_build(name: str) -> tuple[dict, int, object]:
    if name not in TINY_BUILDS:
        pytest.fail(f"space {name!r} has no entry in TINY_BUILDS of tests/test_contracts.py: add its smallest "
                    "build options, image side and arch")
    options, side, arch = TINY_BUILDS[name]
    space = spaces.get(name)
    return space.check_build_options(options), side, space.sample(1, seed=0)[0] if arch is None else arch(space)


def gaussian_images(side: int, n: int = 4, classes: int = 10) -> Batch:
    generator = torch.Generator().manual_seed(0)
    return Batch(torch.randn(n, 3, side, side, generator=generator), torch.arange(n) % classes, classes, "gaussian")


# --- registries ----------------------------------------------------------------------------------

def one_line_error(error: pytest.ExceptionInfo, name: str) -> None:
    message = str(error.value)
    assert name in message and "\n" not in message, message


def test_a_space_name_is_registered_once():
    with pytest.raises(LswagError, match="already registered") as error:
        spaces.register(spaces.get("nb201"))
    one_line_error(error, "nb201")


def test_a_proxy_name_is_registered_once():
    with pytest.raises(LswagError, match="already registered") as error:
        proxies.proxy("l_swag")(lambda record, model: 1.0)
    one_line_error(error, "l_swag")
    assert proxies.get("l_swag").family == "lswag"          # the first one stays


def test_a_loss_name_is_registered_once_and_the_table_is_read_only():
    with pytest.raises(LswagError, match="already registered") as error:
        losses.register("mse", torch.nn.functional.l1_loss)
    one_line_error(error, "mse")
    with pytest.raises(TypeError):
        losses.LOSSES["mse"] = torch.nn.functional.l1_loss
    assert losses.get("mse") is torch.nn.functional.mse_loss


def test_an_ensemble_name_is_registered_once_and_the_table_is_read_only():
    with pytest.raises(LswagError, match="already registered") as error:
        ensembles.register("az_nas", ensembles.rank_average)
    one_line_error(error, "az_nas")
    with pytest.raises(TypeError):
        ensembles.ENSEMBLES["az_nas"] = (ensembles.rank_average, None)
    assert ensembles.ENSEMBLES["az_nas"] == (ensembles.az_nas, ensembles.AZ_NAS)


# --- spaces --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SPACES)
def test_format_then_parse_gives_the_architecture(name):
    space = spaces.get(name)
    for arch in space.sample(5, seed=0):
        text = space.format(arch)
        assert space.parse(text) == arch
        assert space.format(space.parse(text)) == text


@pytest.mark.parametrize("name", SPACES)
def test_sample_gives_distinct_architectures_and_is_seeded(name):
    space = spaces.get(name)
    drawn = [space.format(arch) for arch in space.sample(6, seed=1)]
    assert len(set(drawn)) == 6
    assert [space.format(arch) for arch in space.sample(6, seed=1)] == drawn
    assert [space.format(arch) for arch in space.sample(6, seed=2)] != drawn


@pytest.mark.parametrize("prob", [None, 0.5])
@pytest.mark.parametrize("name", SPACES)
def test_mutation_changes_the_architecture(name, prob):
    space, rng = spaces.get(name), random.Random(0)
    parents = space.sample(5, seed=0)
    children = [space.mutate(parent, rng, prob=prob) for parent in parents]
    changed = [space.format(child) != space.format(parent) for parent, child in zip(parents, children)]
    for child in children:
        assert space.parse(space.format(child)) == child
    assert any(changed) if name in AUTOFORMER_SPACES else all(changed), changed


@pytest.mark.parametrize("name", SPACES)
def test_crossover_of_two_samples_is_an_architecture(name):
    space, rng = spaces.get(name), random.Random(0)
    first, *others = space.sample(10, seed=0)
    if name in AUTOFORMER_SPACES:
        others = [arch for arch in others if arch.depth == first.depth]
    assert others
    for second in others[:3]:
        child = space.crossover(first, second, rng)
        assert space.parse(space.format(child)) == child


@pytest.mark.parametrize("name", SPACES)
def test_proxy_defaults_name_registered_proxies_and_valid_options(name):
    for proxy_name, options in spaces.proxy_defaults(name).items():
        proxies.check_options(proxy_name, options)     # an unknown proxy or option raises


def test_proxy_defaults_are_a_copy_of_the_space_modules_table():
    spaces.proxy_defaults("nb201")["l_swag"]["window"] = (1, 10)
    assert spaces.proxy_defaults(spaces.get("nb201")) == nb201.PROXY_DEFAULTS["nb201"]
    with pytest.raises(LswagError, match="unknown search space"):
        spaces.proxy_defaults("nb999")


@pytest.mark.parametrize("name", SPACES)
def test_the_smallest_build_runs_and_scores_l_swag(name):
    space = spaces.get(name)
    build, side, arch = tiny_build(name)
    batch = space.prepare(gaussian_images(side), seed=0, **build)
    build = space.sized_build(build, batch.x)
    model = space.build(arch, num_classes=batch.num_classes, seed=0, **build)
    with torch.no_grad():
        output = model.eval()(batch.x)
    assert output.shape[0] == len(batch) and torch.isfinite(output).all()
    options = {"l_swag": spaces.proxy_defaults(space).get("l_swag", {})}   # as the space is scored
    [result] = lswag.evaluate(model, batch, ["l_swag"], options=options, loss_fn=space.task_loss(**build))
    assert isinstance(result.value, float) and math.isfinite(result.value), result.value
    if isinstance(model, HasThinNetwork):      # TE-NAS's thin copy takes 1-channel 3 x 3 crops
        assert model.thin_network()(torch.randn(5, 1, 3, 3)).shape == (5, batch.num_classes)


@pytest.mark.parametrize("name", SUPERNET_SPACES)
def test_the_supernet_builds_and_runs_forward(name):
    space = spaces.get(name)
    build, side, _ = tiny_build(name)
    edges = space.supernet_edges()
    supernet = space.supernet(edges, num_classes=10, seed=0, **build)
    with torch.no_grad():
        assert supernet.eval()(gaussian_images(side).x).shape == (4, 10)
    assert space.supernet_key(edges).startswith("supernet:")
    assert all(position < len(edges) for group in space.edge_groups() for position in group)


# --- proxies -------------------------------------------------------------------------------------

class TinyCNN(nn.Sequential):
    def __init__(self, classes: int = 10):
        super().__init__(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


class Block(nn.Module):
    """A pre-norm transformer block: attention with Linear q, k, v and projection, then a GELU MLP."""

    def __init__(self, width: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x):
        batch, tokens, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attention = nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attention.transpose(1, 2).reshape(batch, tokens, width))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, classes: int = 10, width: int = 16, patch: int = 4):
        super().__init__()
        self.patches = nn.Conv2d(3, width, patch, stride=patch)
        self.blocks = nn.Sequential(Block(width), Block(width))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, classes)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


class TinyMLP(nn.Sequential):
    def __init__(self, classes: int = 10, side: int = 8):
        super().__init__(nn.Flatten(), nn.Linear(3 * side * side, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, classes))


NETWORKS = {"cnn": TinyCNN, "vit": TinyViT, "mlp": TinyMLP}


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("name", proxies.names())
def test_a_proxy_gives_a_finite_float_or_a_reasoned_failure(name, network):
    torch.manual_seed(0)
    model = NETWORKS[network]()
    batch = gaussian_images(8, n=8)
    entry = proxies.get(name)
    record = probe.record(model, batch, entry.needs, **entry.probe_settings({}))
    value, _ = proxies.compute(name, record, model)     # any exception but ProxyFailure propagates
    if isinstance(value, Failure):
        assert value.reason.strip(), f"{name} failed without a reason"
    else:
        assert isinstance(value, float) and math.isfinite(value), value


@pytest.mark.parametrize("name", proxies.names())
def test_a_proxy_declares_a_summary_a_cost_and_probe_needs(name):
    entry = proxies.get(name)
    assert entry.summary.strip(), f"{name}'s function has no docstring summary"
    assert entry.cost in probe.COST_CLASSES
    assert entry.needs <= probe.NEEDS and entry.needs_for(entry.defaults) <= probe.NEEDS
