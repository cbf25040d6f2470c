"""ViT-Bench-101's table through the commands a user runs: bench, libra and search read it as given.

The subnets are the benchmark's own (full width and depth), probed at 32x32 (4 patches) on a batch
of 4, so each costs about a second; the real table and CIFAR-100 images come from ``../shared``.
"""
from __future__ import annotations

import csv
import json

import pytest

from lswag import spaces
from lswag.settings import Scoring
from lswag.cli import main
from lswag.store import Store

from conftest import shared_file

pytestmark = [pytest.mark.realdata, pytest.mark.usefixtures("one_torch_thread")]

TABLE = "benchmarks/vitbench101_autoformer/vitbench101_autoformer_ti.csv"
IMAGES = "images/cifar100_sample.npz"
SMALL = ("--image-size", "32", "--batch-size", "4", "--device", "cpu", "--seed", "0")


def run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return captured.out


def small_table(tmp_path, rows: int, blank: dict[int, str] | None = None):
    """The first ``rows`` rows of the real table, with the cells ``{row: column}`` emptied."""
    with shared_file(TABLE).open(newline="") as f:
        reader = csv.DictReader(f)
        kept = [row for _, row in zip(range(rows), reader)]
        fields = reader.fieldnames
    for index, column in (blank or {}).items():
        kept[index][column] = ""
    path = tmp_path / "vit.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(kept)
    return path, kept


def test_bench_reads_the_table_as_given_skips_empty_cells_and_resumes(tmp_path, capsys):
    table, rows = small_table(tmp_path, 6, blank={2: "flower_kd_acc"})
    store = tmp_path / "vit.sqlite"
    common = ("bench", "--space", "vitbench101-autoformer", "--truth", str(table), "--n", "6",
              "--proxies", "l_swag,params", "--data", f"npz:{shared_file(IMAGES)}", "--store", str(store), *SMALL)
    out = run(capsys, *common, "--metric", "c100_kd_acc")
    assert "6 architectures vs c100_kd_acc" in out and "left out" not in out
    with Store(store, "vitbench101-autoformer") as db:
        stored = db.count()
    assert stored == 12                    # 6 subnets x 2 proxies
    # another column of the same table: one row lacks it, so 5 subnets, all read from the store
    out = run(capsys, *common, "--metric", "flower_kd_acc")
    assert "5 architectures vs flower_kd_acc" in out
    assert "1 rows of" in out and "have no flower_kd_acc (empty, NaN or the failure sentinel) and are left out" in out
    with Store(store, "vitbench101-autoformer") as db:
        assert db.count() == stored       # nothing recomputed
    # the parameter counts the bench stored are the benchmark network's, in millions
    with Store(store, "vitbench101-autoformer") as db:
        values = sorted(r.value for r in db.results("params", params_settings()).values())
    space = spaces.get("vitbench101-autoformer")
    expected = sorted(space.params(row["arch_json"], image_size=32) / 1e6 for row in rows)
    assert values == pytest.approx(expected)


def params_settings() -> dict:
    """The store key of the params results of the bench above."""
    setup = Scoring("vitbench101-autoformer", ("params",), data=f"npz:{shared_file(IMAGES)}", batch_size=4,
                    image_size=32, device="cpu")
    return setup.store_keys()["params"]


def test_libra_and_search_take_the_table_and_a_bench_store(tmp_path, capsys):
    table, rows = small_table(tmp_path, 8)
    store = tmp_path / "vit.sqlite"
    run(capsys, "bench", "--space", "vitbench101-autoformer", "--truth", str(table), "--metric", "c100_kd_acc",
        "--n", "8", "--proxies", "l_swag,nwot,params,flops", "--data", f"npz:{shared_file(IMAGES)}",
        "--store", str(store), *SMALL)
    out = run(capsys, "libra", "--scores", str(store), "--truth", str(table), "--metric", "c100_base_acc",
              "--calibration", "4", "--splits", "2")
    assert "LIBRA" in out and "held-out" in out
    result = tmp_path / "found.json"
    out = run(capsys, "search", "--space", "vitbench101-autoformer", "--strategy", "random", "--evaluations", "4",
              "--fitness", "l_swag", "--truth", str(table), "--metric", "c100_kd_acc,flower_kd_acc",
              "--data", f"npz:{shared_file(IMAGES)}", "--store", str(store), "--out", str(result), *SMALL[:-2])
    found = json.loads(result.read_text())
    assert found["space"] == "vitbench101-autoformer"
    accuracy = {json.dumps(json.loads(r["arch_json"]), sort_keys=True): float(r["c100_kd_acc"]) for r in rows}
    space = spaces.get("vitbench101-autoformer")
    by_text = {space.format(text): value for text, value in accuracy.items()}
    assert f"c100_kd_acc: {by_text[found['arch']]:.2f}" in out
