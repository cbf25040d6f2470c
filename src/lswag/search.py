"""``lswag search``: zero-shot search that returns a network to train (METHOD.md §6).

Strategies (:data:`STRATEGIES`):

* ``evolution`` (AutoFormer's): a random population (50); then, each generation, the top
  ``parents`` (10) of every candidate evaluated so far breed the next population, a
  ``crossover_prob`` share of it by crossover of two parents and the rest by mutation of one
  (each independent choice redrawn with ``mutation_prob``, 0.2), topped up with random
  candidates when breeding finds too few new ones; it stops after ``generations`` (20) or
  ``evaluations`` candidates.
* ``random``: ``evaluations`` distinct random candidates.
* ``prune`` (TE-NAS's, :mod:`lswag.prune`): from the supernet holding every op on every edge
  (NB201, DARTS, NB301), remove in each round, on each edge, the op whose removal leaves the
  highest fitness, until one op per edge is left (DARTS: then two inputs per node).

The fitness (:class:`Fitness`) is a proxy, a rank combination of proxies (``rank:a,b,c``,
``az_nas``, ``te_nas``) or a fitted LIBRA. Rank combinations score a candidate against a pool;
here the pool is every candidate evaluated so far, so the selection is recomputed on the whole
archive each generation (for a single proxy this is the proxy's value).

Every candidate is scored through the result store of ``lswag bench``
(:class:`lswag.bench.StoreScorer`) with the same keys, so a search reuses what a benchmark run
scored, and an interrupted search rerun with the same settings replays its draws against the
store, computing only what it had not finished: it resumes from where it stopped, exactly.
Parameter and FLOP budgets (in millions, as the ``params`` and ``flops`` proxies) are checked
on every candidate before it is scored.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from lswag import __version__, spaces
from lswag import proxies as registry
from lswag.bench import Scoring, StoreScorer, check_executor, sample_archs
from lswag.benchmarks import GroundTruth, load_truth
from lswag.ensembles import AZ_NAS, TE_NAS, az_nas, rank_average, te_nas
from lswag.errors import LswagError, unknown_choice
from lswag.proxies import Failure
from lswag.stats import failures_last
from lswag.store import Store

STRATEGIES = ("evolution", "random", "prune")
#: the proxies a LIBRA fitness chooses from by default: the zoo less its costliest members
LIBRA_POOL = ("l_swag", "zico", "swap", "nwot", "synflow", "grad_norm", "snip", "fisher", "plain", "l2_norm",
              "jacov", "params", "flops")
RESULT_FORMAT = "lswag-search"


# -- fitness -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fitness:
    """What a search maximises: ``proxies`` scored per candidate, ``combine`` over a pool of them."""

    name: str
    proxies: tuple[str, ...]
    combine: Callable[[list[Mapping[str, Any]]], np.ndarray] = field(repr=False)
    describe: str = ""

    def pool_scores(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Fitness of each row ``{proxy: value or Failure}`` of a pool; failures are ``-inf``."""
        if not rows:
            return np.zeros(0)
        failed = np.array([any(_failed(row[p]) for p in self.proxies) for row in rows])
        scores = np.asarray(self.combine(rows), dtype=float)
        return np.where(failed | ~np.isfinite(scores), -math.inf, scores)


def _failed(value: Any) -> bool:
    return isinstance(value, Failure) or value is None or not math.isfinite(float(value))


def _pool(function, components) -> Callable:
    def combine(rows):
        table = {i: {c: row[c] for c in components} for i, row in enumerate(rows)}
        combined = function(table, components)
        return [combined[i] for i in range(len(rows))]
    return combine


def make_fitness(spec: str, libra=None) -> Fitness:
    """A :class:`Fitness` from its text: a proxy name, ``rank:a,b,...`` (rank averaging),
    ``az_nas``, ``te_nas``, or ``libra`` with a fitted ``libra`` (:func:`lswag.libra.fit`)."""
    spec = spec.strip()
    if spec == "libra":
        if libra is None:
            raise LswagError("fitness libra needs a fitted LIBRA: give --truth and --metric, it is fitted on "
                             "--calibration architectures of the truth file")
        return Fitness("libra", libra.proxies, lambda rows: libra.score({p: [_value(r[p]) for r in rows]
                                                                          for p in libra.proxies}),
                       f"LIBRA of {', '.join(libra.proxies)} ({libra.combination})")
    if spec in ("az_nas", "te_nas"):
        components = AZ_NAS if spec == "az_nas" else TE_NAS
        return Fitness(spec, components, _pool(az_nas if spec == "az_nas" else te_nas, components),
                       f"{spec} of {', '.join(components)} over the archive")
    if spec.startswith("rank:"):
        components = tuple(dict.fromkeys(p.strip() for p in spec[5:].split(",") if p.strip()))
        if len(components) < 2:
            raise LswagError(f"a rank fitness combines at least two proxies, e.g. rank:l_swag,nwot; got {spec!r}")
        for name in components:
            registry.get(name)
        return Fitness(spec, components, _pool(rank_average, components),
                       f"rank average of {', '.join(components)} over the archive")
    if spec not in registry.names():
        raise LswagError(f"unknown fitness {spec!r}; valid: a proxy ({', '.join(registry.names())}), "
                         "rank:PROXY,PROXY,..., az_nas, te_nas or libra")
    return Fitness(spec, (spec,), lambda rows: failures_last([_value(r[spec]) for r in rows]), spec)


