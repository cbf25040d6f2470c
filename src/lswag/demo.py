"""``lswag demo``: the whole zero-cost loop on the embedded mini-benchmark, offline, in minutes.

1. Score every cell of the mini-benchmark (:mod:`lswag.minibench`: NB201 cells trained on the
   built-in digits) with the main proxies, through ``lswag bench`` and its store.
2. Print each proxy's Spearman ρ and Kendall τ against the cells' trained accuracy.
3. Fit LIBRA on a calibration split and report it held-out beside the best single proxy.
4. Run short evolutionary searches (l_swag, LIBRA, and random search for reference) among the
   benchmark's cells, and look the cells they return up in the table.

Everything goes to one folder (the store, the correlation table, heatmap and rank plots, the
LIBRA comparison, the search results); rerunning the demo reads the store instead of rescoring.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from lswag import libra, minibench
from lswag.bench import BenchConfig, ProxyReport, run_bench, write_outputs
from lswag.errors import LswagError
from lswag.settings import Execution, Scoring, TruthSource, check_output
from lswag.search import SearchConfig, SearchResult, search

#: the proxies the demo scores: the paper's main ones and a few cheap baselines
PROXIES = ("l_swag", "zico", "swap", "nwot", "synflow", "snip", "grad_norm", "jacov", "params", "flops")
#: the demo's result store, in its folder
STORE = "scores.sqlite"
#: what the demo's tables and figures call the benchmark
BENCHMARK = "digits mini-benchmark"
#: the searches the demo runs: (strategy, fitness)
SEARCHES = (("evolution", "l_swag"), ("evolution", "libra"), ("random", "l_swag"))


@dataclass
class DemoReport:
    table: Path
    cells: int
    correlations: list[ProxyReport]
    libra: libra.Evaluation
    searches: list[SearchResult]
    best_accuracy: float                 # the best cell of the table
    ranks: dict[str, int]                # search -> rank of its cell in the table (1 = best)
    folder: Path
    seconds: float


def run_demo(out: str | Path = "lswag-demo", *, table: str | Path = minibench.TABLE, n: int | None = None,
             proxies=PROXIES, population: int = 20, generations: int = 5, calibration: int = 100,
             workers: int | None = None, seed: int = 0, device: str = "auto", progress: bool = True) -> DemoReport:
    """Run the demo (module docstring) on ``table`` (the shipped mini-benchmark); ``n`` limits it to
    a seeded sample of cells. Writes into ``out``; every setting is checked before anything is."""
    start = time.perf_counter()
    check_output(out, folder=True)
    folder = Path(out)
    store = folder / STORE
    meta = minibench.load_metadata(table)
    workers = workers or min(2, os.cpu_count() or 1)
    source = TruthSource(str(table), meta["metric"])
    truth = source.load(meta["space"])
    n = len(truth) if n is None else min(n, len(truth))
    if not 3 <= calibration <= n - 3:
        raise LswagError(f"LIBRA is fitted on --calibration {calibration} of the demo's {n} cells and evaluated "
                         f"on the rest: give a --calibration of 3..{n - 3}" if n >= 6 else
                         f"the demo needs at least 6 cells (3 to fit LIBRA, 3 to evaluate it), got --n {n}")
    scoring = Scoring(meta["space"], tuple(proxies), data=meta["data"], batch_size=64, seed=seed,
                      image_size=meta["image_size"], build=meta["build"], device=device)
    execution = Execution(workers=workers)
    configs = [SearchConfig(scoring=scoring, strategy=strategy, fitness=fitness,
                            evaluations=population * generations, population=population,
                            generations=generations, parents=max(2, population // 4), seed=seed,
                            truth=source, calibration=calibration,
                            libra_pool=tuple(p for p in proxies if p != "flops"))
               for strategy, fitness in SEARCHES]
    reports = run_bench(BenchConfig(scoring, source, n), store, execution, progress=progress)
    write_outputs(reports, folder, BENCHMARK)

    scores = libra.read_scores(store, metric=meta["metric"], truth=table, space=meta["space"])
    scores = scores.sample(n, seed)
    evaluation = libra.evaluate_held_out(scores, calibration=calibration, splits=10, seed=seed)
    libra.write_evaluation(evaluation, folder, BENCHMARK)

    searches = []
    for config in configs:
        result = search(config, store, execution, progress=progress)
        result.save(folder / f"search-{config.strategy}-{config.fitness}.json")
        searches.append(result)
    ordered = sorted(truth.accuracy.values(), reverse=True)
    ranks = {f"{r.strategy} {r.fitness}": 1 + sum(v > r.truth[meta["metric"]] for v in ordered) for r in searches}
    return DemoReport(Path(table), len(truth), reports, evaluation, searches, ordered[0], ranks, folder,
                      time.perf_counter() - start)
