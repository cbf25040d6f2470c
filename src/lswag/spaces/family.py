"""Define-by-run search spaces: a user's function that asks its choices and returns the network.

    import lswag

    @lswag.space(input_shape=(3, 32, 32), num_classes=10)
    def tiny_vit(trial, num_classes=10):
        width = trial.choice("hidden_dim", [64, 96])
        depth = trial.integer("depth", 2, 4)
        ratios = trial.choices("mlp_ratio", [2.0, 4.0], count=depth)   # one per layer
        return MyViT(width, ratios, num_classes)

``tiny_vit`` is then a registered :class:`FamilySpace` (``lswag.spaces.get("module:tiny_vit")``), and
``lswag score|bench|search|train --space module:tiny_vit`` import the module to find it, as process-pool
and Ray workers do. The family's keyword parameters are ``num_classes`` (the task's classes),
``image_size`` (the input side, which makes the space :attr:`~FamilySpace.input_sized`) and its build
options, every other keyword parameter with a default.

An architecture is the recorded choices, a tuple of ``(name, value)`` pairs in the order asked (a
per-layer ``choices`` value a tuple); its text is canonical JSON with sorted keys, the style of a
ViT-Bench-101 ``arch_json`` column: ``{"depth": 2, "hidden_dim": 64, "mlp_ratio": [4.0, 2.0]}``.

Everything but :meth:`~FamilySpace.build` only records choices (parse, sample, mutate, crossover, ask,
enumerate): it replays the family on the meta device, so no weight is allocated or initialised, and
enumeration stops each replay at its first unforced choice, before any network is made. A family that
fails on the meta device is replayed on the real one (the global RNG left as it was). A family must be
a deterministic function of its answers: the same answers give the same questions.

The *atomic* choices that search moves act on are each ``choice``, each ``integer`` and each element
of a ``choices`` list (``mlp_ratio[3]``).
"""
from __future__ import annotations

import abc
import inspect
import json
import math
import os
import random
import sys
from collections import deque
from functools import reduce
from importlib import import_module
from types import ModuleType
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import torch
import torch.nn as nn

from lswag.errors import LswagError
from lswag.spaces import ChoiceSpace, Chooser, check_int, decoded, get, names, register, seeded

#: the most architectures :meth:`FamilySpace.size` counts and :meth:`FamilySpace.enumerate` lists
ENUMERATION_LIMIT = 100_000
#: parses kept per space: the engine and the searches parse the same texts again and again
PARSE_CACHE_SIZE = 4096
#: draws :meth:`FamilySpace.sample` makes per architecture asked for before it gives up
DRAWS_PER_ARCHITECTURE = 20
#: options shown in an error message
SHOWN_OPTIONS = 12

#: an atomic choice: (name, None) for ``choice`` and ``integer``, (name, i) for element i of ``choices``
Atom = tuple[str, "int | None"]
Arch = tuple[tuple[str, Any], ...]


class _Stop(BaseException):
    """Raised by an enumerating chooser at the first choice beyond its forced prefix. A BaseException,
    so that a family's own ``except Exception`` does not swallow it."""

    def __init__(self, options: int):
        super().__init__(options)
        self.options = options


class _Parsed(NamedTuple):
    """A replayed architecture and the options of each of its atomic choices."""

    arch: Arch
    options: dict[Atom, Sequence[Any]]


def _shown(value: Any) -> str:
    return json.dumps(value) if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


def _describe(options: Sequence[Any]) -> str:
    if isinstance(options, range):
        last = options[-1]
        return f"{options.start}..{last}" + (f" by {options.step}" if options.step != 1 else "")
    shown = ", ".join(_shown(option) for option in options[:SHOWN_OPTIONS])
    return shown if len(options) <= SHOWN_OPTIONS else f"{shown}, ... ({len(options)} in all)"


