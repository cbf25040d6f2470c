"""TransNAS-Bench-101 micro and macro spaces: arch strings, sizes, task heads, parameter counts."""
from __future__ import annotations

import csv
import random

import pytest
import torch

import lswag
from lswag.errors import LswagError
from lswag.spaces.tnb101 import TASKS

from conftest import shared_file, zoo_failures

MICRO = lswag.spaces.get("tnb101_micro")
MACRO = lswag.spaces.get("tnb101_macro")


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_spaces_have_the_benchmarks_sizes():
    assert MICRO.size() == len(set(MICRO.enumerate())) == 4096
    assert MACRO.size() == len(set(MACRO.enumerate())) == 3256          # TransNAS-Bench-101's 3,256


def test_forms_and_errors():
    assert MICRO.parse((1, 0, 0, 2, 1, 0)) == MICRO.parse("(1, 0, 0, 2, 1, 0)") == "64-41414-1_00_210"
    assert MACRO.parse("(1, 2, 4, 2, 0, 0)") == "64-1242-basic"
    for space, bad, words in [
        (MICRO, "64-41414-4_00_210", "each op in 0 none, 1 skip"),
        (MICRO, "64-41114-1_00_210", "must be '64-41414-a_bc_def'"),
        (MACRO, "64-1111-basic", "not a valid macro skeleton"),        # no downsampling
        (MACRO, "64-4444444-basic", "not a valid macro skeleton"),     # 7 modules
        (MACRO, "resnet", "expected '64-1234-basic'"),
    ]:
        with pytest.raises(LswagError, match=words):
            space.parse(bad)
    with pytest.raises(LswagError, match="unknown TransNAS-Bench-101 task 'depth'"):
        MICRO.build("64-41414-1_00_210", task="depth")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_head_gives_its_output_shape(task):
    model = MICRO.build("64-41414-1_00_213", task=task, seed=0)
    x = torch.randn(2, 9, 3, 32, 32) if task == "jigsaw" else torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    expected = {"class_object": (2, 100), "class_scene": (2, 63), "room_layout": (2, 9), "jigsaw": (2, 1000),
                "segmentsemantic": (2, 17, 64, 64), "autoencoder": (2, 3, 64, 64), "normal": (2, 3, 64, 64)}
    assert tuple(out.shape) == expected[task]
    assert TASKS[task].loss in lswag.losses.LOSSES
    if task in ("autoencoder", "normal"):
        assert out.abs().max() <= 1                                    # Tanh
    assert tuple(TASKS[task].input_shape) == ((9, 3, 64, 64) if task == "jigsaw" else (3, 256, 256))


def test_macro_shortcut_batchnorm_keeps_the_benchmarks_eps_and_momentum():
    model = MACRO.build("64-1242-basic", task="class_scene")
    shortcut = model.encoder.layers[1][0].downsample[1]                 # digit 2 doubles the channels
    assert shortcut.eps == 1.0 and shortcut.momentum == 1.0
    fixed = MACRO.build("64-1242-basic", task="class_scene", bn_compat=False).encoder.layers[1][0].downsample[1]
    assert fixed.eps == 1e-5 and fixed.momentum == 0.1


def test_search_moves_stay_valid():
    rng = random.Random(0)
    for space in (MICRO, MACRO):
        archs = space.sample(20, seed=1)
        assert len(set(archs)) == 20
        for a, b in zip(archs, archs[1:]):
            child = space.mutate(a, rng)
            assert space.parse(child) == child != a
            assert space.parse(space.crossover(a, b, rng))


def test_the_zoo_scores_a_room_layout_network_with_its_loss():
    model = MICRO.build("64-41414-1_00_213", task="room_layout", seed=0)
    failed = zoo_failures(model, lambda generator, batch: torch.randn(batch, 9, generator=generator), 9, batch=4,
                          loss_fn=TASKS["room_layout"].loss)
    assert set(failed) == {"epe_nas"} and "integer class label" in failed["epe_nas"]   # a regression task


@pytest.mark.realdata
@pytest.mark.parametrize("kind", ["micro", "macro"])
def test_every_ground_truth_row_parses_and_params_equal_suite_zero(kind):
    space = MICRO if kind == "micro" else MACRO
    with open(shared_file(f"benchmarks/transnasbench101_{kind}/tnb101_{kind}_groundtruth_wide.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == space.size()
    assert all(space.parse(r["arch_str"]) == space.parse(r["naslib_op_indices"]) == r["arch_str"] for r in rows)
    with open(shared_file(f"benchmarks/transnasbench101_{kind}/tnb101_{kind}_suite0_partial_13proxies.csv")) as f:
        scored = list(csv.DictReader(f))
    by_task = {}
    for row in scored:
        by_task.setdefault(row["task"], []).append(row)
    assert set(by_task) == set(TASKS)
    for task, task_rows in by_task.items():                           # Suite-Zero's params: no discriminator
        for row in random.Random(0).sample(task_rows, 2):
            assert numel(space.build(row["arch_str"], task=task)) == round(float(row["params"]) * 1e6), (task, row)
