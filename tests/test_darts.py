"""DARTS and NAS-Bench-301 spaces: genotype forms, the network, parameter counts against the data."""
from __future__ import annotations

import csv
import random

import pytest
import torch

import lswag
from lswag.engine import score_architecture, scoring_threads
from lswag.settings import Scoring
from lswag.errors import LswagError
from lswag.spaces.darts import DARTS_V2, NB301_OPS, NODES, Genotype

from conftest import class_labels, shared_file, zoo_failures

DARTS = lswag.spaces.get("darts")
NB301 = lswag.spaces.get("nb301")


def numel(model, skip=None) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if skip is None or skip not in n)


def test_darts_v2_evaluation_network_has_the_published_size():
    model = DARTS.build(DARTS_V2, auxiliary=True)
    assert numel(model, skip="auxiliary") == 3_349_342        # DARTS: 3.3M (train.py counts without the head)
    assert numel(DARTS.build(DARTS_V2)) == 3_349_342
    assert len(model.cells) == 20 and model.stem[0].out_channels == 108


def test_forward_shapes_and_the_auxiliary_head():
    model = NB301.build(DARTS_V2, C=4, layers=5, auxiliary=True, num_classes=7, seed=0).train()
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    assert set(out) == {"logits", "aux_logits"} and out["logits"].shape == out["aux_logits"].shape == (3, 7)
    assert model.eval()(x).shape == (3, 7)                       # eval: the logits alone
    a, b = NB301.build(DARTS_V2, C=4, layers=5, seed=1), NB301.build(DARTS_V2, C=4, layers=5, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_text_forms_round_trip():
    text = DARTS.format(DARTS_V2)
    assert text.startswith("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)") and DARTS.parse(text) == DARTS_V2
    compact = str(DARTS_V2.compact())
    assert NB301.parse(compact) == DARTS_V2


@pytest.mark.parametrize("bad, words", [
    ("Genotype(normal=[('sep_conv_3x3', 0)], reduce=[])", "normal cell has 1 (op, input) pairs, expected 8"),
    (DARTS.format(DARTS_V2).replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"),
     "node 5 takes input 5; valid inputs are 0..4"),
    (DARTS.format(DARTS_V2).replace("dil_conv_3x3", "conv_7x7"), "unknown op 'conv_7x7'; valid: none, max_pool_3x3"),
    ("Genotype(normal=[", "malformed darts genotype text"),
    ("resnet", "expected DARTS'"),
])
def test_bad_genotypes_say_what_is_wrong(bad, words):
    with pytest.raises(LswagError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        DARTS.parse(bad)


def test_nb301_has_no_none_op():
    with_none = Genotype(normal=(("none", 0),) + DARTS_V2.normal[1:], reduce=DARTS_V2.reduce)
    assert DARTS.parse(with_none) == with_none
    with pytest.raises(LswagError, match="unknown op 'none'"):
        NB301.parse(with_none)
    with pytest.raises(LswagError, match="op 0..6"):
        NB301.parse("(((0, 9),), ((0, 0),))")


def distinct_inputs(genotype: Genotype) -> bool:
    return all(cell[2 * n][1] != cell[2 * n + 1][1] for cell in (genotype.normal, genotype.reduce)
               for n in range(NODES))


def test_sampling_mutation_and_crossover_keep_two_distinct_inputs_per_node():
    genotypes = NB301.sample(30, seed=2)
    assert len(set(genotypes)) == 30 and genotypes == NB301.sample(30, seed=2)
    assert all(distinct_inputs(g) and NB301.parse(g) == g for g in genotypes)
    assert {op for g in genotypes for op, _ in g.normal} == set(NB301_OPS)
    rng = random.Random(0)
    for parent, other in zip(genotypes, genotypes[1:]):
        child = NB301.mutate(parent, rng)
        changed = [(x, y) for x, y in zip(parent.normal + parent.reduce, child.normal + child.reduce) if x != y]
        assert len(changed) == 1 and distinct_inputs(child)
        mixed = NB301.crossover(parent, other, rng)
        assert distinct_inputs(mixed)
        for cell, a, b in ((mixed.normal, parent.normal, other.normal), (mixed.reduce, parent.reduce, other.reduce)):
            assert all(cell[2 * n:2 * n + 2] in (a[2 * n:2 * n + 2], b[2 * n:2 * n + 2]) for n in range(NODES))
    assert NB301.size() == (180 * 7 ** 8) ** 2


def test_the_zoo_scores_a_small_darts_network():
    assert not zoo_failures(NB301.build(DARTS_V2, C=4, layers=5, seed=0), class_labels(10), 10)


def test_l_swag_scores_darts_with_the_measured_log_product_and_nb301_with_the_sum():
    batch = lswag.load_batch("digits", batch_size=8, seed=0, image_size=(32, 32))
    build = {"C": 4, "layers": 5}
    setup = Scoring("darts", ("l_swag",), build=build)
    _, results = score_architecture(setup, DARTS_V2, batch=batch)
    assert setup.resolved_options == {"l_swag": {"product": "log"}}
    model = DARTS.build(DARTS_V2, num_classes=10, seed=0, **build)
    with scoring_threads():   # as the engine scores: one torch thread, the same float sums
        by_product = {product: lswag.score(model, batch, ["l_swag"], options={"l_swag": {"product": product}},
                                           memory_format=torch.channels_last)["l_swag"] for product in ("log", "sum")}
    assert results[0].value == pytest.approx(by_product["log"], rel=1e-9)
    assert by_product["sum"] != pytest.approx(by_product["log"], rel=1e-3)
    assert Scoring("nb301", ("l_swag",), build=build).resolved_options == {}


@pytest.mark.realdata
def test_nb301_parameter_counts_equal_suite_zero_for_a_sample_of_its_cells():
    """NAS-Bench-Suite-Zero's params column counts NASLib's NB301 model: C=32, 8 cells, no
    auxiliary head, BatchNorm without affine parameters inside the ops."""
    path = shared_file("benchmarks/nasbench301/nb301_suite0_partial_13proxies.csv")
    with open(path) as f:
        rows = random.Random(0).sample(list(csv.DictReader(f)), 40)
    for row in rows:
        genotype = NB301.parse(row["genotype"])
        assert NB301.parse(row["naslib_compact"]) == genotype
        assert numel(NB301.build(genotype, affine=False)) == round(float(row["params"]) * 1e6), row["genotype"]


@pytest.mark.realdata
def test_every_darts_archive_row_parses_and_a_sample_builds():
    path = shared_file("benchmarks/darts_cifar10_swap/DARTS_archs_CIFAR10.csv")
    with open(path) as f:
        genotypes = [DARTS.parse(row[0]) for row in csv.reader(f)]
    assert len(genotypes) == 1000
    for genotype in random.Random(0).sample(genotypes, 5):
        assert DARTS.build(genotype, C=8, layers=5)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