def _kind(value: Any) -> str | None:
    """What an option value is, so that equal values of different kinds (True and 1) are told apart;
    None for a value no option can be."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "str" if isinstance(value, str) else None


def _position(options: Sequence[Any], value: Any) -> int | None:
    """Where ``value`` is among ``options`` (4 matches 4.0, True does not match 1), or None."""
    if isinstance(options, range):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value not in options:
            return None
        return options.index(value)
    kind = _kind(value)
    for position, option in enumerate(options):
        if kind is not None and _kind(option) == kind and option == value:
            return position
    return None


def _atoms(arch: Arch) -> dict[Atom, Any]:
    atoms: dict[Atom, Any] = {}
    for name, value in arch:
        if isinstance(value, tuple):
            atoms.update(((name, index), element) for index, element in enumerate(value))
        else:
            atoms[(name, None)] = value
    return atoms


def canonical(arch: Arch) -> str:
    """The text of a recorded architecture: JSON with sorted keys, per-layer choices as lists."""
    return json.dumps({name: list(value) if isinstance(value, tuple) else value for name, value in arch},
                      sort_keys=True)


class _Run(abc.ABC):
    """The :class:`~lswag.spaces.Chooser` a family runs with inside lswag: checks each question,
    answers it (by subclass) and records the answer."""

    def __init__(self, family: str):
        self.family = family
        self.restart()

    def restart(self) -> None:
        """Forget the answers, for a replay from the start (on the real device, after the meta one failed)."""
        self.record: dict[str, Any] = {}
        self.options: dict[Atom, Sequence[Any]] = {}
        #: inside a question: an exception now is the chooser's, not the family's
        self.asking = False

    def parsed(self) -> _Parsed:
        return _Parsed(tuple(self.record.items()), self.options)

    # -- the Chooser protocol --

    def choice(self, name: str, options: Sequence[Any]) -> Any:
        options = self._question(name, options)
        return self._keep(name, self._answer_one(name, options), {(name, None): options})

    def choices(self, name: str, options: Sequence[Any], count: int) -> list[Any]:
        options = self._question(name, options)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise LswagError(f"choices {name!r} of family {self.family} needs an integer count >= 0, got {count!r}")
        values = self._answer_many(name, options, count)
        return list(self._keep(name, values, {(name, index): options for index in range(count)}))

    def integer(self, name: str, low: int, high: int, step: int = 1) -> int:
        self._question(name, None)
        if (any(isinstance(bound, bool) or not isinstance(bound, int) for bound in (low, high, step))
                or low > high or step < 1):
            raise LswagError(f"integer choice {name!r} of family {self.family} needs integers low <= high and "
                             f"step >= 1, got low={low!r}, high={high!r}, step={step!r}")
        options = range(low, high + 1, step)
        return self._keep(name, self._answer_one(name, options), {(name, None): options})

    # -- answers, by subclass --

    @abc.abstractmethod
    def _answer_one(self, name: str, options: Sequence[Any]) -> Any:
        """The answer to a ``choice`` or an ``integer`` question (its options a range)."""

    @abc.abstractmethod
    def _answer_many(self, name: str, options: Sequence[Any], count: int) -> tuple:
        """The ``count`` answers to a ``choices`` question."""

    # -- checks --

    def _question(self, name: Any, options: Sequence[Any] | None) -> tuple | None:
        """The checked options (None for an integer choice) of a question not asked before."""
        self.asking = True
        if not isinstance(name, str) or not name:
            raise LswagError(f"family {self.family} asks a choice named {name!r}; a choice's name is a non-empty string")
        if name in self.record:
            raise LswagError(f"family {self.family} asks choice {name!r} twice; each choice needs its own name")
        if options is None:
            return None
        if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
            raise LswagError(f"choice {name!r} of family {self.family} needs a list of options, got {options!r}")
        options = tuple(options)
        if not options:
            raise LswagError(f"choice {name!r} of family {self.family} has no options")
        kinds = set()
        for option in options:
            kind = _kind(option)
            if kind is None or (isinstance(option, float) and not math.isfinite(option)):
                raise LswagError(f"option {option!r} of choice {name!r} of family {self.family} is not an option "
                                 "lswag records; options are None, booleans, finite numbers or strings")
            if (kind, option) in kinds:
                raise LswagError(f"choice {name!r} of family {self.family} lists option {_shown(option)} twice")
            kinds.add((kind, option))
        return options

    def _keep(self, name: str, value: Any, atoms: dict[Atom, Sequence[Any]]) -> Any:
        self.record[name] = value
        self.options.update(atoms)
        self.asking = False
        return value

    def _valid(self, name: str, value: Any, options: Sequence[Any]) -> Any:
        """The option ``value`` stands for, or a one-line error naming the options."""
        position = _position(options, value)
        if position is None:
            raise LswagError(f"choice {name!r} of family {self.family} is {_shown(value)}, not one of its options: "
                             f"{_describe(options)}")
        return options[position]

    def _valid_many(self, name: str, values: Any, options: Sequence[Any], count: int) -> tuple:
        if not isinstance(values, (list, tuple)) or len(values) != count:
            raise LswagError(f"choices {name!r} of family {self.family} takes a list of {count} values "
                             f"(options: {_describe(options)}), got {_shown(values)}")
        return tuple(self._valid(f"{name}[{index}]", value, options) for index, value in enumerate(values))


class _Replay(_Run):
    """Answers from the choices of a given architecture (``{name: value}``)."""

    def __init__(self, family: str, given: dict[str, Any]):
        self.given = given
        super().__init__(family)

    def _answer_one(self, name: str, options: Sequence[Any]) -> Any:
        return self._valid(name, self._given(name, options), options)

    def _answer_many(self, name: str, options: Sequence[Any], count: int) -> tuple:
        return self._valid_many(name, self._given(name, options), options, count)

    def _given(self, name: str, options: Sequence[Any]) -> Any:
        if name not in self.given:
            raise LswagError(f"the arch of family {self.family} lacks choice {name!r} (options: {_describe(options)})")
        return self.given[name]


class _PerAtom(_Run):
    """Answers each atomic choice on its own (:meth:`_answer`), a ``choices`` question element by element."""

    @abc.abstractmethod
    def _answer(self, atom: Atom, options: Sequence[Any]) -> Any:
        """The answer to the atomic choice ``atom``."""

    def _answer_one(self, name: str, options: Sequence[Any]) -> Any:
        return self._answer((name, None), options)

    def _answer_many(self, name: str, options: Sequence[Any], count: int) -> tuple:
        return tuple(self._answer((name, index), options) for index in range(count))


class _Draw(_PerAtom):
    """Answers each atomic choice from ``rng``: a value of a parent that is valid here (one parent's by a
    fair coin when both have one), else a uniform draw; an atom of ``redraw`` gets a value other than
    its parent's."""

    def __init__(self, family: str, rng: random.Random, parents: Sequence[dict[Atom, Any]] = (),
                 redraw: frozenset[Atom] = frozenset()):
        self.rng, self.parents, self.redraw = rng, parents, redraw
        self.start = rng.getstate()
        super().__init__(family)

    def restart(self) -> None:
        super().restart()
        self.rng.setstate(self.start)     # the replay draws what the failed one drew

    def _answer(self, atom: Atom, options: Sequence[Any]) -> Any:
        positions = [position for parent in self.parents if atom in parent
                     for position in [_position(options, parent[atom])] if position is not None]
        if atom in self.redraw and positions and len(options) > 1:
            drawn = self.rng.randrange(len(options) - 1)
            return options[drawn + (drawn >= positions[0])]
        return options[self.rng.choice(positions)] if positions else self.rng.choice(options)


