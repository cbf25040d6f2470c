"""``lswag search``: zero-shot search that returns a network to train (METHOD.md §6).

Strategies (:mod:`lswag.search.strategies`, behind one ask/tell interface): ``evolution``,
``random`` and ``prune``; and Optuna's samplers ``optuna-tpe`` and ``optuna-nsga2``
(:mod:`lswag.search.samplers`) on spaces made of named choices (:class:`lswag.spaces.ChoiceSpace`).
With costs to minimise (``minimise``: params, FLOPs, latency) the search keeps the Pareto front of
its fitness against them (:mod:`lswag.search.pareto`).

The fitness (:class:`Fitness`) is a proxy, a rank combination of proxies (``rank:a,b,c``,
``az_nas``, ``te_nas``) or a fitted LIBRA. Rank combinations score a candidate against a pool;
here the pool is every candidate evaluated so far, so the selection is recomputed on the whole
archive each generation (for a single proxy this is the proxy's value).

Every candidate is scored through the scoring engine of ``lswag bench``
(:class:`lswag.engine.Engine`, one per search) with the same store keys, so a search reuses what a benchmark run
scored, and an interrupted search rerun with the same settings replays its draws against the
store, computing only what it had not finished: it resumes from where it stopped, exactly.
Budgets on params and FLOPs (in millions, as the ``params`` and ``flops`` proxies) and latency
(milliseconds, :mod:`lswag.proxies.latency`) are checked on every candidate before it is scored.

With costs to minimise (``minimise``: params, flops, latency) the search is multi-objective: every
candidate is scored with them, the archive ranks by Pareto front first (:class:`Archive`), and the
result holds the front of fitness against the costs (:attr:`SearchResult.front`) beside the best by
fitness.
"""
from __future__ import annotations

import json
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lswag import __version__, spaces
from lswag.truth import GroundTruth
from lswag.engine import Engine, sample_archs
from lswag.errors import LswagError, LswagWarning, unknown_choice
from lswag.proxies import Failure
from lswag.search.fitness import Fitness, failed_value, make_fitness, plain_value
from lswag.search.strategies import Archive, Candidate, Evolution, Proposals, Prune, RandomSearch, Strategy
from lswag.search.samplers import OptunaSearch, check_search as check_optuna_search
from lswag.settings import (COST_UNITS, LIBRA_POOL, OPTUNA_STRATEGIES, STRATEGIES, Budget, Execution, SearchConfig,
                            check_output)
from lswag.store import Store

RESULT_FORMAT = "lswag-search"
#: supernets above this many parameters take long to prune on a CPU, and the search warns before it starts
#: (DARTS' at its default C=36, 20 cells: 20.2 M, 45 s per supernet with nwot at batch 64 on one core, 780
#: supernets; NB201's at C=16, N=5: 1.7 M, 54 supernets)
PRUNE_WARNING_PARAMS = 5e6

__all__ = ["LIBRA_POOL", "STRATEGIES", "Archive", "Budget", "Candidate", "Fitness", "SearchConfig", "SearchResult",
           "Searcher", "Strategy", "default_result_path", "default_store", "load_result", "make_fitness", "search"]


# -- the search --------------------------------------------------------------------------------


@dataclass
class SearchResult:
    space: str
    arch: str
    build: dict[str, Any]
    strategy: str
    fitness: str
    scores: dict[str, float | None]          # the best candidate's proxies (None: failed)
    params: float | None
    flops: float | None
    evaluations: int                         # candidates scored by the search (not counting calibration)
    failures: int                            # of which the fitness failed on (ranked last)
    skipped: int                             # candidates left out: a budgeted cost failed
    wall_seconds: float                      # of this run (a resumed one reads the store)
    scoring_seconds: float                   # the fitness proxies' stored seconds: what a fresh run costs
    new_results: int                         # results this run added to the store (0: all read back, resumed)
    seed: int
    truth: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)     # best fitness after each generation / round
    candidates: list[str] = field(default_factory=list)    # every evaluated candidate, in order
    calibration: list[str] = field(default_factory=list)   # the truth's cells a LIBRA fitness was fitted on
    libra: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    minimise: list[str] = field(default_factory=list)      # the costs minimised beside the fitness
    #: the Pareto front of fitness against the costs, by the first cost ascending, then fitness descending (``lswag
    #: train --pick N`` trains point N): ``{"arch", "fitness", COST: value..., "scores": {fitness proxy: value},
    #: "truth": {metric: value} (with a truth)}``
    front: list[dict[str, Any]] = field(default_factory=list)
    #: with costs minimised, ``{"fitness": [...], COST: [...]}``: every candidate's (None: failed), as ``candidates``
    objectives: dict[str, list[float | None]] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        check_output(path, folder=False)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": RESULT_FORMAT, "lswag": __version__, **asdict(self)}, indent=2) + "\n")
        return path


