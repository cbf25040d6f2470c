"""Tests of the NAS-Bench-201 space: parsing, encodings, the official index, and the networks."""
from __future__ import annotations

import csv
import itertools
import random

import numpy as np
import pytest
from conftest import shared_file
import torch

from lswag import spaces
from lswag.errors import LswagError
from lswag.spaces.nb201 import EDGES, OPS, SPACE, Cell


RESNET_LIKE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
ALL_NONE = Cell(*["none"] * 6)
ALL_CONV3 = Cell(*["nor_conv_3x3"] * 6)
INDEX0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


@pytest.fixture(scope="module")
def ground_truth() -> list[dict[str, str]]:
    with shared_file("benchmarks/nasbench201/nb201_groundtruth.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --- parsing and formatting -------------------------------------------------------------------

def test_registered():
    assert spaces.get("nb201") is SPACE
    assert SPACE.size() == 15625
    assert SPACE.input_shape == (3, 32, 32) and SPACE.num_classes == 10


def test_round_trip_all_cells():
    cells = list(SPACE.enumerate())
    strings = [SPACE.format(c) for c in cells]
    assert len(set(strings)) == len(cells) == 15625
    assert all(SPACE.parse(s) == c for s, c in zip(strings, cells))


def test_enumerate_is_lexicographic_product():
    cells = list(SPACE.enumerate())
    assert cells == [Cell(*ops) for ops in itertools.product(OPS, repeat=6)]
    assert cells[0] == ALL_NONE and cells[1][-1] == "skip_connect"


def test_format_is_nb201_string():
    cell = SPACE.parse(RESNET_LIKE)
    assert cell == ("nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "none")
    assert cell.to_str() == SPACE.format(cell) == RESNET_LIKE


def test_parse_inputs_in_any_order():
    shuffled = "|nor_conv_3x3~0|+|nor_conv_3x3~1|none~0|+|none~2|skip_connect~0|none~1|"
    assert SPACE.parse(shuffled) == SPACE.parse(RESNET_LIKE)
    assert SPACE.parse("  " + RESNET_LIKE + "\n") == SPACE.parse(RESNET_LIKE)


@pytest.mark.parametrize("form", ["(4, 3, 3, 0, 0, 0)", "4,3,3,0,0,0", "[4, 3, 3, 0, 0, 0]",
                                  "(4, 3, 3, 0, 0, 0,)", "0", 0, np.int64(0)])
def test_parse_naslib_text_and_index(form):
    assert SPACE.parse(form).to_str() == INDEX0


def test_parse_cell_and_op_sequences():
    cell = SPACE.parse(RESNET_LIKE)
    assert SPACE.parse(cell) == cell
    assert SPACE.parse(list(cell)) == cell
    assert SPACE.parse(tuple(cell)) == cell
    assert SPACE.format(list(cell)) == RESNET_LIKE


def test_naslib_indices_example():
    assert SPACE.parse(INDEX0).naslib_indices == (4, 3, 3, 0, 0, 0)
    # NASLib: 1 = none, 2 = conv3x3, 0 = skip; edges 0-1, 0-2, 0-3, 1-2, 1-3, 2-3
    assert SPACE.parse(RESNET_LIKE).naslib_indices == (2, 1, 0, 2, 1, 1)


def test_naslib_round_trip_all_cells():
    for cell in SPACE.enumerate():
        assert SPACE.parse(str(cell.naslib_indices)) == cell


# --- the official index -------------------------------------------------------------------------

def test_known_indices():
    assert SPACE.index_of(RESNET_LIKE) == 1601
    assert SPACE.index_of(ALL_CONV3) == 1462
    assert SPACE.index_of(ALL_NONE) == 1651
    assert SPACE.from_index(0).to_str() == INDEX0
    assert SPACE.parse("1601") == SPACE.parse(RESNET_LIKE)


def test_index_is_a_bijection():
    indices = [cell.index for cell in SPACE.enumerate()]
    assert sorted(indices) == list(range(15625))
    assert all(SPACE.from_index(i) == cell for i, cell in zip(indices, SPACE.enumerate()))


def test_index_matches_global_random_shuffle():
    """NB201's generator shuffles with the module-level random; ours uses a private instance."""
    state = random.getstate()
    try:
        strings = [Cell(*ops).to_str() for ops in itertools.product(OPS, repeat=6)]
        random.seed(88)
        random.shuffle(strings)
    finally:
        random.setstate(state)
    assert [SPACE.from_index(i).to_str() for i in range(15625)] == strings


@pytest.mark.realdata
def test_every_row_against_ground_truth(ground_truth):
    assert len(ground_truth) == 15625
    for row in ground_truth:
        cell = SPACE.parse(row["arch_str"])
        assert cell.to_str() == row["arch_str"]
        assert cell.index == int(row["nb201_index"])
        assert str(cell.naslib_indices) == row["naslib_op_indices"]


@pytest.mark.realdata
def test_param_counts_against_ground_truth(ground_truth):
    """199 rows hold a fraction of a parameter: means over 3 seeds where one seed's record has a
    conv edge more or fewer (off by 28000/3 or 243040/3), a benchmark-data quirk; only rows
    with a whole count are compared."""
    millions = {int(row["nb201_index"]): float(row["params_M_cifar10"]) for row in ground_truth}
    exact = {i: round(m, 6) for i, m in millions.items() if abs(m * 1e6 - round(m * 1e6)) < 1e-3}
    assert len(exact) > 0.98 * len(ground_truth)
    chosen = random.Random(0).sample(sorted(exact), 300) + [1651, 1462, 1601]
    for index in chosen:
        net = SPACE.build(SPACE.from_index(index))
        assert round(n_params(net) / 1e6, 6) == exact[index], index


# --- sampling -------------------------------------------------------------------------------------

def test_sample_distinct_and_reproducible():
    first = SPACE.sample(500, seed=3)
    assert len(set(first)) == 500
    assert SPACE.sample(500, seed=3) == first
    assert SPACE.sample(500, seed=4) != first
    assert set(SPACE.sample(15625)) == set(SPACE.enumerate())
    assert SPACE.sample(0) == []
    with pytest.raises(LswagError):
        SPACE.sample(15626)


# --- connectivity --------------------------------------------------------------------------------

def _reaches_output(cell: Cell) -> bool:
    """Independent check: some path 0 -> ... -> 3 has no 'none' edge."""
    op = {edge: name for edge, name in zip(EDGES, cell)}
    paths = [(0, 3), (0, 1, 3), (0, 2, 3), (0, 1, 2, 3)]
    return any(all(op[(a, b)] != "none" for a, b in zip(p, p[1:])) for p in paths)


def test_is_connected():
    assert not ALL_NONE.is_connected
    assert SPACE.parse(RESNET_LIKE).is_connected
    assert not SPACE.parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|").is_connected
    cells = list(SPACE.enumerate())
    assert [c.is_connected for c in cells] == [_reaches_output(c) for c in cells]
    assert sum(c.is_connected for c in cells) == sum(map(_reaches_output, cells))


# --- networks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", [RESNET_LIKE, ALL_NONE, ALL_CONV3, INDEX0])
def test_forward_shape(arch):
    net = SPACE.build(arch, num_classes=7, seed=0, C=4, N=1)
    logits = net(torch.randn(2, 3, 8, 8))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 7)
    assert net.arch == SPACE.parse(arch)
    assert SPACE.build(arch, C=4, N=1)(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_module_layout():
    net = SPACE.build(RESNET_LIKE, C=4, N=2)
    names = dict(net.named_modules())
    assert len(net.cells) == 3 * 2 + 2
    assert isinstance(names["cells.0.edges.0.conv"], torch.nn.Conv2d)
    assert isinstance(names["cells.2.shortcut.conv"], torch.nn.Conv2d)
    assert not any(isinstance(m, torch.nn.ReLU) and m.inplace for m in net.modules())


@pytest.mark.parametrize("C,N", [(4, 1), (8, 2), (16, 5)])
def test_param_count_formula(C, N):
    """Each conv edge adds its conv+BN once per cell of each stage (widths C, 2C, 4C)."""
    base = n_params(SPACE.build(ALL_NONE, C=C, N=N))
    assert base == n_params(SPACE.build(ALL_NONE, C=C, N=N + 1))
    widths = (C, 2 * C, 4 * C)
    per_edge = {k: N * sum(k * k * w * w + 2 * w for w in widths) for k in (1, 3)}
    cell = SPACE.parse(INDEX0)  # two 1x1 convs, no 3x3
    assert n_params(SPACE.build(cell, C=C, N=N)) == base + 2 * per_edge[1]
    assert n_params(SPACE.build(ALL_CONV3, C=C, N=N)) == base + 6 * per_edge[3]
    more_classes = n_params(SPACE.build(ALL_NONE, num_classes=100, C=C, N=N))
    assert more_classes - base == 90 * (4 * C + 1)


def test_seeded_build_is_deterministic_and_leaves_rng_alone():
    state = torch.random.get_rng_state()
    a = SPACE.build(RESNET_LIKE, seed=5, C=4, N=1).state_dict()
    b = SPACE.build(RESNET_LIKE, seed=5, C=4, N=1).state_dict()
    c = SPACE.build(RESNET_LIKE, seed=6, C=4, N=1).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    SPACE.build(RESNET_LIKE, C=4, N=1)
    assert not torch.equal(torch.random.get_rng_state(), state)


# --- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,needle", [
    ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "nor_conv_3x3"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "inputs 0 and 1 exactly once"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "inputs 0 and 1 exactly once"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~3|", "inputs 0, 1 and 2 exactly once"),
    ("|none~0|+|none~0|none~1|", "separated by '+'"),
    ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "op~source"),
    ("|none~x|+|none~0|none~1|+|none~0|none~1|none~2|", "op~source"),
    ("(4, 3, 3, 0, 0)", "0 skip_connect"),
    ("(4, 3, 3, 0, 0, 5)", "out of range 0..4"),
    ("(4, 3, a, 0, 0, 0)", "0 skip_connect"),
    ("20000", "out of range 0..15624"),
    ("-1", "out of range 0..15624"),
    (15625, "out of range 0..15624"),
    ("resnet\nlike", "arch string"),
    ("", "arch string"),
    (["none"] * 5, "none, skip_connect"),
    ((4, 3, 3, 0, 0, 0), "op names"),
    (["none"] * 5 + ["conv"], "none, skip_connect"),
    (1.5, "float"),
])
def test_malformed_inputs(bad, needle):
    with pytest.raises(LswagError) as info:
        SPACE.parse(bad)
    message = str(info.value)
    assert "\n" not in message
    assert needle in message


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"C": 0}, {"N": -1}, {"C": 2.5}])
def test_bad_build_options(kwargs):
    with pytest.raises(LswagError):
        SPACE.build(RESNET_LIKE, **kwargs)


def test_nb201_networks_are_scored_channels_last_on_cpu(monkeypatch):
    """The harness scores NB201 in the layout measured faster on CPU; a caller's choice wins."""
    from lswag import probe
    from lswag.data import load_batch
    from lswag.engine import score_architecture
    from lswag.settings import Scoring

    layouts = []
    record = probe.record
    monkeypatch.setattr(probe, "record", lambda *args, **kwargs: layouts.append(kwargs["memory_format"])
                        or record(*args, **kwargs))
    batch = load_batch("digits", batch_size=8, image_size=8)
    tiny = {"C": 4, "N": 1}
    setup = Scoring("nb201", ("nwot",), build=tiny)
    _, results = score_architecture(setup, 0, batch=batch)
    _, again = score_architecture(setup, 0, batch=batch, memory_format=torch.contiguous_format)
    assert layouts == [torch.channels_last, torch.contiguous_format]
    assert results[0].value == pytest.approx(again[0].value, rel=1e-6)
    assert SPACE.channels_last_on_cpu and not spaces.get("tnb101_micro").channels_last_on_cpu
