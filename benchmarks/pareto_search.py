"""Multi-objective zero-shot search judged by the trained accuracy of the front it returns (docs/search.md).

A search with ``minimise`` returns the Pareto front of its fitness (here l_swag, maximised) against
a cost (minimised). Nothing is trained: each front point's true accuracy is looked up in the
ground truth, and the front of those true points is compared with the true front of the whole
table (every architecture's accuracy against its cost) by their hypervolumes: a ratio of 1 means
the search handed back the true trade-off. Two reference points: ``range``, the table's lowest
accuracy and highest cost (NB201's 10% cells make every front look good against it), and
``nadir``, the true front's own worst accuracy and highest cost (only points at least as good as
the worst point of the true front count). Each point's true accuracy is kept in ``OUT/points.csv``.

* ``nb201``: all 15,625 cells, CIFAR-10 test accuracy (200 epochs) against lswag's ``flops``
  (millions; one sample at 32x32). A cell's FLOPs depend only on how many of its six edges hold
  each convolution (pooling, skip and none count no multiply-adds), so the table's FLOPs are
  computed once per such count and checked on random cells before use.
* ``vitbench``: the 100 trained AutoFormer-Ti subnets of ViT-Bench-101, one accuracy column
  against #params (lswag's ``params``, the network of ``vitbench101-autoformer``); candidates are
  drawn among the 100.

Every run appends to ``OUT/runs.csv`` and ``OUT/points.csv`` as it finishes, so the script resumes;
all runs share one store (the scoring seed and batch are fixed, the search's seed varies).

    python benchmarks/pareto_search.py nb201 --evaluations 100 --seeds 5 --out runs/pareto
    python benchmarks/pareto_search.py vitbench --evaluations 50 --seeds 5 --strategies evolution,random \\
        --store runs/vit/cheap.sqlite --out runs/pareto_vit
"""
from __future__ import annotations

import argparse
import csv
import random
import statistics
from pathlib import Path

from lswag import spaces
from lswag.engine import Engine
from lswag.search import SearchConfig, search
from lswag.search.pareto import first_front, hypervolume, maximised
from lswag.settings import Execution, Scoring, TruthSource
from lswag.store import Store
from lswag.truth import load_truth

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SETUPS = {
    "nb201": {"space": "nb201", "truth": SHARED / "benchmarks/nasbench201/nb201_groundtruth.csv",
              "metric": "cifar10_test_acc_200ep", "cost": "flops",
              "data": f"npz:{SHARED / 'images/cifar10_sample.npz'}", "batch_size": 32},
    "vitbench": {"space": "vitbench101-autoformer",
                 "truth": SHARED / "benchmarks/vitbench101_autoformer/vitbench101_autoformer_ti.csv",
                 "metric": "c100_kd_acc", "cost": "params",
                 "data": "npz:../shared/images/cifar100_sample.npz", "batch_size": 32},
}
RUN_COLUMNS = ["strategy", "evaluations", "seed", "front_size", "hypervolume_ratio", "best_true_accuracy",
               "mean_front_accuracy", "wall_seconds"]
POINT_COLUMNS = ["strategy", "evaluations", "seed", "arch", "l_swag", "cost", "true_accuracy", "on_true_front"]