class _Explore(_PerAtom):
    """Answers the option at each index of ``path`` in turn, then stops the run (:class:`_Stop`)."""

    def __init__(self, family: str, path: tuple[int, ...]):
        self.path = path
        super().__init__(family)

    def restart(self) -> None:
        super().restart()
        self.depth = 0

    def _answer(self, atom: Atom, options: Sequence[Any]) -> Any:
        if self.depth == len(self.path):
            raise _Stop(len(options))
        self.depth += 1
        return options[self.path[self.depth - 1]]


class _Ask(_Run):
    """Answers from an external :class:`~lswag.spaces.Chooser` (an Optuna trial), which names the
    elements of a ``choices`` question itself. Its answers are kept across a restart, so that a replay
    on the real device asks it nothing twice."""

    def __init__(self, family: str, trial: Chooser):
        self.trial, self.answers = trial, {}
        super().__init__(family)

    def _answer_one(self, name: str, options: Sequence[Any]) -> Any:
        if name not in self.answers:
            self.answers[name] = (self.trial.integer(name, options.start, options[-1], options.step)
                                  if isinstance(options, range) else self.trial.choice(name, list(options)))
        return self._valid(name, self.answers[name], options)

    def _answer_many(self, name: str, options: Sequence[Any], count: int) -> tuple:
        if name not in self.answers:
            self.answers[name] = self.trial.choices(name, list(options), count)
        return self._valid_many(name, self.answers[name], options, count)


