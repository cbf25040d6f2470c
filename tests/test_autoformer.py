"""AutoFormer's ViT spaces: parameter counts, relative-position attention, grid, sampling, search moves."""
from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn as nn

import lswag
from lswag.errors import LswagError
from lswag.spaces.autoformer import Attention, AutoFormerSpace, Grid, Network, ViTConfig

from conftest import class_labels, zoo_failures

#: the searched AutoFormer-S subnet (experiments/subnet/AutoFormer-S.yaml): 22.891M parameters
AUTOFORMER_S = "384/3.0,3.5,3.0,3.5,4,4,4,4,4,4,4,3.5,4/6,6,5,7,5,5,5,6,6,7,7,6,7"
TINY = AutoFormerSpace("s", Grid(embed_dim=(16, 24), mlp_ratio=(1.0, 2.5), num_heads=(1, 2), depth=(1, 2)),
                       Network(head_dim=4))


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
    attention = Attention(embed_dim=8, num_heads=2, network=Network(head_dim=3))
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


# -- ViT-Bench-101's network (Auto-Prox's AutoFormerSub) -------------------------------------------
VITBENCH_CSV = "benchmarks/vitbench101_autoformer/vitbench101_autoformer_ti.csv"


def auto_prox_params(arch: dict, classes: int = 100, image_size: int = 224) -> int:
    """AutoFormerSub's parameters worked out from its definition: a 16x16 patch convolution with
    bias, a class token and 1 + 196 position embeddings, per layer two LayerNorms, qkv E -> 3E and
    projection E -> E (both with bias), fc1 E -> int(E r) and fc2 back, then a LayerNorm and the head."""
    e, tokens = arch["hidden_dim"], 1 + (image_size // 16) ** 2
    total = 3 * 16 * 16 * e + e + e + tokens * e
    for ratio in arch["mlp_ratio"][:arch["depth"]]:
        hidden = int(e * ratio)
        total += 2 * 2 * e + (e * 3 * e + 3 * e) + (e * e + e) + (e * hidden + hidden) + (hidden * e + e)
    return total + 2 * e + e * classes + classes


@pytest.mark.realdata
def test_vitbench101_network_has_auto_prox_parameter_count_on_all_100_rows():
    import csv

    from conftest import shared_file

    space = lswag.spaces.get("vitbench101-autoformer")
    rows = list(csv.DictReader(shared_file(VITBENCH_CSV).open()))
    assert len(rows) == 100
    for row in rows:
        arch = json.loads(row["arch_json"])
        config = space.parse(row["arch_json"])
        assert config.depth == arch["depth"] and config.embed_dim == arch["hidden_dim"]
        with torch.device("meta"):     # shapes only: 100 full-size ViTs without their weights
            model = space.build(config)
        assert numel(model) == space.params(config) == auto_prox_params(arch), row["row"]


def test_vitbench101_differs_from_autoformer_t_only_in_attention_and_norms():
    config = ViTConfig(216, (3.5, 4.0) * 6, (3, 4) * 6)
    ours, theirs = lswag.spaces.get("autoformer-t"), lswag.spaces.get("vitbench101-autoformer")
    bench = theirs.build(config, seed=0, image_size=32)
    first = bench.blocks[0]
    assert first.attn.qkv.out_features == 3 * 216 and first.attn.head_dim == 216 // 3
    assert bench.blocks[1].attn.head_dim == 216 // 4 and first.attn.relative_k is None
    assert first.attn_norm.eps == 1e-6 and bench.norm.eps == 1e-6 and bench.head.out_features == 100
    af = ours.build(config, seed=0, image_size=32)
    assert af.blocks[0].attn.qkv.out_features == 3 * 3 * 64 and af.blocks[0].attn_norm.eps == 1e-5
    # the same parameters apart from attention: patch conv, class token, positions, MLPs, norms, head
    shared = {n: p.shape for n, p in bench.named_parameters() if ".attn." not in n and n != "head.weight"
              and n != "head.bias"}
    assert shared == {n: p.shape for n, p in af.named_parameters() if n in shared}
    as_given = {"depth": 12, "hidden_dim": 216, "mlp_ratio": [3.5, 4.0] * 6 + [4.0], "num_heads": [3, 4] * 6 + [4]}
    assert theirs.parse(json.dumps(as_given)) == ours.parse(as_given) == config


def test_vitbench101_attention_against_scaled_dot_product():
    torch.manual_seed(0)
    attention = Attention(embed_dim=12, num_heads=3, network=Network(head_dim=None, relative_position=False)).double()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    q, k, v = attention.qkv(x).reshape(2, 5, 3, 3, 4).permute(2, 0, 3, 1, 4)   # (3, B, heads, tokens, 12/3)
    out = nn.functional.scaled_dot_product_attention(q, k, v)                   # scale 4^-1/2
    assert torch.allclose(attention(x), attention.proj(out.transpose(1, 2).reshape(2, 5, 12)), atol=1e-12)


def test_the_zoo_scores_a_tiny_vitbench101_subnet():
    from lswag.spaces.autoformer import VITBENCH101
    tiny = AutoFormerSpace("t", Grid(embed_dim=(12,), mlp_ratio=(2.0,), num_heads=(2, 3), depth=(2,)), VITBENCH101)
    model = tiny.build(tiny.parse("12/2.0,2.0/2,3"), num_classes=5, seed=0, image_size=32)
    assert not zoo_failures(model, class_labels(5), 5)


@pytest.mark.parametrize("name", ["autoformer-t", "vitbench101-autoformer"])
def test_scoring_builds_the_vit_for_the_batch_resolution(name):
    from lswag.engine import score_architecture
    from lswag.settings import Scoring
    space = lswag.spaces.get(name)
    config = ViTConfig(192, (3.5,) * 12, (3,) * 12)
    _, results = score_architecture(Scoring(name, ("params",), data="gaussian", batch_size=2, image_size=32), config)
    assert results[0].value == pytest.approx(space.params(config, num_classes=10, image_size=32) / 1e6)
    with pytest.raises(LswagError, match="square images, got 32x48"):
        score_architecture(Scoring(name, ("params",), data="gaussian", batch_size=2, image_size=(32, 48)), config)
