"""What a user sets: the choices lswag offers and the settings objects every command passes whole.

* :class:`Scoring`: how architectures are scored, everything that changes a score (so the store key);
* :class:`TruthSource`: where a command's ground truth comes from and how to read it;
* :class:`Execution`: where and how a run's architectures are scored, which changes no score;
* :class:`SearchConfig` and its :class:`Budget`: a zero-shot search;
* the names a user chooses among (:data:`DEVICES`, :data:`INITS`, :data:`EXECUTORS`, ...).

This module imports neither torch nor scipy, so that the command line can declare its flags from
these objects and answer ``--help``, ``--version`` and argument errors at once; the checks that
need the registries import them when a settings object is made.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import MISSING, Field, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from lswag.errors import LswagError, unknown_choice

if TYPE_CHECKING:
    from lswag.truth import GroundTruth
    from lswag.data import Batch
    from lswag.spaces import SearchSpace

#: where networks are scored: ``auto`` is a GPU when there is one
DEVICES = ("auto", "cpu", "cuda")
#: the weights a network is scored with: the builder's (given), or redrawn (:func:`lswag.probe.initialise`)
INITS = ("given", "kaiming", "normal")
#: how a run's architectures are scored in parallel (:class:`lswag.engine.Engine`)
EXECUTORS = ("local", "ray")
#: rows of a truth file that are the same architecture: an error, or their mean (:func:`lswag.truth.load_truth`)
DUPLICATES = ("error", "mean")
#: search strategies (:mod:`lswag.search.strategies`)
#: the strategies run by Optuna's samplers (:mod:`lswag.search.samplers`)
OPTUNA_STRATEGIES = ("optuna-tpe", "optuna-nsga2")
STRATEGIES = ("evolution", "random", "prune", *OPTUNA_STRATEGIES)
#: what a search may minimise beside its fitness (a Pareto front): #params, FLOPs and measured latency
COSTS = ("params", "flops", "latency")
#: the unit of each cost, as its proxy gives it and as budgets bound it
COST_UNITS = {"params": "M", "flops": "M", "latency": "ms"}
#: the proxies a LIBRA fitness chooses from by default: the zoo less its costliest members
LIBRA_POOL = ("l_swag", "zico", "swap", "nwot", "synflow", "grad_norm", "snip", "fisher", "plain", "l2_norm",
              "jacov", "params", "flops")
#: the optimizers ``lswag train`` offers
OPTIMIZERS = ("sgd", "adamw")
#: input batch sources (:func:`lswag.data.load_batch`)
SOURCES = ("digits", "cifar10:PATH", "cifar100:PATH", "npz:PATH", "gaussian")
#: seeds are 32-bit: every seed lswag derives from one (per epoch, per split) stays within torch's 64 bits
MAX_SEED = 2**32 - 1
#: input resolutions: below 8 (the built-in digits' size) the stride-2 stages of every space leave nothing;
#: above 1024 one batch of 64 images is 0.8 GB before any activation, far beyond what a proxy needs
IMAGE_SIZES = (8, 1024)


class SettingError(LswagError):
    """A refused value of a setting, naming its command-line flag: ``flag`` + ``problem``. ``name`` is the
    field, so that a command that gives the field another flag can name that one
    (:func:`lswag.cli.flags.settings_from`)."""

    def __init__(self, name: str, flag: str, problem: str):
        self.name, self.problem = name, problem
        super().__init__(f"{flag} {problem}")


def flag_of(field: Field, renamed: Mapping[str, str] | None = None) -> str:
    """The flag of ``field``: ``renamed``'s, the field's declared one, or ``--field-name``."""
    renamed = renamed or {}
    return renamed.get(field.name) or field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _refuse(settings, name: str, problem: str) -> SettingError:
    """The error for field ``name`` of the settings object ``settings``, naming its flag."""
    return SettingError(name, flag_of(next(f for f in fields(settings) if f.name == name)), problem)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_integer(settings, name: str, low: int, high: int | None = None, why: str = "") -> None:
    """Refuse field ``name`` of ``settings`` unless it is an integer in ``low``..``high``."""
    value = getattr(settings, name)
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"in {low}..{high}"
        raise _refuse(settings, name, f"must be an integer {bound}{why}, got {value!r}")


def check_fraction(settings, name: str) -> None:
    """Refuse field ``name`` of ``settings`` unless it is a number in [0, 1]."""
    value = getattr(settings, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise _refuse(settings, name, f"must lie in [0, 1], got {value!r}")


def check_seed(seed: Any, flag: str = "--seed") -> None:
    """A one-line error naming ``flag`` unless ``seed`` is an integer in 0..:data:`MAX_SEED`."""
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise SettingError("seed", flag, f"must be an integer in 0..{MAX_SEED} (32 bits), got {seed!r}")


def check_image_size(size: Any, flag: str = "--image-size") -> None:
    """A one-line error naming ``flag`` unless ``size`` is None (the space's), or an integer or (from Python)
    an (H, W) pair of integers in :data:`IMAGE_SIZES`."""
    low, high = IMAGE_SIZES
    sides = tuple(size) if isinstance(size, (tuple, list)) and len(size) == 2 else (size,)
    if size is not None and not all(_is_int(side) and low <= side <= high for side in sides):
        raise SettingError("image_size", flag, f"must be an integer in {low}..{high} (smaller vanishes in the "
                                               f"networks' stride-2 stages, larger needs GBs per batch), got {size!r}")


def check_output(path: str | Path, *, folder: bool) -> None:
    """A one-line error, before anything is written, when the output ``path`` cannot be written as a
    ``folder`` (or a file): a file where a folder goes, a folder where a file goes, or a file among
    its parents. Missing parent folders are fine: the writer creates them."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise LswagError(f"{path} is a file; give a folder (the outputs are written into it)")
    if not folder and path.is_dir():
        raise LswagError(f"{path} is a folder; give a file name")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise LswagError(f"{path} lies inside {parent}, which is a file, not a folder")


@contextmanager
def about(flag: str, value: Any) -> Iterator[None]:
    """Re-raise a one-line error from inside as one about ``flag`` given ``value`` (a file, a data
    source), so that the user knows which flag to change; a message that starts with the value
    already gets the flag alone in front."""
    try:
        yield
    except SettingError:
        raise
    except LswagError as error:
        text, shown = str(error), str(value)
        raise LswagError(f"{flag} {text}" if text.startswith(shown) else f"{flag} {shown}: {text}") from None


def setting(default: Any = MISSING, *, help: str, flag: str | None = None, kind: str | None = None,
            choices: tuple[str, ...] | None = None, cli_default: Any = MISSING, default_factory: Any = MISSING):
    """A settings field and how the command line offers it (read by :mod:`lswag.cli.flags`): its
    ``help``; its ``flag`` when not ``--field-name``; its ``kind`` when its text form is not the
    value itself (``csv``: comma-separated; ``option``: repeated PROXY.KEY=VALUE; ``build``:
    repeated KEY=VALUE; ``switch``: present or not); its ``choices``; its default on the command
    line when that differs from the library's (``cli_default``)."""
    metadata = {"help": help, "flag": flag, "kind": kind, "choices": choices, "cli_default": cli_default}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def parse_option(text: str) -> tuple[str, str, Any]:
    """``"PROXY.KEY=VALUE"`` -> (proxy, key, value); the value becomes an int or float when it is one."""
    head, sep, raw = text.partition("=")
    proxy_name, dot, key = head.partition(".")
    if not sep or not dot or not proxy_name or not key:
        raise LswagError(f"option {text!r} is not of the form PROXY.KEY=VALUE (e.g. l_swag.window=3-10)")
    for convert in (int, float):
        try:
            return proxy_name, key, convert(raw)
        except ValueError:
            pass
    return proxy_name, key, raw


def parse_options(texts: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["PROXY.KEY=VALUE", ...]`` -> ``{proxy: {key: value}}`` (:func:`parse_option`)."""
    options: dict[str, dict[str, Any]] = {}
    for text in texts:
        name, key, value = parse_option(text)
        options.setdefault(name, {})[key] = value
    return options


def parse_build_options(texts: Iterable[str]) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` -> the space's build options; values become ints, floats or
    booleans (``true``/``false``) when they are one, e.g. ``task=jigsaw``, ``C=16``."""
    build: dict[str, Any] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise LswagError(f"build option {text!r} is not of the form KEY=VALUE (e.g. task=jigsaw, C=16)")
        value: Any = {"true": True, "false": False}.get(raw.strip().lower(), raw.strip())
        for convert in (int, float):
            if isinstance(value, str):
                try:
                    value = convert(value)
                except ValueError:
                    pass
        build[key.strip()] = value
    return build


@dataclass(frozen=True)
class Scoring:
    """How architectures of ``space`` are scored: everything that changes a score, so the store key.

    The one settings object of score, bench, layers, search and demo; variants are made with
    :func:`dataclasses.replace`. Checked whole on creation, before any work: the init, the device
    (``auto`` resolved here), the build options, the proxies and their options, merged once with
    the space's measured defaults (:attr:`resolved_options`).
    """

    space: str = setting(help="search space (lswag spaces lists them)", cli_default="nb201")
    proxies: tuple[str, ...] = setting(("l_swag",), kind="csv", help="comma-separated proxy names, or 'all'")
    data: str = setting("digits", help=f"input batch source: {', '.join(SOURCES)} (default digits, built in); "
                                       "CIFAR's python batches are pickles, read as torchvision reads them: "
                                       "unpickling runs code a crafted file holds, so give only CIFAR files you "
                                       "trust (npz is read without pickle)")
    batch_size: int = setting(64, help="images in the scoring batch")
    seed: int = setting(0, help=f"seed of the batch and of the weights (0..{MAX_SEED})")
    image_size: int | None = setting(None, help=f"input resolution, {IMAGE_SIZES[0]}..{IMAGE_SIZES[1]} "
                                                "(default: the space's)")
    gradient_draws: int = setting(2, flag="--draws", help="gradient draws M (batch split in M chunks, "
                                                          "1..--batch-size)")
    init: str = setting("given", choices=INITS,
                        help="weights: given (the builder's, PyTorch default init), kaiming (N(0, 2/fan_in)) or "
                             "normal (N(0, 1)), redrawn with the seed")
    options: dict[str, dict[str, Any]] = setting(default_factory=dict, flag="--option", kind="option",
                                                 help="a proxy option, e.g. l_swag.window=3-10 (repeatable)")
    build: dict[str, Any] = setting(default_factory=dict, kind="build",
                                    help="a build option of the space (repeatable): tnb101 task=class_object|"
                                         "class_scene|room_layout|jigsaw|segmentsemantic|autoencoder|normal; "
                                         "darts/nb301 C=, layers=, auxiliary=, affine=")
    device: str = setting("cpu", choices=DEVICES, cli_default="auto",
                          help="where networks are scored: auto (a GPU when there is one), cpu or cuda")

    def __post_init__(self):
        from lswag import proxies as registry
        from lswag.scoring import resolve_device

        check_integer(self, "batch_size", 1)
        check_seed(self.seed)
        check_image_size(self.image_size)
        # refused even when no proxy draws gradients: the draws are part of every store key
        check_integer(self, "gradient_draws", 1, self.batch_size,
                      why=" (the --batch-size: each draw is a chunk of the batch)")
        if self.init not in INITS:
            raise unknown_choice("init", self.init, INITS)
        object.__setattr__(self, "proxies", tuple(self.proxies))
        object.__setattr__(self, "device", resolve_device(self.device).type)
        self.search_space.check_build_options(self.build)
        for name, chosen in self.resolved_options.items():
            registry.check_options(name, chosen)

    @property
    def search_space(self) -> SearchSpace:
        from lswag import spaces

        return spaces.get(self.space)

    @cached_property
    def names(self) -> list[str]:
        """The proxies, ``all`` expanded."""
        from lswag.scoring import resolve_proxies

        return resolve_proxies(list(self.proxies))

    @cached_property
    def resolved_options(self) -> dict[str, dict[str, Any]]:
        """The options each proxy is scored with: the space's measured defaults, then ``options``."""
        from lswag.scoring import space_options

        return space_options(self.search_space, self.names, self.options)

    @property
    def size(self):
        return self.image_size or self.search_space.input_shape[1:]

    def store_keys(self) -> dict[str, dict[str, Any]]:
        """The store key of each proxy: ``{proxy: settings}``. It names the proxy's implementation
        version (:attr:`lswag.proxies.Proxy.version`), not lswag's: a release reuses every stored
        score but those of a proxy whose values it changed. A timed proxy's (:attr:`lswag.proxies.Proxy.timed`,
        latency) also names where it is timed: the device, the processor (:func:`lswag.proxies.latency.timing_host`;
        this machine's, so a Ray cluster of unlike machines mixes them) and the torch threads it runs on."""
        import torch

        from lswag import proxies as registry
        from lswag.engine import SCORING_THREADS
        from lswag.proxies.latency import timing_host
        from lswag.scoring import resolve_device

        common = {"data": self.data, "batch_size": self.batch_size, "seed": self.seed,
                  "image_size": self.size, "gradient_draws": self.gradient_draws, "init": self.init}
        if self.build:   # absent otherwise, so that stores of earlier runs stay valid
            common["build"] = self.build
        if self.device != "cpu":   # float results differ in their last bits on a GPU
            common["device"] = self.device
        if self.search_space.memory_format(resolve_device(self.device)) == torch.channels_last:
            common["memory_format"] = "channels_last"   # values differ by rounding from the default layout's
        keys = {name: {**common, "options": self.resolved_options.get(name, {}),
                       "implementation": registry.get(name).version} for name in self.names}
        timed = [name for name in self.names if registry.get(name).timed]
        if timed:
            where = {"device": self.device, "host": timing_host(self.device), "threads": SCORING_THREADS}
            keys.update({name: {**keys[name], **where} for name in timed})
        return keys

    def batch(self, download: bool = False) -> Batch:
        """The fixed batch every architecture is scored on; a problem with the source names ``--data``."""
        from lswag.data import load_batch

        with about("--data", self.data):
            return load_batch(self.data, batch_size=self.batch_size, seed=self.seed, image_size=self.size,
                              download=download)


@dataclass(frozen=True)
class TruthSource:
    """Where a command's ground truth comes from: the file and how to read it
    (:func:`lswag.truth.load_truth`). Declared once for bench, layers and search; the space
    is the command's."""

    path: str = setting(flag="--truth", help="ground truth: .csv, .parquet or NAS-Bench-Suite-Zero .json")
    metric: str = setting(help="the truth column (json: key) used as accuracy")
    dataset: str | None = setting(None, help="dataset to select in truth files that hold several")
    arch_column: str | None = setting(None, help="the truth column with the architecture (default: the space's, "
                                                 "arch_str for most)")
    column_names: tuple[str, ...] | None = setting(None, kind="csv", help="header of a truth CSV that has none")
    duplicates: str = setting("error", choices=DUPLICATES,
                              help="truth rows of the same architecture (e.g. NB101 seeds): an error, or their mean")

    def load(self, space: str, metric: str | None = None) -> GroundTruth:
        """The table for ``space``, keyed by ``metric`` (default: this source's); a problem with it names ``--truth``."""
        from lswag.truth import load_truth

        with about("--truth", Path(self.path)):
            return load_truth(self.path, space=space, metric=metric or self.metric, arch_column=self.arch_column,
                              dataset=self.dataset, column_names=self.column_names, duplicates=self.duplicates)


@dataclass(frozen=True)
class Execution:
    """Where and how a run's architectures are scored (:class:`lswag.engine.Engine`); no score depends
    on it (every scoring process runs torch on one thread, :data:`lswag.engine.SCORING_THREADS`, so
    the values are bit-identical whatever the workers; docs/performance.md), so it is no part of
    the store key.

    ``executor="local"`` scores in this process (``workers=1``) or a process pool of ``workers``
    (one torch thread each); ``executor="ray"`` sends architectures to Ray: a local
    instance of ``workers`` CPUs, or the cluster at ``ray_address`` (``auto`` or ``HOST:PORT``).
    ``fail_fast`` lets an exception in a proxy or a network abort the run (for debugging);
    otherwise it is that proxy's failure, stored with its type and message.
    """

    workers: int = setting(1, help="parallel workers: local processes, or the CPUs of a local Ray instance")
    executor: str = setting("local", choices=EXECUTORS, help="local processes, or Ray tasks (needs lswag[ray])")
    ray_address: str | None = setting(None, help="join this Ray cluster ('auto', or HOST:PORT) instead of starting one")
    fail_fast: bool = setting(False, kind="switch",
                              help="let an exception in a proxy or a network abort the run (default: it is that "
                                   "proxy's failure, stored with its type and message)")

    def __post_init__(self):
        check_integer(self, "workers", 1)
        if self.executor not in EXECUTORS:
            raise unknown_choice("executor", self.executor, EXECUTORS)
        if self.ray_address and self.executor != "ray":
            raise LswagError("a Ray address needs --executor ray")


@dataclass(frozen=True)
class Budget:
    """Limits on the costs of :data:`COSTS` (their proxies' values, in :data:`COST_UNITS`): params and FLOPs
    in millions, latency in milliseconds (measured on the scoring device, :mod:`lswag.proxies.latency`);
    None is no limit. Latency has an upper limit only: a least latency would ask for slower networks."""

    min_params: float | None = setting(None, help="least params in millions")
    max_params: float | None = setting(None, help="most params in millions")
    min_flops: float | None = setting(None, help="least FLOPs in millions")
    max_flops: float | None = setting(None, help="most FLOPs in millions")
    max_latency_ms: float | None = setting(None, help="most latency in milliseconds: the median eval-mode forward "
                                                      "of one input on the scoring device (use --workers 1 for "
                                                      "uncontended timings)")

    def __post_init__(self):
        for limit in fields(self):
            value = getattr(self, limit.name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or not 0 <= value < float("inf")):
                unit = "milliseconds" if limit.name.endswith("_ms") else "millions"
                raise _refuse(self, limit.name, f"must be a finite number >= 0 ({unit}), got {value!r}")
        for kind in ("params", "flops"):
            low, high = self.limits(kind)
            if low is not None and high is not None and low > high:
                raise _refuse(self, f"min_{kind}", f"{low} is above --max-{kind} {high}: no architecture fits")

    def limits(self, kind: str) -> tuple[float | None, float | None]:
        """(least, most) of the cost ``kind`` of :data:`COSTS`, in its unit (:data:`COST_UNITS`)."""
        return {"params": (self.min_params, self.max_params), "flops": (self.min_flops, self.max_flops),
                "latency": (None, self.max_latency_ms)}[kind]

    @property
    def proxies(self) -> tuple[str, ...]:
        """The costs the budget limits (their proxies score every candidate before it is admitted)."""
        return tuple(kind for kind in COSTS if self.limits(kind) != (None, None))

    def admits(self, costs: Mapping[str, float]) -> bool:
        for kind in self.proxies:
            low, high = self.limits(kind)
            if (low is not None and costs[kind] < low) or (high is not None and costs[kind] > high):
                return False
        return True

    def text(self) -> str:
        parts = []
        for kind in self.proxies:
            low, high = self.limits(kind)
            parts.append(f"{kind} in [{'-inf' if low is None else low}, {'inf' if high is None else high}] "
                         f"{COST_UNITS[kind]}")
        return " and ".join(parts) or "no budget"


@dataclass(frozen=True)
class SearchConfig:
    """A zero-shot search (:mod:`lswag.search`); ``scoring`` says how every candidate is scored (its
    store keys), its proxies being those the fitness, ``also``, the budget and the result need."""

    scoring: Scoring
    strategy: str = setting("evolution", choices=STRATEGIES, help="how candidates are proposed")
    fitness: str = setting("l_swag", help="a proxy, rank:PROXY,PROXY,... (rank averaging), az_nas, te_nas or "
                                          "libra (needs --truth)")
    evaluations: int | None = setting(None, help="candidates to evaluate (evolution: population x generations; "
                                                 "random: 1000)")
    population: int = setting(50, help="evolution: candidates per generation")
    generations: int = setting(20, help="evolution: generations")
    parents: int = setting(10, help="evolution: top candidates that breed each generation")
    mutation_prob: float = setting(0.2, help="per-choice redraw probability of a mutation")
    crossover_prob: float = setting(0.5, help="share of the children made by crossover")
    seed: int = setting(0, help=f"seed of the search's draws, 0..{MAX_SEED} (the scoring has its own)")
    budget: Budget = Budget()
    truth: TruthSource | None = None        # candidates limited to its archs; the result looked up
    more_metrics: tuple[str, ...] = ()      # other truth columns the result is looked up in
    calibration: int = setting(100, help="archs of the truth a LIBRA fitness is fitted on")
    libra_pool: tuple[str, ...] = setting(LIBRA_POOL, kind="csv",
                                          help=f"proxies LIBRA chooses from (default {','.join(LIBRA_POOL)})")
    also: tuple[str, ...] = setting((), kind="csv", help="proxies also scored with every candidate, sharing its "
                                                         "passes, so that other searches find them in the store")
    minimise: tuple[str, ...] = setting((), kind="csv", choices=COSTS,
                                        help=f"costs minimised beside the fitness ({', '.join(COSTS)}): the search "
                                             "returns the Pareto front of fitness against them")
    optuna_storage: str | None = setting(None, help="optuna-* strategies: also write the Optuna study to this "
                                                    "storage URL (e.g. sqlite:///study.db) for Optuna's plots and "
                                                    "dashboard")

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise unknown_choice("search strategy", self.strategy, STRATEGIES)
        if self.evaluations is not None:
            check_integer(self, "evaluations", 1)
        check_integer(self, "population", 2)
        check_integer(self, "generations", 1)
        if self.strategy == "evolution":      # the others breed no parents
            check_integer(self, "parents", 1, self.population, why=" (at most --population, or the first generation "
                                                                  "breeds from all its candidates)")
        check_integer(self, "calibration", 3)
        check_fraction(self, "mutation_prob")
        check_fraction(self, "crossover_prob")
        check_seed(self.seed)
        object.__setattr__(self, "minimise", tuple(dict.fromkeys(self.minimise)))
        for cost in self.minimise:
            if cost not in COSTS:
                raise unknown_choice("cost to minimise", cost, COSTS)
        if self.optuna_storage and self.strategy not in OPTUNA_STRATEGIES:
            raise _refuse(self, "optuna_storage", f"is for the optuna-* strategies, not {self.strategy}")
        if self.minimise and self.strategy == "prune":
            raise _refuse(self, "minimise", "needs a strategy that proposes architectures (evolution, random, "
                                            "optuna-*): prune scores supernets, which have no Pareto front")
