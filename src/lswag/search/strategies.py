"""Search strategies behind one ask/tell interface, as Optuna's samplers are.

A strategy proposes candidates (:meth:`Strategy.ask`), the searcher scores them through the
engine and adds them to the :class:`Archive`, and the strategy learns their results
(:meth:`Strategy.tell`), until it asks for nothing more; :meth:`Strategy.best` names the result.

* ``evolution`` (AutoFormer's): a random population; then, each generation, the top ``parents``
  of every candidate evaluated so far breed the next population, a ``crossover_prob`` share of it
  by crossover of two parents and the rest by mutation of one (each independent choice redrawn
  with ``mutation_prob``), topped up with random candidates when breeding finds too few new ones;
  it stops after ``generations`` or ``evaluations`` candidates.
* ``random``: ``evaluations`` distinct random candidates.
* ``prune`` (TE-NAS's): start from the space's supernet, in which every edge sums all ops but
  ``none`` (:class:`lswag.spaces.SupernetSpace`). Each round, for every edge that still has more
  than one op, score the supernet with that op removed; on each such edge the op whose removal
  leaves the highest fitness goes, until one op per edge is left. For DARTS cells one more round
  keeps two inputs per node (:meth:`edge_groups`): the supernet without each edge of a node is
  scored and the two edges whose removal costs most stay. The result is the space's architecture
  of what is left (:meth:`from_supernet`). This is TE-NAS's procedure with lswag's fitness
  instead of TE-NAS's NTK condition number and linear regions; the supernet is the space's
  network at the search's build options (TE-NAS: NB201 C=3, N=1; DARTS C=1, two cells), scored
  once on the search's fixed batch and weights (TE-NAS averages 3 re-initialisations), one op per
  edge per round (TE-NAS prunes up to 3 per round on DARTS).

Candidates come from :class:`Proposals`: random draws, mutations and crossovers of the space that
are new, allowed (the truth's architectures, when there is one) and within the budget.

When the search minimises costs beside its fitness (:attr:`lswag.settings.SearchConfig.minimise`),
the :class:`Archive` ranks candidates by Pareto front first (:mod:`lswag.search.pareto`), so that
evolution breeds from the Pareto-best (a multi-objective evolution), and gives the first front.
"""
from __future__ import annotations

import abc
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch.nn as nn

from lswag import spaces
from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.search import pareto
from lswag.search.fitness import Fitness, failed_value


@dataclass(frozen=True)
class Candidate:
    """What a strategy asks to score: an architecture of the space (its canonical text), or a
    network that is none (a pruning supernet) under a key of its own, with ``make(num_classes)``."""

    key: str
    make: Callable[[int], nn.Module] | None = None


class Archive:
    """Every candidate the search has evaluated, in evaluation order, with its proxies' results.
    ``minimise``: the costs (proxies of :data:`lswag.settings.COSTS`, in every row) minimised beside
    the fitness, which make the order a Pareto one (:meth:`ranked`)."""

    def __init__(self, fitness: Fitness, minimise: tuple[str, ...] = ()):
        self.fitness, self.minimise = fitness, tuple(minimise)
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

    def costs(self) -> np.ndarray:
        """The (candidates, costs) array of the minimised costs; NaN where a cost failed."""
        return np.array([[math.nan if failed_value(row[c]) else float(row[c]) for c in self.minimise]
                         for row in self.rows], dtype=float).reshape(len(self.rows), len(self.minimise))

    def _valid(self) -> np.ndarray:
        """Which candidates have a fitness and every cost (the others lie on no front)."""
        return np.isfinite(self.scores()) & np.isfinite(self.costs()).all(axis=1)

    def pareto_ranks(self) -> np.ndarray:
        """Each candidate's Pareto front of fitness (maximised) against the costs (minimised), 0 the
        first; the candidates whose fitness or a cost failed come after every front."""
        valid = self._valid()
        ranks = np.full(len(self.rows), len(self.rows))
        ranks[valid] = pareto.pareto_ranks(pareto.maximised(self.scores()[valid], self.costs()[valid].T))
        return ranks

    def ranked(self) -> list[str]:
        """Archs, best first: by fitness (ties: earlier evaluated first); when costs are minimised, by
        Pareto front first (:meth:`pareto_ranks`), then fitness, then evaluation order."""
        scores = self.scores()
        fronts = self.pareto_ranks() if self.minimise else np.zeros(len(scores), dtype=int)
        return [self.archs[i] for i in sorted(range(len(self.archs)), key=lambda i: (fronts[i], -scores[i], i))]

    def front(self) -> list[int]:
        """The indices (in evaluation order) of the Pareto front: the candidates no other dominates in
        fitness and the minimised costs, among those whose fitness and costs did not fail."""
        return np.flatnonzero(self.pareto_ranks() == 0).tolist()

    def check_first(self) -> None:
        """A one-line error when the fitness failed on every candidate so far."""
        scores = self.scores()
        if len(scores) and not np.isfinite(scores).any():
            reasons = [v.reason for row in self.rows for v in row.values() if isinstance(v, Failure)]
            raise LswagError(f"fitness {self.fitness.name} failed on all {len(scores)} first candidates"
                             + (f": {reasons[0]}" if reasons else "") + "; choose another fitness")


