"""Optuna's samplers as search strategies: ``optuna-tpe`` and ``optuna-nsga2``.

:class:`OptunaSearch` runs an Optuna study through Optuna's ask/tell interface, behind lswag's own
(:class:`lswag.search.strategies.Strategy`): Optuna proposes each candidate by answering the named
choices of a :class:`lswag.spaces.ChoiceSpace` (:meth:`~lswag.spaces.ChoiceSpace.ask`, through
:class:`TrialChooser`), the searcher scores it through the engine as any other candidate, and
Optuna is told its fitness.

* ``optuna-tpe`` (:class:`optuna.samplers.TPESampler`): a Tree-structured Parzen Estimator; after
  10 random candidates it proposes, one at a time, what its model of the good candidates so far
  favours. The better choice for a small budget of evaluations and a single objective.
* ``optuna-nsga2`` (:class:`optuna.samplers.NSGAIISampler`, ``population_size`` the search's
  ``population``): a genetic algorithm, one generation (``population`` candidates) at a time, whose
  selection is by Pareto rank and crowding; the one to use with costs to minimise (``minimise``)
  and enough evaluations for several generations.

Both are seeded with the search's ``seed``; the total is ``evaluations`` or ``population`` x
``generations``. Objectives: the fitness (maximised) and, with ``minimise``, each cost (minimised,
the archive row's value: millions for params and FLOPs, ms for latency), a multi-objective study.
The fitness must be a value of the candidate alone (a proxy, :attr:`Fitness.per_candidate`): a
pool fitness (``rank:...``, ``az_nas``, ``te_nas``, ``libra``) changes as the archive grows, and
Optuna learns each value once. Each proposal is told to Optuna as follows:

* a new candidate is scored (a batch of them in one engine call) and told its objectives; one whose
  fitness or a cost failed is told as a FAIL trial (it stays in the archive, ranked last);
* an architecture evaluated before (Optuna often proposes one again) is told the values it had, at
  once, neither scored nor counted again; after 1000 such proposals in a row the sampler has
  exhausted what it proposes (a small space) and the search stops with a note in the result;
* one outside the search's allowed architectures (a truth table) is told as FAIL and not counted;
  after 1000 in a row the search fails, as Optuna cannot be restricted to a small table;
* one outside the budget is told as PRUNED and not counted.

Resume: the study lives in memory, as every strategy's state. An interrupted search rerun with the
same settings replays from trial 0 against lswag's store (scores read back, only unfinished
candidates computed): the samplers are seeded and deterministic given the same history, so the rerun
proposes the same trials, is told the same values, and ends with exactly the candidates and result
of an uninterrupted run (checked for both samplers with Optuna 5.1, tests/test_optuna.py).

Optuna's own tools: with ``optuna_storage`` (a storage URL, e.g. ``sqlite:///study.db``), every
finished trial is mirrored, in trial order as trials finish, into a persistent study named by
:func:`study_name` (given in the result's ``settings["optuna_study"]``), with the architecture's
canonical text as its user attribute ``arch``, so that ``optuna-dashboard sqlite:///study.db`` or
``optuna.load_study(study_name=..., storage=...)`` shows the search. A rerun adds only the trials
the persistent study does not hold yet (by trial number), so it never holds duplicates; a study of
the same name holding other architectures (a search with other settings) is an error.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

from lswag import spaces
from lswag.errors import LswagError, LswagWarning
from lswag.search.fitness import failed_value, make_fitness
from lswag.search.strategies import Archive, Candidate, Strategy
from lswag.settings import SearchConfig

if TYPE_CHECKING:
    import optuna

#: proposals of evaluated architectures in a row after which the search stops (the space is exhausted)
DUPLICATE_LIMIT = 1000
#: proposals outside the allowed architectures in a row after which the search fails
REJECTION_LIMIT = 1000
#: the random candidates TPE starts with (Optuna's default), after which the fitness must not fail on all
TPE_STARTUP = 10


def import_optuna(strategy: str):
    """The ``optuna`` module with its per-trial logging and experimental warnings silenced, or a
    one-line error telling how to install it."""
    try:
        import optuna
    except ImportError:
        raise LswagError(f"strategy {strategy} needs Optuna: pip install 'lswag[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def check_search(config: SearchConfig, space: spaces.SearchSpace) -> None:
    """A one-line error, before any file is made, when ``config`` cannot run as an Optuna search of
    ``space``: Optuna missing, a space not made of named choices, or a pool fitness."""
    strategy = config.strategy
    import_optuna(strategy)
    if not isinstance(space, spaces.ChoiceSpace):
        searchable = [name for name in spaces.names() if isinstance(spaces.get(name), spaces.ChoiceSpace)]
        raise LswagError(f"strategy {strategy} searches a space made of named choices ({', '.join(searchable)} "
                         f"or a define-by-run family, --space MODULE:FUNCTION); {space.name} is not one: "
                         "use evolution or random")
    if config.fitness == "libra" or not make_fitness(config.fitness).per_candidate:
        raise LswagError(f"strategy {strategy} needs a fitness of each candidate alone (a proxy); "
                         f"{config.fitness} ranks candidates against the archive, so its values change as it "
                         "grows: use evolution or random")


def study_name(config: SearchConfig) -> str:
    """The persistent study's name: ``lswag-SPACE-STRATEGY-FITNESS-seedSEED``, then ``-min-COSTS``."""
    name = f"lswag-{config.scoring.space}-{config.strategy}-{config.fitness}-seed{config.seed}"
    return name + (f"-min-{'-'.join(config.minimise)}" if config.minimise else "")