class FamilySpace(ChoiceSpace):
    """The search space of a define-by-run family ``family(trial, **keywords)`` (module docstring)."""

    def __init__(self, family: Callable[..., nn.Module], *, name: str | None = None,
                 input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10,
                 truth_column: str = "arch", description: str | None = None, optimizer: str = "sgd"):
        from lswag.settings import OPTIMIZERS

        if not callable(family):
            raise LswagError(f"lswag.space takes a function family(trial, ...), got {family!r}")
        self.family = family
        self.name = name or f"{family.__module__}:{family.__qualname__}"
        if not isinstance(self.name, str):
            raise LswagError(f"a family's space name is a string, got {self.name!r}")
        if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
                or any(isinstance(side, bool) or not isinstance(side, int) or side < 1 for side in input_shape)):
            raise LswagError(f"input_shape of family {self.name} is (channels, height, width), got {input_shape!r}")
        self.input_shape = tuple(input_shape)
        self.num_classes = check_int(num_classes, f"num_classes of family {self.name}", 1)
        self.truth_arch_column = truth_column
        if optimizer not in OPTIMIZERS:
            raise LswagError(f"optimizer of family {self.name} must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        self.optimizer = optimizer      # what lswag train uses unless told (adamw suits ViTs)
        summary = (inspect.getdoc(family) or "").strip().splitlines()
        self.description = description or (summary[0] if summary else f"define-by-run family {self.name}")
        self._read_signature()
        self._parses: dict[str, _Parsed] = {}
        self._enumerated: tuple[Arch, ...] | None = None
        self._too_large = False
        #: replays run on the meta device until the family fails there once
        self._meta_replays = True

    def _read_signature(self) -> None:
        parameters = list(inspect.signature(self.family).parameters.values())
        if not parameters or parameters[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                        inspect.Parameter.POSITIONAL_OR_KEYWORD):
            raise LswagError(f"family {self.name} must take the trial as its first parameter")
        self.takes_num_classes, self.input_sized = False, False
        self._image_size_has_default = True
        self.build_options: dict[str, Any] = {}
        for parameter in parameters[1:]:
            if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise LswagError(f"family {self.name} takes {parameter}; name its build options as keyword "
                                 "parameters with defaults")
            if parameter.name == "num_classes":
                self.takes_num_classes = True
            elif parameter.name == "image_size":
                self.input_sized = True
                self._image_size_has_default = parameter.default is not inspect.Parameter.empty
            elif parameter.default is inspect.Parameter.empty or parameter.kind == inspect.Parameter.POSITIONAL_ONLY:
                raise LswagError(f"parameter {parameter.name!r} of family {self.name} needs a default: after the "
                                 "trial a family takes num_classes, image_size and build options with defaults")
            else:
                self.build_options[parameter.name] = parameter.default

    # -- running the family --

    def _keywords(self, options: dict[str, Any], num_classes: int | None) -> dict[str, Any]:
        keywords = dict(options)
        if self.takes_num_classes:
            keywords["num_classes"] = self.num_classes if num_classes is None else num_classes
        elif num_classes is not None and num_classes != self.num_classes:
            raise LswagError(f"family {self.name} takes no num_classes: its networks have {self.num_classes} "
                             f"classes, not {num_classes}")
        if self.input_sized and not self._image_size_has_default:
            keywords.setdefault("image_size", self.input_shape[1])
        return keywords

    def _run(self, chooser: _Run) -> _Run:
        """``chooser`` after the family has run with it, recording its choices: on the meta device (no weights
        made) unless the family fails there, then on the real one, the global RNG left as it was."""
        keywords = self._keywords({}, None)
        if self._meta_replays:
            try:
                with torch.device("meta"):
                    self.family(chooser, **keywords)
                return chooser
            except Exception:
                if chooser.asking:       # the chooser's error (a missing choice, a bad option), not the device's
                    raise
                self._meta_replays = False
                chooser.restart()
        with torch.random.fork_rng(devices=[]):
            self.family(chooser, **keywords)
        return chooser

    def _parsed(self, arch: Any) -> _Parsed:
        if isinstance(arch, str):
            key, given = arch.strip(), None
        else:
            given = self._given(arch)
            try:
                key = json.dumps(given, sort_keys=True)
            except (TypeError, ValueError):      # a value no option can be: the replay names it
                key = None
        if key in self._parses:
            return self._parses[key]
        if given is None:
            given = self._given(decoded(key, f"arch of family {self.name}"))
        run = self._run(_Replay(self.name, given))
        extra = [name for name in given if name not in run.record]
        if extra:
            raise LswagError(f"the arch of family {self.name} has choices the family does not ask: "
                             f"{', '.join(map(repr, extra))}; it asks: {', '.join(map(repr, run.record)) or '(none)'}")
        parsed = run.parsed()
        if key is not None:
            self._remember(key, parsed)
        return parsed

    def _given(self, arch: Any) -> dict[str, Any]:
        if isinstance(arch, dict):
            given = arch
        elif isinstance(arch, (tuple, list)) and all(isinstance(pair, (tuple, list)) and len(pair) == 2
                                                      for pair in arch):
            given = dict(arch)
        else:
            raise LswagError(f"cannot parse an arch of family {self.name} from {_shown(arch)}; give the JSON object "
                             'of its choices, e.g. {"depth": 2}, a dict or a parsed arch')
        for name in given:
            if not isinstance(name, str):
                raise LswagError(f"the arch of family {self.name} names a choice {name!r}; choice names are strings")
        return given

    def _remember(self, key: str, parsed: _Parsed) -> None:
        if len(self._parses) >= PARSE_CACHE_SIZE:
            del self._parses[next(iter(self._parses))]      # the oldest first
        self._parses[key] = parsed

    def _recorded(self, chooser: _Run) -> Arch:
        """The architecture ``chooser`` records in a run of the family, remembered as parsed."""
        parsed = self._run(chooser).parsed()
        self._remember(canonical(parsed.arch), parsed)
        return parsed.arch

    # -- SearchSpace --

    def parse(self, text: Any) -> Arch:
        """The architecture of the family's choices as JSON text (any key order; an int for a float option),
        a ``{name: value}`` dict or a parsed arch; a one-line error names a missing, invalid or extra choice."""
        return self._parsed(text).arch

    def format(self, arch: Any) -> str:
        return canonical(self.parse(arch))

    def ask(self, trial: Chooser) -> Arch:
        """The architecture of the answers ``trial`` gives, choices in the order the family asks them."""
        return self._recorded(_Ask(self.name, trial))

    def sample(self, n: int, seed: int = 0) -> list[Arch]:
        """``n`` distinct architectures, each atomic choice drawn uniformly from its options."""
        n = check_int(n, f"sample size of family {self.name}")
        rng, drawn = random.Random(seed), {}
        draws = DRAWS_PER_ARCHITECTURE * n + 100
        for _ in range(draws):
            if len(drawn) == n:
                break
            drawn.setdefault(self._recorded(_Draw(self.name, rng)))
        if len(drawn) < n:
            try:
                size = f"; it has {self.size()}"
            except LswagError:
                size = ""
            raise LswagError(f"cannot sample {n} distinct architectures of family {self.name}: {draws} draws "
                             f"gave {len(drawn)}{size}")
        return list(drawn)

    def mutate(self, arch: Any, rng: random.Random, prob: float | None = None) -> Arch:
        """``arch`` with one atomic choice of more than one option redrawn to another value; with ``prob``,
        each such choice redrawn with that probability (one when none is drawn). The other choices keep
        their values where the child asks them and they are still valid; new ones (the layers added when
        the depth grows) are drawn uniformly. The first redrawn choice is asked as the parent asked it, so
        the child always differs."""
        parent = self._parsed(arch)
        changeable = [atom for atom, options in parent.options.items() if len(options) > 1]
        if not changeable:
            raise LswagError(f"family {self.name} has a single architecture: there is nothing to mutate")
        redraw = [] if prob is None else [atom for atom in changeable if rng.random() < prob]
        chooser = _Draw(self.name, rng, [_atoms(parent.arch)], frozenset(redraw or [rng.choice(changeable)]))
        return self._recorded(chooser)

    def crossover(self, first: Any, second: Any, rng: random.Random) -> Arch:
        """Each atomic choice from one parent, by a fair coin among the parents with a value valid in the
        child; drawn uniformly where neither has one."""
        parents = [_atoms(self.parse(first)), _atoms(self.parse(second))]
        return self._recorded(_Draw(self.name, rng, parents))

    def size(self) -> int:
        return len(self._decision_tree())

    def enumerate(self) -> Iterator[Arch]:
        """Every architecture, in depth-first order of the decision tree (each choice's options in order)."""
        return iter(self._decision_tree())

    def _decision_tree(self) -> tuple[Arch, ...]:
        """The leaves of the decision tree: explored breadth first, each run stopped at its first unforced
        choice, so that the count passes :data:`ENUMERATION_LIMIT` soon in a large space."""
        if self._too_large:
            raise self._too_large_error()
        if self._enumerated is None:
            leaves: list[tuple[tuple[int, ...], Arch]] = []
            pending: deque[tuple[int, ...]] = deque([()])
            while pending:
                path = pending.popleft()
                try:
                    leaves.append((path, self._run(_Explore(self.name, path)).parsed().arch))
                except _Stop as stop:
                    if len(leaves) + len(pending) + stop.options > ENUMERATION_LIMIT:
                        self._too_large = True
                        raise self._too_large_error() from None
                    pending.extend(path + (index,) for index in range(stop.options))
            if len(leaves) > ENUMERATION_LIMIT:
                self._too_large = True
                raise self._too_large_error()
            self._enumerated = tuple(arch for _, arch in sorted(leaves, key=lambda leaf: leaf[0]))
        return self._enumerated

    def _too_large_error(self) -> LswagError:
        return LswagError(f"family {self.name} has more than {ENUMERATION_LIMIT} architectures; "
                          "lswag does not enumerate it")

    def build_option_names(self) -> list[str]:
        """The family's keyword parameters with defaults, and ``image_size`` when it takes one."""
        return [*self.build_options, *(["image_size"] if self.input_sized else [])]

    def build(self, arch: Any, num_classes: int | None = None, seed: int | None = None,
              **options: Any) -> nn.Module:
        """The family's network of ``arch``, made on the real device (weights seeded when ``seed`` is given)."""
        given = dict(self.parse(arch))
        if num_classes is not None:
            num_classes = check_int(num_classes, f"num_classes of family {self.name}", 1)
        keywords = self._keywords(self.check_build_options(options), num_classes)
        model = seeded(seed, lambda: self.family(_Replay(self.name, given), **keywords))
        if not isinstance(model, nn.Module):
            raise LswagError(f"family {self.name} returned a {type(model).__name__}, not a torch.nn.Module: "
                             "a family returns the network of its choices")
        return model


def space(family: Callable[..., nn.Module] | None = None, *, name: str | None = None,
          input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10, truth_column: str = "arch",
          description: str | None = None, optimizer: str = "sgd"):
    """Register ``family(trial, ...)`` as a search space (``@lswag.space``, ``@lswag.space(...)`` or
    ``lswag.space(family, ...)``) and return its :class:`FamilySpace`, named ``module:qualname`` unless
    ``name`` is given; ``lswag train`` trains its networks with ``optimizer`` unless told (``adamw`` for
    ViTs, as lswag's ViT spaces). Registering a family again under its name (a notebook re-running a cell)
    replaces the earlier family; any other name already taken is refused."""

    def register_family(function: Callable[..., nn.Module]) -> FamilySpace:
        made = FamilySpace(function, name=name, input_shape=input_shape, num_classes=num_classes,
                           truth_column=truth_column, description=description, optimizer=optimizer)
        replaces = made.name in names() and isinstance(get(made.name), FamilySpace)
        return register(made, replace=replaces)

    return register_family if family is None else register_family(family)


def import_family(name: str) -> FamilySpace:
    """The family ``package.module:function`` names: its module imported, the attribute a registered
    :class:`FamilySpace`, or a function registered under ``name`` with the defaults of :func:`space`."""
    module_name, _, attribute = name.partition(":")
    try:
        module = _import_module(module_name)
    except Exception as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise LswagError(f"cannot import module {module_name} for space {name!r}: {reason}") from None
    if name in names():         # the module registered it as it was imported (@lswag.space)
        return get(name)
    try:
        found = reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise LswagError(f"module {module_name} has no family {attribute} (space {name!r})") from None
    if isinstance(found, FamilySpace):
        return found
    if not inspect.isfunction(found):
        raise LswagError(f"{name} is a {type(found).__name__}, not a family function family(trial, ...)")
    return space(found, name=name)


def _import_module(module_name: str) -> ModuleType:
    """The module, found also in the current directory, as ``python -m`` finds it: the ``lswag`` console
    script's path holds its own folder instead. The directory goes last, so that it shadows no package."""
    try:
        return import_module(module_name)
    except ModuleNotFoundError as error:
        here = os.getcwd()
        if error.name != module_name.partition(".")[0] or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)
        return import_module(module_name)