class Proposals:
    """New candidates for a strategy: random, mutated or crossed architectures of ``space`` drawn
    from ``rng``, not evaluated yet, among ``allowed`` when given, and within the budget
    (``admissible`` keeps those of a list that fit it)."""

    def __init__(self, space: spaces.SearchSpace, rng: random.Random, *, allowed: list[str] | None,
                 admissible: Callable[[list[str]], list[str]], mutation_prob: float, crossover_prob: float):
        self.space, self.rng, self.allowed = space, rng, allowed
        self._allowed_set = set(allowed) if allowed is not None else None
        self.admissible, self.mutation_prob, self.crossover_prob = admissible, mutation_prob, crossover_prob

    def random_arch(self) -> str:
        if self.allowed is not None:
            return self.rng.choice(self.allowed)
        return self.space.format(self.space.sample(1, seed=self.rng.getrandbits(32))[0])

    def _mutate(self, parents: list[str]) -> str:
        return self.space.format(self.space.mutate(self.rng.choice(parents), self.rng, prob=self.mutation_prob))

    def _cross(self, parents: list[str]) -> str:
        first, second = self.rng.sample(parents, 2)
        return self.space.format(self.space.crossover(first, second, self.rng))

    def _fresh(self, make: Callable[[], str], archive: Archive, taken: set[str], tries: int) -> list[str]:
        """Up to ``tries`` new candidates from ``make`` (not evaluated yet, allowed)."""
        out = []
        for _ in range(tries):
            try:
                arch = make()
            except LswagError:   # e.g. AutoFormer crossover of parents of unequal depth
                continue
            if arch in archive or arch in taken or (self._allowed_set is not None and arch not in self._allowed_set):
                continue
            taken.add(arch)
            out.append(arch)
        return out

    def draw(self, count: int, archive: Archive, parents: list[str] | None = None) -> list[str]:
        """``count`` new admissible candidates: bred from ``parents`` when given, else random."""
        taken: set[str] = set()
        chosen: list[str] = []
        for _ in range(50):   # rounds of drawing, budget filtering, topping up
            need = count - len(chosen)
            if need <= 0:
                break
            drawn: list[str] = []
            if parents:
                crossovers = round(need * self.crossover_prob) if len(parents) > 1 else 0
                for _ in range(crossovers):
                    drawn += self._fresh(lambda: self._cross(parents), archive, taken, 1)
                for _ in range(need - crossovers):
                    drawn += self._fresh(lambda: self._mutate(parents), archive, taken, 1)
            if len(drawn) < need:
                drawn += self._fresh(self.random_arch, archive, taken, 3 * (need - len(drawn)))[:need - len(drawn)]
            chosen += self.admissible(drawn)[:need]
        return chosen[:count]


class Strategy(abc.ABC):
    """Proposes candidates and learns their results; see the module docstring."""

    #: what a candidate is, for the progress bar
    unit = "arch"

    def __init__(self, archive: Archive):
        self.archive = archive
        self.history: list[float] = []    # the best fitness after each batch of candidates

    @property
    @abc.abstractmethod
    def total(self) -> int:
        """How many candidates the strategy will evaluate (at most)."""

    @abc.abstractmethod
    def ask(self) -> list[Candidate]:
        """The next candidates to score; none when the search is over."""

    @abc.abstractmethod
    def tell(self, candidates: list[Candidate], rows: list[dict[str, Any]]) -> None:
        """The results ``{proxy: value or Failure}`` of the candidates last asked for (in the archive now)."""

    def best(self) -> str:
        """The architecture the search returns."""
        if not self.archive.archs:
            raise LswagError("the search found no admissible candidate")
        return self.archive.ranked()[0]