def _value(value: Any) -> float:
    return math.nan if _failed(value) else float(value)


# -- budgets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Parameter and FLOP limits in millions (``params`` and ``flops`` proxies); None is no limit."""

    min_params: float | None = None
    max_params: float | None = None
    min_flops: float | None = None
    max_flops: float | None = None

    def __post_init__(self):
        for kind in ("params", "flops"):
            low, high = getattr(self, f"min_{kind}"), getattr(self, f"max_{kind}")
            if low is not None and high is not None and low > high:
                raise LswagError(f"impossible budget: min {kind} {low} M is above max {kind} {high} M")

    @property
    def proxies(self) -> tuple[str, ...]:
        kinds = [k for k in ("params", "flops")
                 if getattr(self, f"min_{k}") is not None or getattr(self, f"max_{k}") is not None]
        return tuple(kinds)

    def admits(self, costs: Mapping[str, float]) -> bool:
        for kind in self.proxies:
            value = costs[kind]
            low, high = getattr(self, f"min_{kind}"), getattr(self, f"max_{kind}")
            if (low is not None and value < low) or (high is not None and value > high):
                return False
        return True

    def text(self) -> str:
        parts = []
        for kind in self.proxies:
            low, high = getattr(self, f"min_{kind}"), getattr(self, f"max_{kind}")
            parts.append(f"{kind} in [{'-inf' if low is None else low}, {'inf' if high is None else high}] M")
        return " and ".join(parts) or "no budget"


# -- the search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchConfig:
    """A search; ``scoring`` says how every candidate is scored (its store keys)."""

    scoring: Scoring
    strategy: str = "evolution"
    fitness: str = "l_swag"
    evaluations: int | None = None          # evolution: population x generations by default
    population: int = 50
    generations: int = 20
    parents: int = 10
    mutation_prob: float = 0.2
    crossover_prob: float = 0.5
    seed: int = 0                           # of the search's draws (the scoring has its own)
    budget: Budget = Budget()
    truth: str | None = None                # candidates limited to its archs; the result looked up
    metrics: tuple[str, ...] = ()
    arch_column: str | None = None    # default: the space's truth_arch_column
    calibration: int = 100                  # archs a LIBRA fitness is fitted on
    libra_pool: tuple[str, ...] = LIBRA_POOL
    #: proxies scored with every candidate besides the fitness's, sharing its passes, so that other
    #: searches and analyses find them in the store
    also: tuple[str, ...] = ()


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
    skipped: int                             # candidates left out: their params or FLOPs failed
    wall_seconds: float                      # of this run (a resumed one reads the store)
    scoring_seconds: float                   # the fitness proxies' stored seconds: what a fresh run costs
    seed: int
    truth: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)     # best fitness after each generation / round
    candidates: list[str] = field(default_factory=list)    # every evaluated candidate, in order
    calibration: list[str] = field(default_factory=list)   # the truth's cells a LIBRA fitness was fitted on
    libra: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": RESULT_FORMAT, "lswag": __version__, **asdict(self)}, indent=2) + "\n")
        return path


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


