"""TransNAS-Bench-101 micro and macro spaces: arch strings, sizes, task heads, parameter counts."""
from __future__ import annotations

import csv
import random

import pytest
import torch

import lswag
from lswag.data import Batch
from lswag.engine import score_architecture
from lswag.settings import Scoring
from lswag.errors import LswagError
from lswag.spaces import tnb101
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


# --- task batches: the images as each task's inputs and targets ---------------------------------

def image_batch(size: int = 32, batch: int = 4, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(batch, 3, size, size, generator=generator), torch.tensor([5, 70, 130, 62])[:batch],
                 200, "test")


def test_class_targets_are_one_hot_labels_modulo_the_tasks_classes():
    for task in ("class_object", "class_scene"):
        prepared = MICRO.prepare(image_batch(), task=task)
        classes = TASKS[task].outputs
        assert prepared.num_classes == classes and prepared.y.shape == (4, classes)
        assert torch.equal(prepared.y.argmax(dim=1), torch.tensor([5, 70, 130, 62]) % classes)
        assert torch.equal(prepared.y.sum(dim=1), torch.ones(4))


def test_jigsaw_tiles_are_the_grid_cells_centres_in_the_permutation_the_target_names():
    batch = image_batch(size=48)
    prepared = MICRO.prepare(batch, seed=3, task="jigsaw")
    assert prepared.x.shape == (4, 9, 3, 12, 12) and prepared.num_classes == 1000
    permutations = tnb101._jigsaw_permutations(1000, 3)
    assert len({tuple(p) for p in permutations.tolist()}) == 1000
    for sample in range(4):
        order = permutations[prepared.y[sample]].tolist()
        for slot, cell in enumerate(order):                      # slot shows grid cell `cell` (16 px cells)
            row, col = divmod(cell, 3)
            expected = batch.x[sample, :, 16 * row + 2:16 * row + 14, 16 * col + 2:16 * col + 14]
            assert torch.equal(prepared.x[sample, slot], expected)
    assert torch.equal(MICRO.prepare(batch, seed=3, task="jigsaw").y, prepared.y)


def test_dense_targets():
    batch = image_batch()
    luminance = batch.x.mean(dim=1)
    segments = MICRO.prepare(batch, task="segmentsemantic").y
    assert segments.shape == (4, 32, 32) and segments.min() == 0 and segments.max() == 16
    for image in range(4):            # classes are luminance quantiles: monotone, 1024/17 pixels each
        order = luminance[image].flatten().argsort()
        assert torch.all(segments[image].flatten()[order].diff() >= 0)
        assert segments[image].flatten().bincount().tolist() == [(1024 * (c + 1) + 16) // 17 - (1024 * c + 16) // 17
                                                                 for c in range(17)]
    autoencoder = MICRO.prepare(batch, task="autoencoder").y
    assert torch.allclose(autoencoder.amin(dim=(1, 2, 3)), -torch.ones(4))
    assert torch.allclose(autoencoder.amax(dim=(1, 2, 3)), torch.ones(4))
    ramp = torch.arange(32.0).repeat(4, 3, 32, 1) * 0.5               # luminance rises 0.5 per column
    normals = MICRO.prepare(Batch(ramp, batch.y, 200, "ramp"), task="normal").y
    assert torch.allclose(normals[:, :, 5, 5], torch.tensor([-0.5, 0.0, 1.0]).repeat(4, 1) / 1.25 ** 0.5)
    room = MICRO.prepare(batch, seed=1, task="room_layout").y
    assert room.shape == (4, 9) and not torch.equal(room, MICRO.prepare(batch, seed=2, task="room_layout").y)


def test_a_dense_task_needs_an_input_its_deepest_encoder_divides():
    # 4 halving modules after the stem's /4: 64-3334-basic's decoder output is 64x64 only from a multiple of 64
    assert (MICRO.dense_input_multiple, MACRO.dense_input_multiple) == (32, 64)
    network = MACRO.build("64-3334-basic", task="normal").eval()
    with torch.no_grad():
        assert network(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
        assert network(torch.zeros(1, 3, 96, 96)).shape != (1, 3, 96, 96)
    with pytest.raises(LswagError, match=r"tnb101_macro normal needs an input side that is a multiple of 64.*got 96x96"):
        MACRO.prepare(image_batch(size=96), task="normal")
    assert MICRO.prepare(image_batch(size=96), task="normal").y.shape == (4, 3, 96, 96)
    assert MACRO.prepare(image_batch(size=48), task="class_scene").num_classes == 63   # pooled heads take any size


@pytest.mark.parametrize("task", ["jigsaw", "segmentsemantic", "normal"])
def test_a_task_network_is_scored_on_its_own_batch_and_loss(task):
    batch = image_batch(size=64)     # a macro encoder's stride is up to 64
    _, results = score_architecture(Scoring("tnb101_macro", ("l_swag", "params"), build={"task": task}),
                                    "64-1234-basic", batch=batch)
    assert not any(r.failed for r in results)
    assert results[1].value == numel(MACRO.build("64-1234-basic", task=task)) / 1e6
    with pytest.raises(LswagError, match="unknown build option 'tsk'.*valid: task, discriminator, bn_compat"):
        score_architecture(Scoring("tnb101_macro", ("params",), build={"tsk": task}), "64-1234-basic", batch=batch)


@pytest.mark.slow
def test_the_layer_analysis_probes_a_task_network_as_bench_scores_it(tmp_path):
    from lswag.bench import BenchConfig, run_bench
    from lswag.settings import TruthSource
    from lswag.layers import analyse_layers

    truth = tmp_path / "truth.csv"
    cells = [MICRO.format(c) for c in MICRO.sample(6, seed=1)]
    with open(truth, "w", newline="") as f:
        csv.writer(f).writerows([["arch_str", "normal"]] + [[cell, 50.0 + i * (-1) ** i] for i, cell in enumerate(cells)])
    setup = Scoring("tnb101_micro", ("l_swag",), seed=0, batch_size=4, image_size=32, build={"task": "normal"},
                    options={"l_swag": {"window": (1, 10)}})
    source = TruthSource(str(truth), "normal")
    analysis = analyse_layers(setup, n=6, truth=source, progress=False)
    reports = run_bench(BenchConfig(setup, source, n=6), tmp_path / "s.sqlite", progress=False)
    assert analysis.rho_window[(1, 10)] == pytest.approx(reports[0].correlation.spearman, abs=1e-12)
    assert reports[0].correlation.failures == 0
