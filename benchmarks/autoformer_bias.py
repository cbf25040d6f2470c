"""AutoFormer has no public ground truth: how much do proxies just measure size there?

Samples ``--n`` AutoFormer subnets (seeded, uniformly over the grid), writes them with their
analytic parameter counts to ``OUT/subnets.csv`` and scores them with ``lswag bench`` against
that column (so the store resumes an interrupted run). Prints, per proxy, Spearman ρ with #params
and with FLOPs (the ``flops`` proxy's count on the same batch, which must be among the proxies)
and the mean score time per subnet, and writes the table to ``OUT/bias.csv``.

    python benchmarks/autoformer_bias.py --n 100 --store runs/eval/autoformer_s.sqlite --out runs/eval/autoformer_s
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from lswag import spaces
from lswag.bench import BenchConfig, run_bench
from lswag.settings import Execution, Scoring, TruthSource
from lswag.stats import correlate

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_PROXIES = "l_swag,zico,swap,nwot,synflow,params,flops"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="autoformer-s", help="autoformer-t, autoformer-s or autoformer-b")
    parser.add_argument("--n", type=int, default=100, help="number of subnets (seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--proxies", default=DEFAULT_PROXIES, help="comma-separated; must include flops")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data", default=f"npz:{SHARED / 'images/imagenet_sample_224.npz'}")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True, help="folder for subnets.csv and bias.csv")
    args = parser.parse_args()
    proxies = tuple(args.proxies.split(","))
    if "flops" not in proxies:
        parser.error("--proxies must include flops (the FLOPs the proxies are compared with)")

    space, out = spaces.get(args.space), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subnets = out / "subnets.csv"
    with subnets.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch_str", "params"])
        for config in space.sample(args.n, seed=args.seed):
            writer.writerow([space.format(config), space.params(config)])

    start = time.perf_counter()
    scoring = Scoring(args.space, proxies, data=args.data, batch_size=args.batch_size, seed=args.seed)
    reports = run_bench(BenchConfig(scoring, TruthSource(str(subnets), "params"), n=args.n),
                        args.store, Execution(workers=args.workers))
    wall = time.perf_counter() - start
    flops = next(r for r in reports if r.proxy == "flops")
    if any(isinstance(v, str) or not isinstance(v, (int, float)) for v in flops.scores):
        raise SystemExit("flops failed on some subnet; its scores cannot serve as the FLOPs column")

    rows = []
    for report in reports:
        by_flops = correlate(report.scores, flops.scores, n_boot=0)
        rows.append((report.proxy, report.correlation.spearman, by_flops.spearman, report.correlation.failures,
                     report.mean_seconds))
    print(f"{args.space}: {args.n} subnets, batch {args.batch_size} of {args.data}, 224x224, seed {args.seed}; "
          f"{wall:.0f} s in this run")
    print(f"{'proxy':<20} {'rho #params':>12} {'rho FLOPs':>10} {'failures':>9} {'s/subnet':>9}")
    for name, rho_params, rho_flops, failures, seconds in rows:
        print(f"{name:<20} {rho_params:12.3f} {rho_flops:10.3f} {failures:9d} {seconds:9.2f}")
    with (out / "bias.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["proxy", "spearman_params", "spearman_flops", "failures", "seconds_per_subnet"])
        writer.writerows(rows)


if __name__ == "__main__":
    main()
