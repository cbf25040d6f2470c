"""The embedded mini-benchmark (make-bench, the shipped table) and ``lswag demo`` on it."""
from __future__ import annotations

import csv
import dataclasses
import shutil
import statistics

import numpy as np
import pytest

from lswag import minibench, spaces
from lswag.truth import load_truth
from lswag.data import load_dataset
from lswag.demo import run_demo
from lswag.errors import LswagError
from lswag.train import train

NB201 = spaces.get("nb201")


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_make_bench_appends_each_cell_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(minibench, "RECIPE", dataclasses.replace(minibench.RECIPE, epochs=1, batch_size=256))
    out = tmp_path / "mini.csv"
    minibench.make_bench(out, n=1, seed=7, progress=False)
    first = rows_of(out)
    minibench.make_bench(out, n=2, seed=7, progress=False)       # the 2-cell sample starts with the 1-cell one
    rows = rows_of(out)
    assert len(rows) == 2 and rows[0] == first[0] and list(rows[0]) == minibench.COLUMNS
    for row in rows:
        seeds = [float(row[f"test_acc_seed{s}"]) for s in minibench.SEEDS]
        assert float(row["test_acc"]) == pytest.approx(statistics.fmean(seeds), abs=1e-3)
        assert int(row["index"]) == NB201.index_of(row["arch_str"])
    meta = minibench.load_metadata(out)
    assert meta["cells"] == 2 and meta["build"] == minibench.BUILD and meta["recipe"]["epochs"] == minibench.RECIPE.epochs
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LswagError, match="is not a mini-benchmark table"):
        minibench.make_bench(tmp_path / "other.csv", n=1)


def shipped_rows():
    if not minibench.TABLE.exists():
        pytest.fail(f"the mini-benchmark table {minibench.TABLE} is missing from the package")
    return rows_of(minibench.TABLE)


def test_shipped_table_is_what_its_recipe_produces():
    rows, meta = shipped_rows(), minibench.load_metadata()
    assert meta["cells"] == len(rows) >= 300 and meta["build"] == minibench.BUILD
    assert meta["recipe"] == {k: v for k, v in minibench.RECIPE.__dict__.items() if k != "seed"}
    truth = load_truth(minibench.TABLE, metric=minibench.METRIC)
    assert len(truth) == len(rows)                                  # every row parses, no cell twice
    accuracy = np.array([float(r["test_acc"]) for r in rows])
    assert 0 <= accuracy.min() and accuracy.max() <= 100 and accuracy.std() > 5   # spread enough to rank
    for row in rows[:5]:
        model = NB201.build(row["arch_str"], num_classes=10, **minibench.BUILD)
        assert sum(p.numel() for p in model.parameters()) == int(row["params"])


@pytest.mark.slow
def test_a_shipped_accuracy_is_reproduced_by_retraining():
    row = max(shipped_rows()[:20], key=lambda r: float(r["test_acc_seed0"]))
    model = NB201.build(row["arch_str"], num_classes=10, seed=0, **minibench.BUILD)
    sets = [load_dataset(minibench.DATA, split, image_size=minibench.IMAGE_SIZE) for split in ("train", "test")]
    result = train(model, *sets, minibench.RECIPE, device="cpu", progress=False)
    # bit-identical on one machine; thread counts may move a few of the 359 test images
    assert result.test_accuracy == pytest.approx(float(row["test_acc_seed0"]), abs=2.0)


@pytest.mark.slow
def test_demo_runs_the_whole_loop_on_a_small_table(tmp_path):
    rows = shipped_rows()[:24]
    table = tmp_path / "small.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=minibench.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(minibench.metadata_path(minibench.TABLE), minibench.metadata_path(table))
    report = run_demo(tmp_path / "out", table=table, proxies=("l_swag", "nwot", "params", "l2_norm"),
                      population=4, generations=2, calibration=8, workers=1, progress=False)
    accuracy = {r["arch_str"]: float(r["test_acc"]) for r in rows}
    assert report.cells == 24 and {r.proxy for r in report.correlations} == {"l_swag", "nwot", "params", "l2_norm"}
    assert report.libra.result("LIBRA").held_out == report.libra.result("LIBRA").held_out   # computed, not NaN
    for result in report.searches:
        assert result.arch in accuracy and result.truth["test_acc"] == pytest.approx(accuracy[result.arch])
        assert report.ranks[f"{result.strategy} {result.fitness}"] == 1 + sum(
            v > accuracy[result.arch] for v in accuracy.values())
    for name in ("correlations.csv", "heatmap.png", "libra.csv", "libra.png", "search-evolution-l_swag.json"):
        assert (tmp_path / "out" / name).exists(), name
