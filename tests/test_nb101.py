"""NAS-Bench-101 space: validity and pruning, graph hashing, channel splitting, the network."""
from __future__ import annotations

import csv
import itertools
import json
import random

import numpy as np
import pytest
import torch

import lswag
from lswag.engine import score_architecture, scoring_threads
from lswag.settings import Scoring
from lswag.errors import LswagError
from lswag.spaces.nb101 import Spec, vertex_channels

from conftest import class_labels, shared_file, zoo_failures

NB101 = lswag.spaces.get("nb101")
#: NAS-Bench-101's README example: conv1x1, three conv3x3 and a maxpool
EXAMPLE = {"matrix": [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
                      [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
           "ops": ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu",
                   "maxpool3x3", "output"]}


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_readme_example_has_the_measured_size_and_round_trips():
    spec = NB101.parse(EXAMPLE)
    assert round(numel(NB101.build(spec)) / 1e6, 3) == 2.694
    assert NB101.parse(NB101.format(spec)) == spec and NB101.parse(json.dumps(EXAMPLE)) == spec


def test_pruning_drops_vertices_off_every_path():
    # vertex 2 is fed by the input but feeds nothing: it goes, with its edge
    spec = NB101.parse("0110|0001|0000|0000;input,conv3x3-bn-relu,maxpool3x3,output")
    assert spec == Spec(((0, 1, 0), (0, 0, 1), (0, 0, 0)), ("input", "conv3x3-bn-relu", "output"))


@pytest.mark.parametrize("text, words", [
    ("010|000|000;input,conv3x3-bn-relu,output", "no path from input to output"),
    ("011|100|000;input,conv3x3-bn-relu,output", "strictly upper-triangular"),
    ("011|001|000;input,conv5x5,output", "unknown nb101 op 'conv5x5'; valid: conv3x3-bn-relu"),
    ("011|001|000;input,output", "3 vertices but 2 ops"),
    ("011|001|000;conv3x3-bn-relu,maxpool3x3,output", "must start with 'input'"),
    ("0111111|0011111|0001111|0000111|0000011|0000001|0000000;input," + ",".join(["maxpool3x3"] * 5) + ",output",
     "21 edges after pruning; at most 9"),
    ("01|00;input", "2 vertices but 1 ops"),
    ("resnet", "cannot parse nb101 spec"),
])
def test_invalid_cells_say_what_is_wrong(text, words):
    with pytest.raises(LswagError, match=words.replace("(", r"\(").replace(")", r"\)")):
        NB101.parse(text)


def test_isomorphic_cells_share_a_hash():
    spec = NB101.parse(EXAMPLE)
    matrix, ops = spec.array, list(spec.ops)
    # vertices 1, 2 and 5 are each fed by the input alone and feed the output alone: any order
    for order in itertools.permutations([1, 2, 5]):
        perm = list(range(7))
        perm[1], perm[2], perm[5] = order
        permuted = matrix[np.ix_(perm, perm)]
        if np.tril(permuted).any():
            continue
        other = NB101.parse((permuted.tolist(), [ops[p] for p in perm]))
        assert other.hash() == spec.hash()
    changed = NB101.parse((matrix.tolist(), ops[:5] + ["conv3x3-bn-relu"] + ops[6:]))
    assert changed.hash() != spec.hash()


def test_vertex_channels_split_the_output_and_flow_back():
    # vertices 1, 2, 3 feed the output: 128 = 43 + 43 + 42, the remainder to the first ones
    matrix = np.zeros((5, 5), dtype=int)
    for i, j in [(0, 1), (0, 2), (0, 3), (1, 4), (2, 4), (3, 4)]:
        matrix[i, j] = 1
    assert vertex_channels(64, 128, matrix) == [64, 43, 43, 42, 128]
    # vertex 1 feeds only interior vertices (2: 22 channels, 3: 21): it takes the widest, 22
    matrix = np.zeros((6, 6), dtype=int)
    for i, j in [(0, 1), (1, 2), (1, 3), (0, 4), (2, 5), (3, 5), (4, 5)]:
        matrix[i, j] = 1
    assert vertex_channels(32, 64, matrix) == [32, 22, 22, 21, 21, 64]


def test_input_to_output_only_is_the_projection():
    spec = NB101.parse("01|00;input,output")
    model = NB101.build(spec, stem_channels=8, seed=0).eval()
    cell = model.layers[0]
    x = torch.randn(2, 8, 8, 8)
    assert torch.equal(cell(x), cell.projections["1"](x))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_sampling_mutation_and_crossover_give_valid_distinct_cells():
    specs = NB101.sample(25, seed=4)
    assert len({s.hash() for s in specs}) == 25 and specs == NB101.sample(25, seed=4)
    rng = random.Random(0)
    for a, b in zip(specs, specs[1:]):
        child = NB101.mutate(a, rng)
        assert NB101.parse(child) == child and child.hash() != a.hash()
        assert NB101.parse(NB101.crossover(a, b, rng))


def test_enumeration_starts_with_the_smallest_cells():
    small = list(itertools.islice(NB101.enumerate(), 7))
    # 1 cell of 2 vertices; 3 vertices: input -> v -> output, with or without input -> output, 3 ops each
    assert [len(s.ops) for s in small] == [2] + [3] * 6
    assert len({s.hash() for s in small}) == 7


def test_the_zoo_scores_a_small_nb101_network():
    assert not zoo_failures(NB101.build(EXAMPLE, stem_channels=8, seed=0), class_labels(10), 10)


def test_l_swag_scores_nb101_with_the_measured_log_product():
    batch = lswag.load_batch("digits", batch_size=8, seed=0, image_size=(32, 32))
    setup = Scoring("nb101", ("l_swag",), build={"stem_channels": 8})
    _, results = score_architecture(setup, EXAMPLE, batch=batch)
    assert setup.resolved_options == {"l_swag": {"product": "log"}}
    model = NB101.build(EXAMPLE, num_classes=10, seed=0, stem_channels=8)
    with scoring_threads():   # as the engine scores: one torch thread, the same float sums
        by_product = {product: lswag.score(model, batch, ["l_swag"], options={"l_swag": {"product": product}},
                                           memory_format=torch.channels_last)["l_swag"] for product in ("log", "sum")}
    assert results[0].value == pytest.approx(by_product["log"], rel=1e-9)
    assert by_product["sum"] != pytest.approx(by_product["log"], rel=1e-3)


@pytest.mark.realdata
def test_parameter_counts_equal_suite_zero_for_a_sample_of_its_cells():
    path = shared_file("benchmarks/nasbench101/nb101_suite0_partial_11proxies.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    specs = [NB101.parse({"matrix": json.loads(r["adjacency"]), "ops": json.loads(r["ops"])}) for r in rows]
    assert len(specs) == 500
    assert all(NB101.parse(r["naslib_encoding"]) == spec for r, spec in zip(rows, specs))   # the bench's arch column
    for row, spec in random.Random(0).sample(list(zip(rows, specs)), 40):
        assert numel(NB101.build(spec)) == round(float(row["params"]) * 1e6), row["adjacency"]


def test_naslib_encoding_is_the_flattened_matrix_and_vertex_codes():
    matrix = [[0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 0],
              [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0] * 7]
    ops = ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "conv3x3-bn-relu", "conv1x1-bn-relu", "output"]
    codes = {"input": 0, "output": 1, "maxpool3x3": 2, "conv1x1-bn-relu": 3, "conv3x3-bn-relu": 4}
    encoding = [bit for row in matrix for bit in row] + [codes[op] for op in ops]
    assert NB101.parse(tuple(encoding)) == NB101.parse(str(tuple(encoding))) == NB101.parse((matrix, ops))
    with pytest.raises(LswagError, match="op codes must be in"):
        NB101.parse(tuple(encoding[:-1] + [7]))