def _in_file_names(space: str) -> str:
    """A space's name as file names hold it: a define-by-run family's ``module:function`` with ``-`` for ``:``."""
    return space.replace(":", "-")


def default_store(space: str) -> Path:
    """Where a search keeps its scores unless told: ``runs/search-SPACE.sqlite``."""
    return Path("runs") / f"search-{_in_file_names(space)}.sqlite"


def default_result_path(config: SearchConfig, store: str | Path) -> Path:
    """Where a search's result goes unless told: beside its store, named by space, strategy, fitness, the costs
    it minimises and seed."""
    costs = "".join(f"-min-{cost}" for cost in config.minimise)
    return Path(store).with_name(f"search-{_in_file_names(config.scoring.space)}-{config.strategy}-{config.fitness}"
                                 f"{costs}-seed{config.seed}.json")


def load_result(path: str | Path) -> dict[str, Any]:
    """A saved search result; ``lswag.spaces.get(r["space"]).build(r["arch"], **r["build"])`` rebuilds it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LswagError(f"cannot read search result {path}: {error}") from None
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        raise LswagError(f"{path} is not an lswag search result (written by lswag search --out)")
    return data


class Searcher:
    """Runs a :class:`SearchConfig` against a store through one :class:`Engine`: a strategy asks for
    candidates, the engine scores them, the strategy is told (see the module docstring)."""

    def __init__(self, config: SearchConfig, store_path: str | Path, execution: Execution = Execution(), *,
                 progress: bool = True):
        c = config   # its numbers were checked when it was made (SearchConfig)
        if c.fitness == "libra" and c.truth is None:
            raise LswagError("fitness libra is fitted on ground truth: give --truth and --metric")
        if c.more_metrics and c.truth is None:
            raise LswagError("--metric needs --truth (the file the found architecture is looked up in)")
        if c.fitness != "libra":
            make_fitness(c.fitness)             # an unknown fitness fails before any file is made
        self.config, self.space = c, c.scoring.search_space
        if c.strategy == "prune" and not isinstance(self.space, spaces.SupernetSpace):
            raise LswagError(f"strategy prune needs a cell space with a supernet (nb201, darts, nb301); "
                             f"{self.space.name} has none")
        if c.strategy in OPTUNA_STRATEGIES:
            check_optuna_search(c, self.space)
        self.progress = progress
        self.truth: GroundTruth | None = None
        self.allowed: list[str] | None = None
        if c.truth is not None:
            self.truth = c.truth.load(self.space.name)
            for metric in c.more_metrics:
                if metric not in self.truth.columns:
                    raise unknown_choice("metric", metric, [self.truth.metric, *self.truth.columns])
            self.allowed = sorted(self.space.format(a) for a in self.truth.archs())
        batch = c.scoring.batch()   # a bad data source fails here, before the store is made
        self.store = Store(store_path, c.scoring.space)
        self.results_before = self.store.count()
        self.libra = None
        self.calibration_seconds, self.calibration_archs = 0.0, []
        # every proxy the search may score: the fitness's (LIBRA's whole pool), those kept alongside, the
        # budget's and the result's; one engine, so one worker pool, scores them all
        pool = tuple(dict.fromkeys([*c.libra_pool, "params"])) if c.fitness == "libra" else ()
        fitness_proxies = pool or make_fitness(c.fitness).proxies
        every = tuple(dict.fromkeys([*fitness_proxies, *c.also, *c.budget.proxies, *c.minimise, "params",
                                     "flops"]))
        options = {name: chosen for name, chosen in c.scoring.options.items() if name in every}
        self.engine: Engine | None = None
        try:
            self.engine = Engine(replace(c.scoring, proxies=every, options=options), self.store, execution,
                                 batch=batch)
            if c.fitness == "libra":
                self.libra = self._fit_libra(pool)
            self.fitness = make_fitness(c.fitness, self.libra)
        except BaseException:
            self.close()
            raise
        self.rng = random.Random(c.seed)
        self.skipped = 0                   # candidates whose budgeted costs could not be computed
        self.scored = tuple(dict.fromkeys([*self.fitness.proxies, *c.also, *c.minimise]))

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.store.close()

    def _fit_libra(self, pool: tuple[str, ...]):
        from lswag import libra

        c = self.config
        # a stream of its own: drawn with the search's seed, the calibration cells would be the very cells
        # random search (and evolution's first population) draws, and LIBRA would rank its own fitting set
        archs = [self.space.format(a) for a in
                 sample_archs(self.truth.archs(), self.space, c.calibration, f"libra-calibration-{c.seed}")]
        with tqdm(total=len(archs), desc="LIBRA calibration", unit="arch", disable=not self.progress) as bar:
            scored = self.engine.score(archs, pool, bar)
        self.calibration_seconds = sum(r.seconds for arch in archs for r in scored[arch].values())
        self.calibration_archs = archs
        columns = {p: np.array([plain_value(scored[a][p].value) for a in archs]) for p in pool}
        truth = np.array([self.truth.value(self.space.parse(a)) for a in archs])
        table = libra.ScoreTable(f"{len(archs)} calibration archs of {c.truth.path}", self.truth.metric,
                                 tuple(archs), truth, columns, tuple(c.libra_pool))
        return libra.fit(table, proxies=c.libra_pool)

    # -- candidates ---------------------------------------------------------------------------

    def _admissible(self, archs: list[str]) -> list[str]:
        """``archs`` within the budget (their costs come from, and go to, the store)."""
        budget = self.config.budget
        if not budget.proxies or not archs:
            return archs
        costs = self.engine.score(archs, budget.proxies)
        keep = []
        for arch in archs:
            values = {k: costs[arch][k].value for k in budget.proxies}
            if any(isinstance(v, Failure) for v in values.values()):
                self.skipped += 1
            elif budget.admits(values):
                keep.append(arch)
        return keep

    def _proposals(self) -> Proposals:
        c = self.config
        return Proposals(self.space, self.rng, allowed=self.allowed, admissible=self._admissible,
                         mutation_prob=c.mutation_prob, crossover_prob=c.crossover_prob)

    def check_budget(self, samples: int = 100) -> None:
        """A one-line error when none of ``samples`` random candidates fits the budget."""
        budget = self.config.budget
        if not budget.proxies:
            return
        rng_state = self.rng.getstate()
        proposals = self._proposals()
        archs = list(dict.fromkeys(proposals.random_arch() for _ in range(samples)))
        self.rng.setstate(rng_state)   # the check leaves the search's draws as they were
        if self._admissible(archs):
            return
        costs = self.engine.score(archs, budget.proxies)
        spans = []
        for kind in budget.proxies:
            values = [costs[a][kind].value for a in archs if not isinstance(costs[a][kind].value, Failure)]
            if values:
                spans.append(f"{kind} {min(values):.4g}..{max(values):.4g} {COST_UNITS[kind]}")
        raise LswagError(f"no {self.space.name} architecture fits the budget ({budget.text()}): "
                         f"none of {len(archs)} random ones does (they span {', '.join(spans) or 'nothing'}); "
                         "widen the budget")

    def strategy(self, archive: Archive) -> Strategy:
        c = self.config
        if c.strategy == "prune":
            return Prune(archive, self.space, build=c.scoring.build, seed=c.scoring.seed)
        generational = c.strategy in ("evolution", *OPTUNA_STRATEGIES)
        total = c.evaluations or (c.population * c.generations if generational else 1000)
        if c.strategy == "random":
            return RandomSearch(archive, self._proposals(), total=total)
        if c.strategy in OPTUNA_STRATEGIES:
            return OptunaSearch(archive, self.space, c, total=total, allowed=self.allowed,
                                admissible=self._admissible)
        return Evolution(archive, self._proposals(), total=total, population=c.population,
                         generations=c.generations, parents=c.parents)

    # -- running ------------------------------------------------------------------------------

    def _evaluate(self, candidates: list[Candidate], archive: Archive, bar: tqdm) -> list[dict[str, Any]]:
        """Score ``candidates`` (architectures in one engine call; supernets one by one) into ``archive``."""
        archs = [c.key for c in candidates if c.make is None]
        scored = self.engine.score(archs, self.scored, bar) if archs else {}
        rows = []
        for candidate in candidates:
            if candidate.make is None:
                results = scored[candidate.key]
            else:
                results = self.engine.score_network(candidate.key, candidate.make, self.scored)
                bar.update()
            archive.add(candidate.key, results)
            rows.append({p: r.value for p, r in results.items()})
        bar.set_postfix(best=archive.describe_best())
        return rows

    def run(self) -> SearchResult:
        c = self.config
        self.check_budget()
        start = time.perf_counter()
        archive = Archive(self.fitness, c.minimise)
        strategy = self.strategy(archive)
        if isinstance(strategy, Prune):
            self._warn_of_pruning(strategy.total)
        with tqdm(total=strategy.total, desc=f"{c.strategy} search ({self.fitness.name})", unit=strategy.unit,
                  disable=not self.progress) as bar:
            while candidates := strategy.ask():
                strategy.tell(candidates, self._evaluate(candidates, archive, bar))
        if not archive.archs:
            raise LswagError(f"the search found no admissible candidate ({c.budget.text()})")
        result = self._result(strategy.best(), archive, strategy.history, time.perf_counter() - start)
        if isinstance(strategy, OptunaSearch):
            result.settings.update(strategy.report())   # the study's name, for optuna.load_study and the dashboard
        return result

    def _warn_of_pruning(self, supernets: int) -> None:
        """Warn before pruning a supernet large enough to take long (DARTS' at its defaults: 20 M parameters)."""
        build = self.config.scoring.build
        edges = [tuple(ops) for ops in self.space.supernet_edges()]
        params = sum(p.numel() for p in self.space.supernet(edges, num_classes=10, seed=0, **build).parameters())
        if params > PRUNE_WARNING_PARAMS:
            size = ", ".join(f"{k}={v}" for k, v in build.items()) or "its default size"
            warnings.warn(f"pruning scores up to {supernets} supernets of up to {params / 1e6:.1f} M parameters "
                          f"({self.space.name} at {size}) one after another, which takes hours on a CPU; a smaller "
                          "supernet ranks ops much faster (TE-NAS prunes NB201 at C=3, N=1 and DARTS at C=1): "
                          "give smaller --build widths", LswagWarning, stacklevel=2)

    def _result(self, arch: str, archive: Archive, history, wall: float) -> SearchResult:
        c = self.config
        final = self.engine.score([arch], tuple(dict.fromkeys([*self.fitness.proxies, "params", "flops"])))[arch]
        scores = {p: (None if failed_value(r.value) else float(r.value)) for p, r in final.items()}
        failures = int((~np.isfinite(archive.scores())).sum())
        return SearchResult(
            space=c.scoring.space, arch=arch, build=dict(c.scoring.build), strategy=c.strategy,
            fitness=self.fitness.name,
            scores=scores, params=scores.get("params"), flops=scores.get("flops"), evaluations=len(archive.archs),
            failures=failures, skipped=self.skipped, wall_seconds=wall, scoring_seconds=archive.seconds,
            new_results=self.store.count() - self.results_before, seed=c.seed,
            truth=self._truth_of(arch), history=history, candidates=list(archive.archs),
            calibration=self.calibration_archs,
            libra=self.libra.explain() if self.libra else "",
            settings={"scoring": asdict(c.scoring), "budget": asdict(c.budget),
                      "population": c.population, "generations": c.generations, "parents": c.parents,
                      "mutation_prob": c.mutation_prob, "crossover_prob": c.crossover_prob,
                      "calibration_seconds": self.calibration_seconds},
            minimise=list(c.minimise), front=self._front(archive), objectives=self._objectives(archive))

    def _truth_of(self, arch: str) -> dict[str, float]:
        """``{metric: value}`` of ``arch`` in the truth (its metric and the more metrics); empty without one."""
        truth = {}
        cell = self.space.parse(arch)
        if self.truth is not None and cell in self.truth.accuracy:   # a pruned cell may lie outside a partial table
            truth[self.truth.metric] = self.truth.value(cell)
            for metric in self.config.more_metrics:
                truth[metric] = self.truth.columns[metric].get(cell)
        return truth

    def _front(self, archive: Archive) -> list[dict[str, Any]]:
        """The archive's Pareto front (:meth:`Archive.front`) as :attr:`SearchResult.front` holds it."""
        if not archive.minimise:
            return []
        scores = archive.scores()
        points = []
        for i in archive.front():
            row = archive.rows[i]
            point = {"arch": archive.archs[i], "fitness": float(scores[i]),
                     **{cost: float(row[cost]) for cost in archive.minimise},
                     "scores": {p: float(row[p]) for p in self.fitness.proxies}}
            if self.truth is not None:
                point["truth"] = self._truth_of(archive.archs[i])
            points.append(point)
        return sorted(points, key=lambda point: (point[archive.minimise[0]], -point["fitness"]))

    @staticmethod
    def _objectives(archive: Archive) -> dict[str, list[float | None]]:
        """Every candidate's fitness and costs (None: failed), for the plot of the front; empty without costs."""
        if not archive.minimise:
            return {}
        columns = {"fitness": archive.scores(), **dict(zip(archive.minimise, archive.costs().T))}
        return {name: [float(v) if math.isfinite(v) else None for v in values] for name, values in columns.items()}


def search(config: SearchConfig, store_path: str | Path, execution: Execution = Execution(), *,
           progress: bool = True) -> SearchResult:
    """Run ``config`` (see :class:`Searcher`) and return the best architecture found."""
    searcher = Searcher(config, store_path, execution, progress=progress)
    try:
        return searcher.run()
    finally:
        searcher.close()