class Evolution(Strategy):
    def __init__(self, archive: Archive, proposals: Proposals, *, total: int, population: int, generations: int,
                 parents: int):
        super().__init__(archive)
        self.proposals, self._total = proposals, total
        self.population, self.generations, self.parents = population, generations, parents
        self.generation = 0

    @property
    def total(self) -> int:
        return self._total

    def ask(self) -> list[Candidate]:
        if self.generation >= self.generations:
            return []
        self.generation += 1
        if self.generation == 1:
            archs = self.proposals.draw(min(self.population, self.total), self.archive)
        else:
            count = min(self.population, self.total - len(self.archive.archs))
            if count <= 0:
                return []
            archs = self.proposals.draw(count, self.archive, self.archive.ranked()[:self.parents])
        return [Candidate(arch) for arch in archs]

    def tell(self, candidates: list[Candidate], rows: list[dict[str, Any]]) -> None:
        if self.generation == 1:
            self.archive.check_first()
        self.history.append(float(self.archive.scores().max()))


class RandomSearch(Strategy):
    def __init__(self, archive: Archive, proposals: Proposals, *, total: int):
        super().__init__(archive)
        self.proposals, self._total, self.asked = proposals, total, False

    @property
    def total(self) -> int:
        return self._total

    def ask(self) -> list[Candidate]:
        if self.asked:
            return []
        self.asked = True
        return [Candidate(arch) for arch in self.proposals.draw(self.total, self.archive)]

    def tell(self, candidates: list[Candidate], rows: list[dict[str, Any]]) -> None:
        self.archive.check_first()
        self.history.append(float(self.archive.scores().max()))


class Prune(Strategy):
    unit = "net"

    def __init__(self, archive: Archive, space: spaces.SupernetSpace, *, build: dict[str, Any], seed: int):
        super().__init__(archive)
        self.space, self.build, self.seed = space, build, seed
        self.edges = [tuple(ops) for ops in space.supernet_edges()]
        self.groups = [g for g in space.edge_groups() if len(g) > 2]
        rounds = len(self.edges[0]) - 1
        self._total = len(self.edges) * sum(k + 1 for k in range(1, rounds + 1)) + sum(len(g) for g in self.groups)
        self._asked: list = []        # what each candidate of the last ask removes: (edge, op) or an edge
        self._inputs_done = False

    @property
    def total(self) -> int:
        return self._total

    def _candidate(self, variant: list[tuple[str, ...]]) -> Candidate:
        space, build, seed = self.space, self.build, self.seed
        return Candidate(space.supernet_key(variant),
                         lambda classes: space.supernet(variant, num_classes=classes, seed=seed, **build))

    def ask(self) -> list[Candidate]:
        edges = self.edges
        if any(len(ops) > 1 for ops in edges):                        # ops, one per edge per round
            self._asked = [(e, op) for e, ops in enumerate(edges) if len(ops) > 1 for op in ops]
            return [self._candidate([tuple(o for o in ops if o != op) if i == e else ops
                                     for i, ops in enumerate(edges)]) for e, op in self._asked]
        if self.groups and not self._inputs_done:                     # inputs, two per node
            self._inputs_done = True
            self._asked = [e for group in self.groups for e in group]
            return [self._candidate([() if i == e else ops for i, ops in enumerate(edges)]) for e in self._asked]
        return []

    def tell(self, candidates: list[Candidate], rows: list[dict[str, Any]]) -> None:
        scores = self.archive.fitness.pool_scores(rows)
        if not any(math.isfinite(s) for s in scores):
            raise LswagError(f"fitness {self.archive.fitness.name} failed on all {len(rows)} supernets of a "
                             "pruning round; choose another fitness")
        self.history.append(float(scores.max()))
        if not self._inputs_done:
            for e in {e for e, _ in self._asked}:
                # the op whose removal leaves the highest fitness; ties: the one listed last
                _, _, removed = max((scores[i], i, op) for i, (edge, op) in enumerate(self._asked) if edge == e)
                self.edges[e] = tuple(o for o in self.edges[e] if o != removed)
            return
        by_edge = dict(zip(self._asked, scores))
        for group in self.groups:
            keep = sorted(group, key=lambda e: (by_edge[e], e))[:2]   # removing these costs most
            for e in group:
                if e not in keep:
                    self.edges[e] = ()

    def best(self) -> str:
        return self.space.format(self.space.from_supernet(self.edges))