class TrialChooser:
    """A :class:`lswag.spaces.Chooser` answered by an Optuna trial: every choice is a categorical
    parameter of the trial under its name, a per-layer choice one per element (``name[i]``)."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def choice(self, name: str, options: Sequence[Any]) -> Any:
        return self.trial.suggest_categorical(name, list(options))

    def choices(self, name: str, options: Sequence[Any], count: int) -> list[Any]:
        return [self.trial.suggest_categorical(f"{name}[{i}]", list(options)) for i in range(count)]

    def integer(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.trial.suggest_int(name, low, high, step=step)


class OptunaSearch(Strategy):
    """An Optuna study as a strategy (see the module docstring): ``optuna-tpe`` asks one candidate at
    a time, ``optuna-nsga2`` a generation; ``allowed`` (canonical texts) limits the candidates when
    given and ``admissible`` keeps those of a list within the budget, as for :class:`Proposals`."""

    def __init__(self, archive: Archive, space: spaces.ChoiceSpace, config: SearchConfig, *, total: int,
                 allowed: Sequence[str] | None, admissible: Callable[[list[str]], list[str]]):
        super().__init__(archive)
        optuna = import_optuna(config.strategy)
        self.states = optuna.trial.TrialState
        self.space, self.costs, self._total = space, config.minimise, total
        self.allowed = set(allowed) if allowed is not None else None
        self.admissible = admissible
        directions = ["maximize", *["minimize"] * len(config.minimise)]
        if config.strategy == "optuna-nsga2":
            sampler = optuna.samplers.NSGAIISampler(population_size=config.population, seed=config.seed)
            self.batch, first = config.population, config.population
        else:
            sampler = optuna.samplers.TPESampler(n_startup_trials=TPE_STARTUP, seed=config.seed)
            self.batch, first = 1, TPE_STARTUP
        self.study = optuna.create_study(directions=directions, sampler=sampler)
        self.first = min(first, total)            # candidates after which a fitness failing on all is an error
        self.name, self.storage = study_name(config), config.optuna_storage
        self.persistent, self.persisted_archs = None, []
        if self.storage:
            self.persistent = self._open_persistent(optuna, directions)
            self.persisted_archs = [t.user_attrs.get("arch") for t in self.persistent.get_trials(deepcopy=False)]
        self.known: dict[str, tuple[Any, list[float] | None]] = {}   # arch -> (state, values) told before
        self.pending: dict[str, list[optuna.Trial]] = {}              # arch asked in this batch -> its trials
        self.finished: dict[int, optuna.trial.FrozenTrial] = {}       # trials not mirrored yet, by number
        self.mirrored = 0                                             # trials mirrored or found in storage
        self.duplicates = self.rejections = 0                         # in a row
        self.note = ""

    @property
    def total(self) -> int:
        return self._total

    def _open_persistent(self, optuna, directions: list[str]):
        try:
            return optuna.create_study(storage=self.storage, study_name=self.name, directions=directions,
                                       load_if_exists=True)
        except Exception as error:   # a storage URL fails in its backend's own way (SQLAlchemy, a driver, a file)
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise LswagError(f"--optuna-storage {self.storage}: cannot open it: {reason}") from None

    def ask(self) -> list[Candidate]:
        want = min(self.batch, self.total - len(self.archive.archs))
        self.pending = {}
        while not self.note and len(self.pending) < want:
            self._propose()
        return [Candidate(arch) for arch in self.pending]

    def _propose(self) -> None:
        """Ask Optuna for one trial: a new candidate joins the batch; anything else is told at once."""
        trial = self.study.ask()
        arch = self.space.format(self.space.ask(TrialChooser(trial)))
        trial.set_user_attr("arch", arch)
        if self.allowed is not None and arch not in self.allowed:
            self._finish(trial, self.states.FAIL)
            self.rejections += 1
            if self.rejections >= REJECTION_LIMIT:
                raise LswagError(f"Optuna proposed {REJECTION_LIMIT} architectures in a row outside the "
                                 f"{len(self.allowed)} of the truth file, and cannot be restricted to them: "
                                 "use evolution or random with --truth")
            return
        self.rejections = 0
        if arch in self.pending:            # proposed twice in this batch: told when the batch is scored
            self.pending[arch].append(trial)
            self._count_duplicate()
            return
        if arch in self.known:
            self._finish(trial, *self.known[arch])
            self._count_duplicate()
            return
        if not self.admissible([arch]):
            self.known[arch] = (self.states.PRUNED, None)
            self._finish(trial, self.states.PRUNED)
            return
        self.duplicates = 0
        self.pending[arch] = [trial]

    def _count_duplicate(self) -> None:
        """Count a proposal evaluated before; stop the search (a note, a warning) after too many in a row."""
        self.duplicates += 1
        if self.duplicates >= DUPLICATE_LIMIT:
            self.note = (f"stopped after {DUPLICATE_LIMIT} proposals in a row of architectures evaluated before: "
                         f"the sampler has exhausted what it proposes ({len(self.archive.archs) + len(self.pending)} of "
                         f"{self.total} candidates evaluated)")
            warnings.warn(f"the search {self.note}", LswagWarning, stacklevel=2)

    def tell(self, candidates: list[Candidate], rows: list[dict[str, Any]]) -> None:
        told = []
        for candidate, row in zip(candidates, rows):
            values = self._objectives(row)
            self.known[candidate.key] = (self.states.FAIL, None) if values is None else (self.states.COMPLETE, values)
            told += [(trial, self.known[candidate.key]) for trial in self.pending[candidate.key]]
        for trial, (state, values) in sorted(told, key=lambda item: item[0].number):
            self._finish(trial, state, values)
        self.pending = {}
        if len(self.archive.archs) - len(candidates) < self.first <= len(self.archive.archs):
            self.archive.check_first()
        self.history.append(float(self.archive.scores().max()))

    def _objectives(self, row: dict[str, Any]) -> list[float] | None:
        """The fitness and the costs of a candidate's archive row; None when one failed."""
        fitness = float(self.archive.fitness.pool_scores([row])[0])   # per candidate: the same in any pool
        costs = [row[cost] for cost in self.costs]
        if failed_value(fitness) or any(failed_value(cost) for cost in costs):
            return None
        return [fitness, *(float(cost) for cost in costs)]

    def _finish(self, trial: optuna.Trial, state, values: list[float] | None = None) -> None:
        self.finished[trial.number] = self.study.tell(trial, values, state=state)
        self._mirror()

    def _mirror(self) -> None:
        """Add the finished trials, in trial order, that the persistent study does not hold yet."""
        if self.persistent is None:
            return
        while self.mirrored in self.finished:
            trial = self.finished.pop(self.mirrored)
            if self.mirrored >= len(self.persisted_archs):
                self.persistent.add_trial(trial)
            elif self.persisted_archs[self.mirrored] != trial.user_attrs["arch"]:
                raise LswagError(f"Optuna study {self.name} in {self.storage} holds other trials (trial "
                                 f"{self.mirrored}: {self.persisted_archs[self.mirrored]}, this search's: "
                                 f"{trial.user_attrs['arch']}), of a search with other settings: give another "
                                 "--optuna-storage or delete that study")
            self.mirrored += 1

    def report(self) -> dict[str, Any]:
        """What the result's ``settings`` tell of the study: its name and storage, its trials, and why
        the search stopped early, if it did."""
        report = {"optuna_study": self.name, "optuna_storage": self.storage,
                  "optuna_trials": len(self.study.get_trials(deepcopy=False))}
        return {**report, "stopped": self.note} if self.note else report