def true_volume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The hypervolume of the (cost, accuracy) ``points`` (cost minimised, accuracy maximised) above
    ``reference`` (the highest cost, the lowest accuracy): that of their own front."""
    return hypervolume(maximised([a for _, a in points], [[c for c, _ in points]]),
                       (reference[1], -reference[0]))


def nb201_flops(setup: Scoring, store: Store, archs: list[str], check: int = 50) -> dict[str, float]:
    """lswag's FLOPs of every NB201 cell of ``archs``: computed for one cell per count of 1x1 and 3x3
    convolutions, then checked equal on ``check`` random other cells."""
    space = spaces.get("nb201")
    engine = Engine(setup, store)
    try:
        def key(arch: str) -> tuple[int, int]:
            ops = list(space.parse(arch))      # a Cell: the op on each edge
            return ops.count("nor_conv_1x1"), ops.count("nor_conv_3x3")
        first = {}
        for arch in archs:
            first.setdefault(key(arch), arch)
        scored = engine.score(sorted(first.values()), ("flops",))
        by_key = {k: float(scored[a]["flops"].value) for k, a in first.items()}
        sample = random.Random(0).sample(archs, check)
        checked = engine.score(sample, ("flops",))
        for arch in sample:
            if abs(float(checked[arch]["flops"].value) - by_key[key(arch)]) > 1e-9:
                raise SystemExit(f"FLOPs of {arch} differ from its convolution count's: the shortcut is wrong")
    finally:
        engine.close()
    return {arch: by_key[key(arch)] for arch in archs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=sorted(SETUPS))
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strategies", default="evolution,random,optuna-nsga2")
    parser.add_argument("--metric", help="the truth column (default: the benchmark's)")
    parser.add_argument("--store", help="the store to read and extend (default OUT/scores.sqlite)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    setup = SETUPS[args.benchmark]
    metric, cost = args.metric or setup["metric"], setup["cost"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = Path(args.store) if args.store else out / "scores.sqlite"
    scoring = Scoring(setup["space"], ("l_swag", cost), data=setup["data"], batch_size=setup["batch_size"])
    space = scoring.search_space
    truth = load_truth(str(setup["truth"]), space=space.name, metric=metric)
    archs = sorted(space.format(a) for a in truth.archs())
    accuracy = {a: truth.value(space.parse(a)) for a in archs}
    with Store(store_path, space.name) as store:
        if args.benchmark == "nb201":
            costs = nb201_flops(scoring, store, archs)
        else:
            engine = Engine(scoring, store)
            try:
                scored = engine.score(archs, (cost,))
            finally:
                engine.close()
            costs = {a: float(scored[a][cost].value) for a in archs}
    everything = [(costs[a], accuracy[a]) for a in archs]
    reference = (max(c for c, _ in everything), min(acc for _, acc in everything))
    front = first_front(maximised([a for _, a in everything], [[c for c, _ in everything]]))
    true_front, true_front_archs = [everything[i] for i in front], {archs[i] for i in front}
    best_volume = true_volume(everything, reference)
    print(f"{args.benchmark}: {len(archs)} archs, true front of {metric} against {cost}: {len(true_front)} "
          f"points, hypervolume {best_volume:.4g} (reference: {cost} {reference[0]:.4g}, accuracy {reference[1]:.4g})")

    runs_path, points_path = out / "runs.csv", out / "points.csv"
    done = set()
    if runs_path.exists():
        with runs_path.open() as f:
            done = {(r["strategy"], r["evaluations"], r["seed"]) for r in csv.DictReader(f)}
    for path, columns in ((runs_path, RUN_COLUMNS), (points_path, POINT_COLUMNS)):
        if not path.exists():
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(columns)
    population = 20 if args.evaluations < 1000 else 50
    for seed in range(args.seeds):
        for strategy in args.strategies.split(","):
            if (strategy, str(args.evaluations), str(seed)) in done:
                continue
            config = SearchConfig(scoring=scoring, strategy=strategy, fitness="l_swag", evaluations=args.evaluations,
                                  population=population, generations=max(1, args.evaluations // population),
                                  parents=5, seed=seed, minimise=(cost,),
                                  truth=TruthSource(str(setup["truth"]), metric))
            result = search(config, store_path, Execution(workers=args.workers), progress=False)
            found = [(costs[p["arch"]], accuracy[p["arch"]]) for p in result.front]
            volume = true_volume(found, reference)
            with points_path.open("a", newline="") as f:
                for point in result.front:
                    arch = point["arch"]
                    csv.writer(f).writerow([strategy, args.evaluations, seed, arch, point["fitness"], costs[arch],
                                            accuracy[arch], arch in true_front_archs])
            row = [strategy, args.evaluations, seed, len(result.front), f"{volume / best_volume:.4f}",
                   f"{max(a for _, a in found):.2f}", f"{statistics.fmean(a for _, a in found):.2f}",
                   f"{result.wall_seconds:.1f}"]
            with runs_path.open("a", newline="") as f:
                csv.writer(f).writerow(row)
            print(f"{strategy:<13} seed {seed}: front of {len(found)}, hypervolume ratio {volume / best_volume:.3f}, "
                  f"best true {max(a for _, a in found):.2f}", flush=True)
    nadir = (max(c for c, _ in true_front), min(acc for _, acc in true_front))
    print(f"nadir of the true front: {cost} {nadir[0]:.4g}, accuracy {nadir[1]:.4g}")
    print(summary(runs_path, points_path, everything, nadir, out / "table.md"))


def gap(point: tuple[float, float], everything: list[tuple[float, float]]) -> float:
    """How far below the true front ``point`` lies: the best accuracy of the table at no more than its cost,
    less its own (percentage points)."""
    cost, accuracy = point
    return max(a for c, a in everything if c <= cost) - accuracy


def summary(runs_path: Path, points_path: Path, everything: list[tuple[float, float]], nadir: tuple[float, float],
            table_path: Path) -> str:
    """The table of runs (mean ± sd over seeds), with the hypervolume ratio against both references and
    the front points' mean gap to the true front."""
    best_nadir_volume = true_volume(everything, nadir)
    with runs_path.open() as f:
        rows = list(csv.DictReader(f))
    with points_path.open() as f:
        points = list(csv.DictReader(f))
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        found = [(float(p["cost"]), float(p["true_accuracy"])) for p in points
                 if (p["strategy"], p["evaluations"], p["seed"]) == (row["strategy"], row["evaluations"], row["seed"])]
        row["nadir_ratio"] = true_volume(found, nadir) / best_nadir_volume
        row["gap"] = statistics.fmean(gap(point, everything) for point in found)
        row["on_true_front"] = sum(p["on_true_front"] == "True" for p in points
                                   if (p["strategy"], p["evaluations"], p["seed"])
                                   == (row["strategy"], row["evaluations"], row["seed"]))
        groups.setdefault((row["strategy"], row["evaluations"]), []).append(row)

    def spread(group, column):
        values = [float(r[column]) for r in group]
        return f"{statistics.fmean(values):.3g} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2g}"

    lines = ["| strategy | candidates | seeds | front size | of which on the true front | hypervolume ratio (range) | "
             "hypervolume ratio (nadir) | best true accuracy | mean true accuracy of the front | mean gap to the true "
             "front (points) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (strategy, evaluations), group in sorted(groups.items()):
        lines.append(f"| {strategy} | {evaluations} | {len(group)} | {spread(group, 'front_size')} | "
                     f"{spread(group, 'on_true_front')} | {spread(group, 'hypervolume_ratio')} | "
                     f"{spread(group, 'nadir_ratio')} | {spread(group, 'best_true_accuracy')} | "
                     f"{spread(group, 'mean_front_accuracy')} | {spread(group, 'gap')} |")
    text = "\n".join(lines)
    table_path.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
