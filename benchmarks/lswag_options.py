"""Measure L-SWAG's open choices (window, pairing, product, pattern pass) and other proxies on real ground truth.

One probe per architecture (of any space; NB201 by default) records everything; every proxy and every L-SWAG variant (all 55 windows
[p1, p2] x 3 pairings x 2 products x 2 pattern passes) is computed from that one record, so the variants are
compared on identical passes. The cells are those ``lswag bench`` draws with the same ``--n`` and
``--seed`` (:func:`lswag.engine.sample_archs` over the ground truth), each probed as the bench
probes it (:class:`lswag.engine.Prepared`: the space's task inputs, loss, layout and build options), so the
default variant's column reproduces the bench's l_swag score cell for cell. Rows are appended to ``--out`` as they are computed and a rerun
skips cells already there. At the end it prints the Spearman rho of each proxy and of the
L-SWAG variants against ``--metric`` over the ``--n`` sampled architectures only: the CSV may hold
a larger run's, and where the sample of n is a prefix of the larger sample (NB101's 100 of its
300; not always so, random.sample changes method with the sizes) a smaller ``--n`` reports on it
without scoring anything.

    python benchmarks/lswag_options.py --n 300 --data npz:../shared/images/cifar10_sample.npz \
        --metric cifar10_test_acc_200ep --out runs/nb201_c10.csv
    python benchmarks/lswag_options.py --space nb101 --truth ../shared/benchmarks/nasbench101/nb101_suite0_partial_11proxies.csv \
        --arch-column naslib_encoding --dataset cifar10 --duplicates mean --metric val_accuracy --n 301 --out runs/nb101.csv

``--baselines none`` leaves the other proxies out (only L-SWAG's passes run).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr
from tqdm import tqdm

import lswag
from lswag import probe
from lswag.engine import Prepared, sample_archs
from lswag.layers import WINDOWS
from lswag import proxies as registry
from lswag.proxies import Failure
from lswag.proxies.lswag import PAIRINGS, PATTERN_PASSES, PRODUCTS
from lswag.settings import DUPLICATES, Scoring, TruthSource, parse_build_options

TRUTH = Path(__file__).resolve().parents[1].parent / "shared/benchmarks/nasbench201/nb201_groundtruth.csv"
BASELINES = ["zico", "swap", "nwot", "synflow", "grad_norm", "snip", "params", "flops"]


def open_rows(path: Path, columns: list[str]) -> set[str]:
    """The archs already in the CSV at ``path``; a new file gets the header ``columns``."""
    if path.exists():
        with open(path) as f:
            return {row["arch"] for row in csv.DictReader(f)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerow(columns)
    return set()


def append_row(path: Path, values: list) -> None:
    """Append one row and make it durable, so a killed run loses no finished cell."""
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow(values)
        f.flush()
        os.fsync(f.fileno())


VARIANTS = list(itertools.product(WINDOWS, PAIRINGS, PRODUCTS, PATTERN_PASSES))


def variant_name(window, pairing, product, patterns):
    return f"l_swag[{window[0]}-{window[1]},{pairing},{product},{patterns}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="nb201", help=f"search space ({', '.join(lswag.spaces.names())})")
    parser.add_argument("--truth", type=Path, default=TRUTH)
    parser.add_argument("--metric", default="cifar10_test_acc_200ep")
    parser.add_argument("--arch-column", default="arch_str")
    parser.add_argument("--dataset", help="dataset to select in truth files that hold several")
    parser.add_argument("--duplicates", choices=DUPLICATES, default="error")
    parser.add_argument("--column-names", metavar="A,B,...", help="header of a truth CSV that has none")
    parser.add_argument("--build", action="append", default=[], metavar="KEY=VALUE",
                        help="a build option of the space, e.g. task=normal (repeatable)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=f"npz:{TRUTH.parents[2] / 'images/cifar10_sample.npz'}")
    parser.add_argument("--image-size", type=int, help="input resolution (default: the space's)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baselines", default=",".join(BASELINES),
                        help="comma-separated proxies to score beside L-SWAG, or none")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    baselines = [] if args.baselines == "none" else args.baselines.split(",")

    setup = Scoring(args.space, data=args.data, batch_size=args.batch_size, seed=args.seed,
                    image_size=args.image_size, build=parse_build_options(args.build))
    space = setup.search_space
    truth = TruthSource(str(args.truth), args.metric, dataset=args.dataset, arch_column=args.arch_column,
                        column_names=tuple(args.column_names.split(",")) if args.column_names else None,
                        duplicates=args.duplicates).load(args.space)
    batch = setup.batch()
    columns = ["arch", "truth", "seconds_probe"] + baselines + [variant_name(*v) for v in VARIANTS]
    done = open_rows(args.out, columns)

    l_swag = registry.get("l_swag")
    needs = set().union(*(registry.get(n).needs for n in baselines), *(
        l_swag.needs_for({"pairing": pairing, "patterns": patterns})
        for pairing, patterns in itertools.product(PAIRINGS, PATTERN_PASSES)))
    prepared = Prepared(setup, batch)
    inputs, settings = prepared.inputs, prepared.probe_settings
    archs = sample_archs(truth.archs(), space, args.n, setup.seed)
    for arch in tqdm(archs, desc=f"{args.space} archs"):
        text = space.format(arch)
        if text in done:
            continue
        model = prepared.network(arch)(inputs.num_classes)
        start = time.perf_counter()
        record = probe.record(model, inputs, needs, **settings)
        row = {"arch": text, "truth": truth.value(arch), "seconds_probe": time.perf_counter() - start}
        for name in baselines:
            row[name] = registry.compute(name, record, model)[0]
        for window, pairing, product, patterns in VARIANTS:
            row[variant_name(window, pairing, product, patterns)] = registry.compute(
                "l_swag", record, model, window=window, pairing=pairing, product=product, patterns=patterns)[0]
        append_row(args.out, ["" if isinstance(row[c], Failure) else row[c] for c in columns])
    report(args.out, space, {space.format(arch) for arch in archs})


def report(path: Path, space, archs: set[str]):
    """The Spearman rho of every column over the rows of ``archs`` (a CSV may hold a larger sample's)."""
    with open(path) as f:
        rows = [row for row in csv.DictReader(f) if row["arch"] in archs]
    truth = [float(r["truth"]) for r in rows]

    def rho(column):
        # failures rank last, as NAS-Bench-Suite-Zero does
        values = [float(r[column]) if r[column] else -math.inf for r in rows]
        return spearmanr(values, truth).statistic, sum(1 for r in rows if not r[column])

    print(f"{len(rows)} cells, {path}")
    baselines = [c for c in rows[0] if c not in ("arch", "truth", "seconds_probe") and not c.startswith("l_swag[")]
    for name in baselines:
        value, failures = rho(name)
        print(f"  {name:<10} rho={value:.3f}  failures={failures}")
    default = tuple(lswag.spaces.proxy_defaults(space).get("l_swag", {}).get("window", (1, 10)))
    for pairing, product, patterns in itertools.product(PAIRINGS, PRODUCTS, PATTERN_PASSES):
        value, failures = rho(variant_name(default, pairing, product, patterns))
        print(f"  l_swag {space.name} window [{default[0]},{default[1]}] {pairing:<8} {product:<4} {patterns:<5} "
              f"rho={value:.3f} failures={failures}")
    results = []
    for window, pairing, product, patterns in VARIANTS:
        value, failures = rho(variant_name(window, pairing, product, patterns))
        results.append((value, window, pairing, product, patterns, failures))
    for pairing, product, patterns in itertools.product(PAIRINGS, PRODUCTS, PATTERN_PASSES):
        value, failures = rho(variant_name((1, 10), pairing, product, patterns))
        single = [rho(variant_name((p, p), pairing, product, patterns))[0] for p in range(1, 11)]
        print(f"  l_swag all layers {pairing:<8} {product:<4} {patterns:<5} rho={value:.3f} failures={failures}; "
              f"single percentiles: {' '.join(f'{s:.2f}' for s in single)}")
    print("  best windows:")
    for value, window, pairing, product, patterns, failures in sorted(results, reverse=True)[:10]:
        print(f"    [{window[0]},{window[1]}] {pairing:<8} {product:<4} {patterns:<5} rho={value:.3f} "
              f"failures={failures}")


if __name__ == "__main__":
    main()
