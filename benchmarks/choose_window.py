"""Choose a space's default L-SWAG window from the CSVs of ``lswag_options.py``, honestly.

The window is picked as the one with the highest Spearman rho averaged over the datasets given.
Because picking the best of 55 windows on the same cells that report it is optimistic, it also
prints a two-fold check: pick on half of the cells, report rho on the other half.

    python benchmarks/choose_window.py runs/nb201_c10.csv runs/nb201_c100.csv runs/nb201_in16.csv
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from lswag_options import WINDOWS, variant_name


def load(path: Path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    truth = np.array([float(r["truth"]) for r in rows])
    columns = {key: np.array([float(r[key]) if r[key] else -math.inf for r in rows]) for key in rows[0]
               if key not in ("arch", "truth", "seconds_probe")}
    return truth, columns


def rho(values, truth, index):
    return spearmanr(values[index], truth[index]).statistic


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csvs", nargs="+", type=Path)
    parser.add_argument("--pairing", default="feeding")
    parser.add_argument("--product", default="sum")
    parser.add_argument("--patterns", default="draws", help="where Λ is counted: draws or batch")
    args = parser.parse_args()
    tables = [load(p) for p in args.csvs]
    names = {w: variant_name(w, args.pairing, args.product, args.patterns) for w in WINDOWS}

    def mean_rho(window, halves):
        return np.mean([rho(cols[names[window]], truth, half) for (truth, cols), half in zip(tables, halves)])

    everything = [np.arange(len(t[0])) for t in tables]
    ranked = sorted(WINDOWS, key=lambda w: mean_rho(w, everything), reverse=True)
    print(f"pairing={args.pairing} product={args.product} patterns={args.patterns}; rho per file: {', '.join(p.stem for p in args.csvs)}")
    for window in ranked[:8] + [(1, 10)]:
        per_file = [rho(cols[names[window]], truth, idx) for (truth, cols), idx in zip(tables, everything)]
        print(f"  [{window[0]},{window[1]}] mean {mean_rho(window, everything):.3f}  "
              + "  ".join(f"{r:.3f}" for r in per_file))
    for fold in (0, 1):
        pick_on = [np.arange(fold, len(t[0]), 2) for t in tables]
        report_on = [np.arange(1 - fold, len(t[0]), 2) for t in tables]
        best = max(WINDOWS, key=lambda w: mean_rho(w, pick_on))
        print(f"  fold {fold}: picked [{best[0]},{best[1]}] on half the cells; held-out mean rho "
              f"{mean_rho(best, report_on):.3f} vs all layers {mean_rho((1, 10), report_on):.3f}")


if __name__ == "__main__":
    main()
