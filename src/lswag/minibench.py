"""The embedded mini-benchmark: NB201 cells trained on scikit-learn's digits, shipped with lswag.

A real ground truth that needs no download, so that ``lswag demo`` can show the whole loop
(score, correlate, LIBRA, search, look the result up) on a fresh machine. It is small on
purpose, and it is *not* NAS-Bench-201: the cells are built at reduced size (``C=8``, one cell
per stage, :data:`BUILD`) and trained for two epochs on the 8×8 digits (:data:`RECIPE`), three
seeds each, so that a 500-cell table trains in about an hour on two CPU cores. The schedule was
chosen on 20 cells against one epoch (bigger cells lose: Spearman of #params with accuracy
−0.29) and five or more (every cell reaches 97–99%, seeds decide the ranking): two epochs at
batch 32 gave #params ρ +0.39 and a seed-to-seed ρ of 0.56 for single runs, hence three seeds.

``lswag make-bench`` writes the table (:func:`make_bench`): one CSV row per cell, appended the
moment the cell's seeds are trained, so an interrupted run resumes where it stopped; and a JSON
file beside it with the recipe, the command, the versions and the wall time.
:data:`TABLE` is the copy shipped in the package.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from lswag import __version__, spaces
from lswag.data import load_dataset
from lswag.errors import LswagError
from lswag.settings import check_output
from lswag.spaces import check_int
from lswag.train import Recipe, train

SPACE = "nb201"
#: the reduced network the mini-benchmark trains (and that proxies score it with)
BUILD = {"C": 8, "N": 1}
DATA = "digits"
IMAGE_SIZE = 8
RECIPE = Recipe(optimizer="sgd", epochs=2, batch_size=32, lr=0.05)
SEEDS = (0, 1, 2)
METRIC = "test_acc"
#: the table shipped with lswag
TABLE = Path(__file__).with_name("resources") / "nb201_digits.csv"
COLUMNS = ["arch_str", "index", "params", *(f"test_acc_seed{s}" for s in SEEDS), METRIC, "train_seconds"]


def metadata_path(table: str | Path) -> Path:
    return Path(table).with_suffix(".json")


def make_bench(out: str | Path, n: int = 500, seed: int = 0, *, command: str = "", progress: bool = True) -> Path:
    """Train ``n`` NB201 cells (a seeded sample) with :data:`RECIPE` for each of :data:`SEEDS`
    and append their test accuracies to the CSV ``out``; cells already in ``out`` are skipped."""
    n = check_int(n, "mini-benchmark size", 1, spaces.get(SPACE).size())
    check_output(out, folder=False)
    space, out = spaces.get(SPACE), Path(out)
    train_set = load_dataset(DATA, "train", image_size=IMAGE_SIZE)
    test_set = load_dataset(DATA, "test", image_size=IMAGE_SIZE)
    done = set()
    if out.exists():
        with out.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != COLUMNS:
                raise LswagError(f"{out} is not a mini-benchmark table (columns {', '.join(COLUMNS)}); "
                                 "choose another --out")
            done = {row["arch_str"] for row in reader}
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
    cells = [space.format(c) for c in space.sample(n, seed=seed)]
    start = time.perf_counter()
    for arch in tqdm([c for c in cells if c not in done], desc="training NB201 cells on digits", unit="cell",
                     initial=len(done & set(cells)), total=n, disable=not progress):
        began, accuracies = time.perf_counter(), []
        for train_seed in SEEDS:
            model = space.build(arch, num_classes=10, seed=train_seed, **BUILD)
            recipe = dataclasses.replace(RECIPE, seed=train_seed)
            accuracies.append(train(model, train_set, test_set, recipe, device="cpu", progress=False).test_accuracy)
        params = sum(p.numel() for p in space.build(arch, num_classes=10, **BUILD).parameters())
        with out.open("a", newline="") as f:   # one row per cell, appended at once: nothing finished is lost
            csv.writer(f).writerow([arch, space.index_of(arch), params, *(f"{a:.4f}" for a in accuracies),
                                    f"{statistics.fmean(accuracies):.4f}", f"{time.perf_counter() - began:.2f}"])
    _write_metadata(out, n, seed, command, time.perf_counter() - start)
    return out


def _write_metadata(out: Path, n: int, seed: int, command: str, seconds: float) -> None:
    path = metadata_path(out)
    previous = json.loads(path.read_text()) if path.exists() else {}
    meta: dict[str, Any] = {
        "space": SPACE, "build": BUILD, "data": DATA, "image_size": IMAGE_SIZE, "split": "lswag.data.load_dataset",
        "recipe": {k: v for k, v in dataclasses.asdict(RECIPE).items() if k != "seed"}, "seeds": list(SEEDS),
        "metric": METRIC, "cells": n, "sample_seed": seed, "command": command or previous.get("command", ""),
        "lswag": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "wall_seconds": round(previous.get("wall_seconds", 0.0) + seconds, 1),
    }
    path.write_text(json.dumps(meta, indent=2) + "\n")


def load_metadata(table: str | Path = TABLE) -> dict[str, Any]:
    """The recipe and provenance written beside a mini-benchmark ``table``."""
    if not Path(table).is_file():
        raise LswagError(f"{table} is not a mini-benchmark table (a CSV file written by lswag make-bench)")
    path = metadata_path(table)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LswagError(f"mini-benchmark metadata not found: {path} (written by lswag make-bench)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LswagError(f"cannot read mini-benchmark metadata {path}: {error}") from None
