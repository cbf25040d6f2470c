"""AutoFormer's ViT spaces: parameter counts, relative-position attention, grid, sampling, search moves."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn

import lswag
from lswag.errors import LswagError
from lswag.spaces.autoformer import Attention, AutoFormerSpace, Grid, ViTConfig

from conftest import class_labels, zoo_failures

#: the searched AutoFormer-S subnet (experiments/subnet/AutoFormer-S.yaml): 22.891M parameters
AUTOFORMER_S = "384/3.0,3.5,3.0,3.5,4,4,4,4,4,4,4,3.5,4/6,6,5,7,5,5,5,6,6,7,7,6,7"
TINY = AutoFormerSpace("s", Grid(embed_dim=(16, 24), mlp_ratio=(1.0, 2.5), num_heads=(1, 2), depth=(1, 2), head_dim=4))


def numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_autoformer_s_subnet_has_the_published_parameter_count():
    space = lswag.spaces.get("autoformer-s")
    config = space.parse(AUTOFORMER_S)
    assert config.depth == 13 and config.embed_dim == 384
    assert round(space.params(config) / 1e6, 3) == 22.891
    assert numel(space.build(config, seed=0)) == space.params(config)


@pytest.mark.parametrize("seed", range(4))
def test_analytic_parameter_count_equals_the_model(seed):
    config = TINY.sample(1, seed=seed)[0]
    for classes, size in ((1000, 32), (10, 64)):
        assert numel(TINY.build(config, num_classes=classes, image_size=size)) == \
            TINY.params(config, num_classes=classes, image_size=size)


def test_grid_extremes_of_the_s_space():
    space = lswag.spaces.get("autoformer-s")
    smallest = ViTConfig(320, (3.0,) * 12, (5,) * 12)
    largest = ViTConfig(448, (4.0,) * 14, (7,) * 14)
    assert round(space.params(smallest) / 1e6, 2) == 13.06 and round(space.params(largest) / 1e6, 2) == 34.79
    assert space.size() == sum(3 * 9 ** d for d in (12, 13, 14))


def test_attention_with_relative_positions_against_a_loop():
    torch.manual_seed(0)
    attention = Attention(embed_dim=8, num_heads=2, head_dim=3)
    for table in (attention.relative_k.table_v, attention.relative_k.table_h,
                  attention.relative_v.table_v, attention.relative_v.table_h):
        nn.init.normal_(table)
    x = torch.randn(2, 1 + 9, 8, dtype=torch.float64)             # class token + a 3x3 patch grid
    attention = attention.double()
    q, k, v = attention.qkv(x).reshape(2, 10, 3, 2, 3).unbind(2)

    def row(rel, i, j):
        """The table rows of the (i, j) pair: 0 for the class token, else the clipped offset + 15."""
        if i == 0 or j == 0:
            return rel.table_v[0] + rel.table_h[0]
        (yi, xi), (yj, xj) = divmod(i - 1, 3), divmod(j - 1, 3)
        return rel.table_v[max(-14, min(14, yj - yi)) + 15] + rel.table_h[max(-14, min(14, xj - xi)) + 15]

    expected = torch.zeros(2, 10, 2, 3, dtype=torch.float64)
    for b in range(2):
        for h in range(2):
            for i in range(10):
                logits = torch.stack([(q[b, i, h] @ (k[b, j, h] + row(attention.relative_k, i, j))) / 3 ** 0.5
                                      for j in range(10)])
                weights = logits.softmax(0)
                expected[b, i, h] = sum(weights[j] * (v[b, j, h] + row(attention.relative_v, i, j)) for j in range(10))
    reference = attention.proj(expected.reshape(2, 10, 6))
    assert torch.allclose(attention(x), reference, atol=1e-10)


def test_parse_forms_and_errors():
    space = lswag.spaces.get("autoformer-s")
    config = space.parse(AUTOFORMER_S)
    assert space.parse(space.format(config)) == config
    assert space.parse(config.as_dict()) == config
    # AutoFormer's dict: lists as long as the supernet, of which the first layer_num count
    assert TINY.parse('{"embed_dim": [24, 24], "layer_num": 2, "mlp_ratio": [2.5, 1, 1], "num_heads": [2, 1, 1]}') \
        == ViTConfig(24, (2.5, 1.0), (2, 1))
    for bad, words in [("384/3.0/6", "depth 1 is not in the grid; choose from 12, 13, 14"),
                       (AUTOFORMER_S.replace("384/", "400/"), "embed_dim 400 is not in the grid"),
                       (AUTOFORMER_S.replace("/6,", "/8,"), "num_heads 8 is not in the grid"),
                       ("384/3.0,3.5/6", "2 MLP ratios but 1 head counts"),
                       ("nonsense", "expected E/r_1,...,r_d/h_1,...,h_d"),
                       ('{"embed_dim": [384, 320], "mlp_ratio": [4], "num_heads": [6]}', "shares one embed_dim")]:
        with pytest.raises(LswagError, match=words.replace("(", r"\(").replace(".", r"\.")):
            space.parse(bad)


def test_sample_is_seeded_distinct_and_within_the_budget():
    space = lswag.spaces.get("autoformer-s")
    configs = space.sample(20, seed=3, min_params=21e6, max_params=23e6)
    assert len(set(configs)) == 20 and configs == space.sample(20, seed=3, min_params=21e6, max_params=23e6)
    assert all(21e6 <= space.params(c) <= 23e6 for c in configs)
    assert {c.depth for c in space.sample(60, seed=0)} == {12, 13, 14}
    with pytest.raises(LswagError, match="found only 0 of 1"):
        space.sample(1, min_params=1e9)


def test_mutation_and_crossover_stay_in_the_grid():
    space, rng = lswag.spaces.get("autoformer-s"), random.Random(0)
    parents = space.sample(10, seed=1)
    children = [space.mutate(p, rng) for p in parents]
    assert all(space.parse(c) == c for c in children) and children != parents
    a, b = ViTConfig(320, (3.0,) * 12, (5,) * 12), ViTConfig(448, (4.0,) * 12, (7,) * 12)
    child = space.crossover(a, b, rng)
    assert child.embed_dim in (320, 448) and all(r in (3.0, 4.0) for r in child.mlp_ratio)
    assert {(r, h) for r, h in zip(child.mlp_ratio, child.num_heads)} <= {(3.0, 5), (4.0, 7), (3.0, 7), (4.0, 5)}
    with pytest.raises(LswagError, match="equal depth"):
        space.crossover(a, ViTConfig(320, (3.0,) * 13, (5,) * 13), rng)


def test_the_zoo_scores_a_tiny_subnet():
    model = TINY.build(TINY.parse("24/2.5,1.0/2,1"), num_classes=5, seed=0, image_size=32)
    assert not zoo_failures(model, class_labels(5), 5)