class _Archive:
    """Every candidate the search has evaluated, in evaluation order, with its proxies' results."""

    def __init__(self, fitness: Fitness):
        self.fitness = fitness
        self.archs: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.seconds = 0.0
        self._seen: set[str] = set()

    def __contains__(self, arch: str) -> bool:
        return arch in self._seen

    def add(self, arch: str, results: Mapping[str, Any]) -> None:
        self._seen.add(arch)
        self.archs.append(arch)
        self.rows.append({p: r.value for p, r in results.items()})
        # the fitness's own cost (an upper bound when its proxies share passes), not that of SearchConfig.also
        self.seconds += sum(results[p].seconds for p in self.fitness.proxies)

    def scores(self) -> np.ndarray:
        return self.fitness.pool_scores(self.rows)

    def describe_best(self) -> str:
        """The best so far, for the progress bar: a one-proxy fitness's value; for a pool fitness (a rank
        sum, meaningful only within the pool) the best candidate's proxy values instead."""
        scores = self.scores()
        if not np.isfinite(scores).any():
            return "none yet"
        best = int(np.argmax(scores))              # the first of equals, as ranked()
        if len(self.fitness.proxies) == 1:
            return f"{scores[best]:.4g}"
        return ", ".join(f"{p} {float(self.rows[best][p]):.3g}" for p in self.fitness.proxies)

    def ranked(self) -> list[str]:
        """Archs, best first (ties: earlier evaluated first)."""
        scores = self.scores()
        return [self.archs[i] for i in sorted(range(len(self.archs)), key=lambda i: (-scores[i], i))]


