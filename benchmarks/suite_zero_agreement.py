"""Does lswag rank NB201 cells like NAS-Bench-Suite-Zero's own implementations of its proxies?

Scores ``--n`` cells (seeded sample of the 9,445 with Suite-Zero scores) with lswag's version of
each of Suite-Zero's 13 proxies (CIFAR-10 test images, batch 64) through ``lswag bench``, then
prints, per proxy, lswag's Spearman ρ with Suite-Zero's target (``val_accuracy``, cifar10-valid)
next to the ρ of Suite-Zero's precomputed scores on the same cells, and the difference. Results
go to an ``lswag bench`` store, so a rerun resumes.

    python benchmarks/suite_zero_agreement.py --n 200 --store runs/s0_agreement.sqlite
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lswag import spaces
from lswag.bench import BenchConfig, run_bench
from lswag.settings import Execution, Scoring, TruthSource
from lswag.stats import correlate

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TABLE = SHARED / "benchmarks/nasbench201/nb201_suite0_13proxies_9445nets.csv"
PROXIES = ("epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacov", "l2_norm", "nwot", "params", "plain",
           "snip", "synflow", "zen")


def agreement(n: int, store: Path, workers: int, seed: int = 0, data: str | None = None, progress: bool = True):
    """[(proxy, lswag rho, Suite-Zero rho on the same cells)] for the ``n`` sampled cells."""
    source = TruthSource(str(TABLE), "val_accuracy", dataset="cifar10")
    scoring = Scoring("nb201", PROXIES, data=data or f"npz:{SHARED / 'images/cifar10_sample.npz'}", batch_size=64,
                      seed=seed)
    reports = run_bench(BenchConfig(scoring, source, n=n), store, Execution(workers=workers), progress=progress)
    truth = source.load("nb201")
    space = spaces.get("nb201")
    rows = []
    for report in reports:
        theirs = [truth.columns[report.proxy].get(space.parse(arch)) for arch in report.archs]
        rows.append((report.proxy, report.correlation.spearman, correlate(theirs, report.truth, n_boot=0).spearman))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = agreement(args.n, args.store, args.workers)
    print(f"{args.n} NB201 cells, Spearman rho with cifar10-valid val_accuracy")
    print(f"{'proxy':<10} {'lswag':>7} {'S0':>7} {'diff':>7}")
    for proxy, ours, theirs in rows:
        print(f"{proxy:<10} {ours:7.3f} {theirs:7.3f} {ours - theirs:+7.3f}")


if __name__ == "__main__":
    main()
