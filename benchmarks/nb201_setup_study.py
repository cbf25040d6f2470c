"""How the probe's set-up moves L-SWAG and its closest rivals on real NB201 truth.

The paper leaves the probe's set-up open (METHOD.md §1): initialisation, BatchNorm mode,
batch source and size, number of gradient draws. This script scores the same cells (the first
``--n`` of ``lswag bench``'s seeded sample) under each set-up and prints Spearman ρ of l_swag
(NB201 window [4,7] and all layers), zico, nwot and swap, so a gap to the paper can be traced
to a set-up choice. Rows go to ``--out`` as computed (one CSV, a column per set-up and proxy);
a rerun resumes.

    python benchmarks/nb201_setup_study.py --n 200 --out runs/setup_c100.csv

Set-ups: ``default`` (the builder's PyTorch init, BN on batch statistics, the real image batch,
B = 64, M = 2), ``kaiming`` and ``normal`` (weights redrawn, lswag.probe.initialise),
``bn_running`` (BatchNorm on its running statistics, which at initialisation is the identity:
the BN modules are replaced by nn.Identity), ``gaussian`` (N(0,1) inputs instead of images),
``batch32`` / ``batch128`` and ``draws4`` (M = 4 chunks of 16).
"""
from __future__ import annotations

import argparse
import copy
import csv
from pathlib import Path

import torch
import torch.nn as nn
from scipy.stats import spearmanr
from tqdm import tqdm

import lswag
from lswag import probe
from lswag import proxies as registry
from lswag.truth import load_truth
from lswag.engine import sample_archs
from lswag.proxies import Failure
from lswag_options import append_row, open_rows

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRUTH = SHARED / "benchmarks/nasbench201/nb201_groundtruth.csv"
SETUPS = ("default", "kaiming", "normal", "bn_running", "gaussian", "batch32", "batch128", "draws4")
# column -> (proxy, options)
PROXIES = {"l_swag": ("l_swag", {"window": (4, 7)}), "l_swag_all": ("l_swag", {"window": (1, 10)}),
           "zico": ("zico", {}), "nwot": ("nwot", {}), "swap": ("swap", {})}


def without_batchnorm(model: nn.Module) -> nn.Module:
    """BN on running statistics at initialisation (mean 0, var 1, affine 1/0) is the identity."""
    clone = copy.deepcopy(model)
    for parent in clone.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())
    return clone


def setup_scores(setup, arch, space, batches, seed):
    batch = batches[{"gaussian": "gaussian", "batch32": "b32", "batch128": "b128"}.get(setup, "images")]
    model = space.build(arch, num_classes=batch.num_classes, seed=seed)
    if setup in ("kaiming", "normal"):
        probe.initialise(model, setup, seed)
    if setup == "bn_running":
        model = without_batchnorm(model)
    needs = set().union(*(registry.get(p).needs for p, _ in PROXIES.values()))
    record = probe.record(model, batch, needs, gradient_draws=4 if setup == "draws4" else 2)
    return {column: registry.compute(name, record, model, **options)[0] for column, (name, options) in PROXIES.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--truth", type=Path, default=TRUTH)
    parser.add_argument("--metric", default="cifar100_test_acc_200ep")
    parser.add_argument("--data", default=f"npz:{SHARED / 'images/cifar100_sample.npz'}")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    setups = args.setups.split(",")
    unknown = set(setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown set-up {sorted(unknown)[0]!r}; valid: {', '.join(SETUPS)}")

    space = lswag.spaces.get("nb201")
    truth = load_truth(args.truth, space="nb201", metric=args.metric)
    size = (args.image_size, args.image_size)
    images = lswag.load_batch(args.data, batch_size=64, seed=args.seed, image_size=size)
    batches = {"images": images,
               "gaussian": lswag.load_batch("gaussian", batch_size=64, seed=args.seed, image_size=size,
                                            num_classes=images.num_classes),
               "b32": lswag.load_batch(args.data, batch_size=32, seed=args.seed, image_size=size),
               "b128": lswag.load_batch(args.data, batch_size=128, seed=args.seed, image_size=size)}
    columns = ["arch", "truth"] + [f"{s}:{p}" for s in setups for p in PROXIES]
    done = open_rows(args.out, columns)
    for arch in tqdm(sample_archs(truth.archs(), space, args.n, args.seed), desc="cells"):
        text = space.format(arch)
        if text in done:
            continue
        row = {"arch": text, "truth": truth.value(arch)}
        for setup in setups:
            for column, value in setup_scores(setup, arch, space, batches, args.seed).items():
                row[f"{setup}:{column}"] = "" if isinstance(value, Failure) else value
        append_row(args.out, [row[c] for c in columns])
    report(args.out, setups)


def report(path: Path, setups):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    truth = [float(r["truth"]) for r in rows]
    print(f"{len(rows)} cells, {path}; Spearman rho (failures rank last)")
    print(f"{'set-up':<11}" + "".join(f"{p:>11}" for p in PROXIES))
    for setup in setups:
        rho = [spearmanr([float(r[f"{setup}:{p}"]) if r[f"{setup}:{p}"] else float("-inf") for r in rows],
                         truth).statistic for p in PROXIES]
        print(f"{setup:<11}" + "".join(f"{v:11.3f}" for v in rho))


if __name__ == "__main__":
    main()