class Searcher:
    """Runs a :class:`SearchConfig` against a store; see the module docstring."""

    def __init__(self, config: SearchConfig, store_path: str | Path, *, workers: int = 1, executor: str = "local",
                 ray_address: str | None = None, progress: bool = True):
        c = config
        if c.strategy not in STRATEGIES:
            raise unknown_choice("search strategy", c.strategy, STRATEGIES)
        for name, value, low in (("population", c.population, 2), ("generations", c.generations, 1),
                                 ("parents", c.parents, 1), ("calibration", c.calibration, 3)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LswagError(f"{name} must be an integer >= {low}, got {value!r}")
        if c.evaluations is not None and (not isinstance(c.evaluations, int) or c.evaluations < 1):
            raise LswagError(f"evaluations must be a positive integer, got {c.evaluations!r}")
        for name, value in (("mutation_prob", c.mutation_prob), ("crossover_prob", c.crossover_prob)):
            if not 0 <= value <= 1:
                raise LswagError(f"{name} must lie in [0, 1], got {value}")
        if c.fitness == "libra" and not (c.truth and c.metrics):
            raise LswagError("fitness libra is fitted on ground truth: give --truth and --metric")
        if c.metrics and not c.truth:
            raise LswagError("--metric needs --truth (the file the found architecture is looked up in)")
        check_executor(workers, executor, ray_address)
        if c.fitness != "libra":
            make_fitness(c.fitness)             # an unknown fitness fails before any file is made
        self.config, self.space = c, spaces.get(c.scoring.space)
        if c.strategy == "prune" and not hasattr(self.space, "supernet"):
            raise LswagError(f"strategy prune needs a cell space with a supernet (nb201, darts, nb301); "
                             f"{self.space.name} has none")
        self.workers, self.executor, self.ray_address, self.progress = workers, executor, ray_address, progress
        self.truth: GroundTruth | None = None
        self.allowed: list[str] | None = None
        if c.truth:
            if not c.metrics:
                raise LswagError(f"--truth {c.truth} needs --metric: the column(s) the found architecture is looked up in")
            self.truth = load_truth(c.truth, space=self.space.name, metric=c.metrics[0], arch_column=c.arch_column)
            for metric in c.metrics[1:]:
                if metric not in self.truth.columns:
                    raise unknown_choice("metric", metric, [self.truth.metric, *self.truth.columns])
            self.allowed = sorted(self.space.format(a) for a in self.truth.archs())
            self._allowed_set = set(self.allowed)
        self.store = Store(store_path, c.scoring.space)
        self.scorer = self.cost_scorer = None
        self.libra = None
        self.calibration_seconds, self.calibration_archs = 0.0, []
        try:
            if c.fitness == "libra":
                self.libra = self._fit_libra()
            self.fitness = make_fitness(c.fitness, self.libra)
            self.scorer = self._scorer(tuple(dict.fromkeys([*self.fitness.proxies, *c.also])))
            self.cost_scorer = self._scorer(c.budget.proxies) if c.budget.proxies else None
        except BaseException:
            self.close()
            raise
        self.rng = random.Random(c.seed)
        self.skipped = 0                   # candidates whose params or FLOPs could not be computed

    def close(self) -> None:
        for scorer in (self.scorer, self.cost_scorer):
            if scorer is not None:
                scorer.close()
        self.store.close()

    def _scorer(self, proxies) -> StoreScorer:
        s = self.config.scoring
        setup = Scoring(s.space, tuple(proxies), data=s.data, batch_size=s.batch_size, seed=s.seed,
                        image_size=s.image_size, gradient_draws=s.gradient_draws, init=s.init,
                        options={k: v for k, v in s.options.items() if k in proxies}, build=s.build)
        return StoreScorer(setup, self.store, workers=self.workers, executor=self.executor,
                           ray_address=self.ray_address)

    def _fit_libra(self):
        from lswag import libra

        c = self.config
        # a stream of its own: drawn with the search's seed, the calibration cells would be the very cells
        # random search (and evolution's first population) draws, and LIBRA would rank its own fitting set
        archs = [self.space.format(a) for a in
                 sample_archs(self.truth.archs(), self.space, c.calibration, f"libra-calibration-{c.seed}")]
        pool = tuple(dict.fromkeys([*c.libra_pool, "params"]))
        with self._scorer(pool) as scorer:
            bar = tqdm(total=len(archs), desc="LIBRA calibration", unit="arch", disable=not self.progress)
            scored = scorer.score(archs, bar)
            bar.close()
        self.calibration_seconds = sum(r.seconds for arch in archs for r in scored[arch].values())
        self.calibration_archs = archs
        columns = {p: np.array([_value(scored[a][p].value) for a in archs]) for p in pool}
        truth = np.array([self.truth.value(self.space.parse(a)) for a in archs])
        table = libra.ScoreTable(f"{len(archs)} calibration archs of {c.truth}", self.truth.metric, tuple(archs),
                                 truth, columns, tuple(c.libra_pool))
        return libra.fit(table, proxies=c.libra_pool)

    # -- candidates ---------------------------------------------------------------------------

    def _random_arch(self) -> str:
        if self.allowed is not None:
            return self.rng.choice(self.allowed)
        return self.space.format(self.space.sample(1, seed=self.rng.getrandbits(32))[0])

    def _admissible(self, archs: list[str]) -> list[str]:
        """``archs`` within the budget (their costs come from, and go to, the store)."""
        if self.cost_scorer is None or not archs:
            return archs
        costs = self.cost_scorer.score(archs)
        keep = []
        for arch in archs:
            values = {k: costs[arch][k].value for k in self.config.budget.proxies}
            if any(isinstance(v, Failure) for v in values.values()):
                self.skipped += 1
            elif self.config.budget.admits(values):
                keep.append(arch)
        return keep

    def check_budget(self, samples: int = 100) -> None:
        """A one-line error when none of ``samples`` random candidates fits the budget."""
        if self.cost_scorer is None:
            return
        rng_state = self.rng.getstate()
        archs = list(dict.fromkeys(self._random_arch() for _ in range(samples)))
        self.rng.setstate(rng_state)   # the check leaves the search's draws as they were
        if self._admissible(archs):
            return
        costs = self.cost_scorer.score(archs)
        spans = []
        for kind in self.config.budget.proxies:
            values = [costs[a][kind].value for a in archs if not isinstance(costs[a][kind].value, Failure)]
            if values:
                spans.append(f"{kind} {min(values):.4g}..{max(values):.4g} M")
        raise LswagError(f"no {self.space.name} architecture fits the budget ({self.config.budget.text()}): "
                         f"none of {len(archs)} random ones does (they span {', '.join(spans) or 'nothing'}); "
                         "widen the budget")

    def _fresh(self, make: Callable[[], str], archive: _Archive, taken: set[str], tries: int) -> list[str]:
        """Up to ``tries`` new candidates from ``make`` (not evaluated yet, allowed)."""
        out = []
        for _ in range(tries):
            try:
                arch = make()
            except LswagError:   # e.g. AutoFormer crossover of parents of unequal depth
                continue
            if arch in archive or arch in taken or (self.allowed is not None and arch not in self._allowed_set):
                continue
            taken.add(arch)
            out.append(arch)
        return out

    def _draw(self, count: int, archive: _Archive, parents: list[str] | None = None) -> list[str]:
        """``count`` new admissible candidates: bred from ``parents`` when given, else random."""
        c, taken, chosen = self.config, set(), []
        for _ in range(50):   # rounds of drawing, budget filtering, topping up
            need = count - len(chosen)
            if need <= 0:
                break
            drawn: list[str] = []
            if parents:
                crossovers = round(need * c.crossover_prob) if len(parents) > 1 else 0
                for _ in range(crossovers):
                    drawn += self._fresh(lambda: self._cross(parents), archive, taken, 1)
                for _ in range(need - crossovers):
                    drawn += self._fresh(lambda: self._mutate(parents), archive, taken, 1)
            if len(drawn) < need:
                drawn += self._fresh(self._random_arch, archive, taken, 3 * (need - len(drawn)))[:need - len(drawn)]
            chosen += self._admissible(drawn)[:need]
        return chosen[:count]

    def _mutate(self, parents: list[str]) -> str:
        return self.space.format(self.space.mutate(self.rng.choice(parents), self.rng, prob=self.config.mutation_prob))

    def _cross(self, parents: list[str]) -> str:
        first, second = self.rng.sample(parents, 2)
        return self.space.format(self.space.crossover(first, second, self.rng))

    # -- running ------------------------------------------------------------------------------

    def _evaluate(self, archs: list[str], archive: _Archive, bar: tqdm) -> None:
        scored = self.scorer.score(archs, bar)
        for arch in archs:
            archive.add(arch, scored[arch])
        bar.set_postfix(best=archive.describe_best())

    def _check_first(self, archive: _Archive) -> None:
        scores = archive.scores()
        if len(scores) and not np.isfinite(scores).any():
            reasons = [v.reason for row in archive.rows for v in row.values() if isinstance(v, Failure)]
            raise LswagError(f"fitness {self.fitness.name} failed on all {len(scores)} first candidates"
                             + (f": {reasons[0]}" if reasons else "") + "; choose another fitness")

    def run(self) -> SearchResult:
        c = self.config
        self.check_budget()
        start = time.perf_counter()
        archive = _Archive(self.fitness)
        if c.strategy == "prune":
            from lswag.prune import prune

            arch, history, evaluations = prune(self, archive)
            return self._result(arch, archive, history, evaluations, time.perf_counter() - start)
        total = c.evaluations or (c.population * c.generations if c.strategy == "evolution" else 1000)
        history: list[float] = []
        bar = tqdm(total=total, desc=f"{c.strategy} search ({self.fitness.name})", unit="arch",
                   disable=not self.progress)
        if c.strategy == "random":
            self._evaluate(self._draw(total, archive), archive, bar)
            self._check_first(archive)
            history.append(float(archive.scores().max()))
        else:
            first = self._draw(min(c.population, total), archive)
            self._evaluate(first, archive, bar)
            self._check_first(archive)
            history.append(float(archive.scores().max()))
            for _ in range(c.generations - 1):
                count = min(c.population, total - len(archive.archs))
                if count <= 0:
                    break
                parents = archive.ranked()[:c.parents]
                children = self._draw(count, archive, parents)
                if not children:
                    break
                self._evaluate(children, archive, bar)
                history.append(float(archive.scores().max()))
        bar.close()
        if not archive.archs:
            raise LswagError(f"the search found no admissible candidate ({c.budget.text()})")
        best = archive.ranked()[0]
        return self._result(best, archive, history, len(archive.archs), time.perf_counter() - start)

    def _result(self, arch: str, archive: _Archive, history, evaluations: int, wall: float) -> SearchResult:
        c = self.config
        with self._scorer(tuple(dict.fromkeys([*self.fitness.proxies, "params", "flops"]))) as scorer:
            final = scorer.score([arch])[arch]
        scores = {p: (None if _failed(r.value) else float(r.value)) for p, r in final.items()}
        truth = {}
        cell = self.space.parse(arch)
        if self.truth is not None and cell in self.truth.accuracy:   # a pruned cell may lie outside a partial table
            truth[self.truth.metric] = self.truth.value(cell)
            for metric in c.metrics[1:]:
                truth[metric] = self.truth.columns[metric].get(cell)
        failures = int((~np.isfinite(archive.scores())).sum())
        return SearchResult(
            space=c.scoring.space, arch=arch, build=dict(c.scoring.build), strategy=c.strategy, fitness=self.fitness.name,
            scores=scores, params=scores.get("params"), flops=scores.get("flops"), evaluations=evaluations,
            failures=failures, skipped=self.skipped, wall_seconds=wall, scoring_seconds=archive.seconds, seed=c.seed, truth=truth,
            history=history, candidates=list(archive.archs), calibration=self.calibration_archs, libra=self.libra.explain() if self.libra else "",
            settings={"scoring": {k: v for k, v in asdict(c.scoring).items()}, "budget": asdict(c.budget),
                      "population": c.population, "generations": c.generations, "parents": c.parents,
                      "mutation_prob": c.mutation_prob, "crossover_prob": c.crossover_prob,
                      "calibration_seconds": self.calibration_seconds})


def search(config: SearchConfig, store_path: str | Path, **kwargs) -> SearchResult:
    """Run ``config`` (see :class:`Searcher`) and return the best architecture found."""
    searcher = Searcher(config, store_path, **kwargs)
    try:
        return searcher.run()
    finally:
        searcher.close()
