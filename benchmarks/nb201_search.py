"""Zero-shot search on NAS-Bench-201 judged by the true accuracy of the cell it returns (docs/search.md).

For every strategy x fitness x seed, one ``lswag.search`` run (the search's own seed varies; the
scoring batch and weights stay those of ``--score-seed``, so every run reads the same store and a
cell is scored once whatever the search that asks); the found cell's CIFAR-10, CIFAR-100 and
ImageNet16-120 test accuracies (200 epochs) are looked up in the ground truth. Each finished run
is appended to ``OUT/runs.csv`` at once, so the script resumes; the summary table (mean ± sd over
the seeds) is printed as Markdown and written to ``OUT/table.md``.

Every candidate is scored with every fitness proxy at once (``SearchConfig.also``), which shares
the probe's passes and lets the other fitnesses' searches find it in the store; LIBRA's pool is
scored on its calibration cells, and its candidates with the three proxies it chose.

    python benchmarks/nb201_search.py --evaluations 100 --seeds 10 --out runs/search
    python benchmarks/nb201_search.py --evaluations 1000 --seeds 3 --fitness l_swag,nwot --out runs/search
    python benchmarks/nb201_search.py --evaluations 100 --seeds 10 --strategies optuna-tpe,optuna-nsga2 \
        --fitness l_swag --out runs/search          # Optuna's samplers (NSGA-II: generations of 20)
"""
from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from lswag.settings import Execution, Scoring, TruthSource
from lswag.search import SearchConfig, search

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRUTH = SHARED / "benchmarks/nasbench201/nb201_groundtruth.csv"
METRICS = ("cifar10_test_acc_200ep", "cifar100_test_acc_200ep", "imagenet16_test_acc_200ep")
FITNESSES = ("l_swag", "libra", "zico", "swap", "nwot", "params")
#: LIBRA's pool here: proxies that share the probe passes of the others, plus cheap ones
LIBRA_POOL = ("l_swag", "zico", "swap", "nwot", "synflow", "l2_norm", "params")
COLUMNS = ["strategy", "fitness", "evaluations", "seed", "arch", *METRICS, "candidates", "failures",
           "wall_seconds", "scoring_seconds", "calibration"]


def evolution_shape(evaluations: int) -> dict:
    """AutoFormer's defaults (50 x 20, 10 parents) at 1000 evaluations; 20 x 5, 5 parents at 100."""
    if evaluations >= 1000:
        return {"population": 50, "generations": evaluations // 50, "parents": 10}
    return {"population": 20, "generations": max(1, evaluations // 20), "parents": 5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--strategies", default="evolution,random,prune")
    parser.add_argument("--fitness", default=",".join(FITNESSES))
    parser.add_argument("--data", default=f"npz:{SHARED / 'images/cifar10_sample.npz'}")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--score-seed", type=int, default=0)
    parser.add_argument("--prune-build", default="C=16,N=1", help="the pruned supernet's size (TE-NAS: C=3, N=1)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_path, store = out / "runs.csv", out / "nb201.sqlite"
    done = set()
    if runs_path.exists():
        with runs_path.open() as f:
            done = {(r["strategy"], r["fitness"], r["evaluations"], r["seed"]) for r in csv.DictReader(f)}
    else:
        with runs_path.open("w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
    fitnesses = args.fitness.split(",")
    prune_build = {k: int(v) for k, v in (kv.split("=") for kv in args.prune_build.split(","))}
    # scored with every candidate so that the other fitnesses' searches find it in the store; LIBRA's pool
    # is scored on its calibration cells only, and a LIBRA search then scores the three proxies it chose
    proxies = tuple(f for f in fitnesses if f != "libra")

    def run(strategy: str, fitness: str, seed: int) -> None:
        budget = "supernet" if strategy == "prune" else str(args.evaluations)
        if (strategy, fitness, budget, str(seed)) in done:
            return
        # prune has no draws of its own: its seeds are the scoring's (batch and weights)
        config = SearchConfig(
            scoring=Scoring("nb201", ("l_swag",), data=args.data, batch_size=args.batch_size,
                            seed=args.score_seed + seed if strategy == "prune" else args.score_seed,
                            build=prune_build if strategy == "prune" else {}),
            strategy=strategy, fitness=fitness, evaluations=args.evaluations, seed=seed,
            truth=TruthSource(str(TRUTH), METRICS[0]), more_metrics=METRICS[1:], calibration=100,
            libra_pool=LIBRA_POOL, also=() if strategy == "prune" else proxies,
            **evolution_shape(args.evaluations))
        result = search(config, store, Execution(workers=args.workers), progress=False)
        with runs_path.open("a", newline="") as f:
            csv.writer(f).writerow([strategy, fitness, budget, seed, result.arch, *(result.truth[m] for m in METRICS),
                                    result.evaluations, result.failures, f"{result.wall_seconds:.1f}",
                                    f"{result.scoring_seconds:.1f}", len(result.calibration)])
        print(f"{strategy:<9} {fitness:<7} {budget:>8} seed {seed}: {result.truth[METRICS[0]]:.2f} / "
              f"{result.truth[METRICS[1]]:.2f} / {result.truth[METRICS[2]]:.2f}  {result.arch}", flush=True)

    for seed in range(args.seeds):
        for strategy in args.strategies.split(","):
            for fitness in fitnesses:
                run(strategy, fitness, seed)
    print(summary(runs_path, out / "table.md"))


def summary(runs_path: Path, table_path: Path) -> str:
    with runs_path.open() as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["fitness"], row["evaluations"]), []).append(row)
    lines = ["| strategy | fitness | evaluated | seeds | CIFAR-10 | CIFAR-100 | ImageNet16-120 | scoring s / run |",
             "|---|---|---|---|---|---|---|---|"]
    for (strategy, fitness, evaluations), group in sorted(groups.items()):
        cells = []
        for metric in METRICS:
            values = [float(r[metric]) for r in group]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.2f} ± {sd:.2f}")
        seconds = statistics.fmean(float(r["scoring_seconds"]) for r in group)
        count = group[0]["candidates"] if strategy == "prune" else evaluations
        lines.append(f"| {strategy} | {fitness} | {count} | {len(group)} | {' | '.join(cells)} | {seconds:.0f} |")
    text = "\n".join(lines)
    table_path.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
