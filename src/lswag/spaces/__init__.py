"""Search spaces behind one interface, looked up by name: ``lswag.spaces.get("nb201")``.

A space turns architecture descriptions into ``torch.nn.Module`` networks. Every space offers the
same methods (see :class:`SearchSpace`), so the CLI, the benchmark harness and the searches never
need to know which space they are working on. What only some spaces can do is declared by a base
class they inherit (:class:`SupernetSpace`), never sniffed from their attributes. The proxy
options measured to suit a space are data, a ``PROXY_DEFAULTS`` table beside the space (as timm's
``default_cfgs``), registered with it and read with :func:`proxy_defaults`.
"""
from __future__ import annotations

import abc
import inspect
import json
import numbers
import random
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Mapping, Protocol, Sequence

import torch
import torch.nn as nn

from lswag.errors import LswagError, unknown_choice

if TYPE_CHECKING:
    from lswag.data import Batch


class SearchSpace(abc.ABC):
    """The interface every search space implements.

    An *arch* is the space's own hashable value (for NB201 a tuple of six op names); ``parse``
    turns any accepted text form into one and ``format`` gives its canonical text.
    """

    name: str
    description: str
    #: (channels, height, width) of the input the space's networks were trained on
    input_shape: tuple[int, int, int]
    #: number of classes of the default task
    num_classes: int
    #: the column of a ground-truth table that holds the architecture, unless the user names another
    truth_arch_column: str = "arch_str"
    #: its networks are built for one input resolution (a ViT's position embeddings): ``build`` takes
    #: ``image_size``, which :meth:`sized_build` sets from the inputs
    input_sized: bool = False
    #: the optimizer ``lswag train`` uses unless told (a name of :data:`lswag.train.OPTIMIZERS`)
    optimizer: str = "sgd"
    #: the task loss the benchmark trained with (a name of :data:`lswag.losses.LOSSES`)
    loss: str = "cross_entropy"
    #: score on CPU in the channels-last memory format, where it was measured faster for this
    #: space's networks (docs/performance.md); values agree with the default format to rounding
    channels_last_on_cpu: bool = False

    def memory_format(self, device: torch.device) -> torch.memory_format:
        """The layout the space's networks are scored in on ``device``."""
        return torch.channels_last if device.type == "cpu" and self.channels_last_on_cpu else torch.contiguous_format

    @abc.abstractmethod
    def parse(self, text: str) -> Hashable:
        """Parse an architecture's text form; raise :class:`lswag.errors.LswagError` when malformed."""

    @abc.abstractmethod
    def format(self, arch: Hashable) -> str:
        """The canonical text form of ``arch`` (``parse(format(a)) == a``)."""

    @abc.abstractmethod
    def size(self) -> int:
        """Number of architectures in the space."""

    @abc.abstractmethod
    def enumerate(self) -> Iterator[Hashable]:
        """Every architecture of the space, in the space's canonical order."""

    @abc.abstractmethod
    def sample(self, n: int, seed: int = 0) -> list[Hashable]:
        """``n`` distinct architectures drawn uniformly at random; the same seed gives the same list."""

    @abc.abstractmethod
    def mutate(self, arch: Hashable, rng: random.Random, prob: float | None = None) -> Hashable:
        """A different architecture near ``arch`` (the space's search mutation), drawn from ``rng``:
        with ``prob``, each independent choice of the architecture is redrawn with that probability
        (at least one is drawn); without, the space's own mutation (usually one choice). A child
        equal to its parent is possible only where the space's docstring says so (AutoFormer)."""

    @abc.abstractmethod
    def crossover(self, first: Hashable, second: Hashable, rng: random.Random) -> Hashable:
        """A child of two architectures (the space's search crossover), drawn from ``rng``."""

    def build_option_names(self) -> list[str]:
        """The options :meth:`build` takes beside the architecture, the classes and the seed."""
        return [name for name in inspect.signature(self.build).parameters
                if name not in ("arch", "num_classes", "seed")]

    def check_build_options(self, build_options: dict[str, Any]) -> dict[str, Any]:
        """``build_options`` unchanged, or a one-line error naming an option ``build`` does not take."""
        valid = self.build_option_names()
        for name in build_options:
            if name not in valid:
                raise LswagError(f"unknown build option {name!r} of space {self.name}; valid: "
                                 f"{', '.join(valid) or '(none)'}")
        return build_options

    def sized_build(self, build_options: dict[str, Any], inputs: torch.Tensor) -> dict[str, Any]:
        """``build_options`` with the ``image_size`` of the (B, C, H, W) ``inputs`` for an
        :attr:`input_sized` space, unless the user set one; unchanged for every other space."""
        if not self.input_sized or "image_size" in build_options:
            return build_options
        height, width = inputs.shape[-2:]
        if height != width:
            raise LswagError(f"{self.name} networks take square images, got {height}x{width}; choose --image-size")
        return {**build_options, "image_size": int(height)}

    def task_loss(self, **build_options: Any) -> str:
        """The loss (a name of :data:`lswag.losses.LOSSES`) of the network ``build(**build_options)`` gives."""
        return self.loss

    def prepare(self, batch: "Batch", seed: int = 0, **build_options: Any) -> "Batch":
        """``batch`` as the network ``build(**build_options)`` takes it: inputs and targets of its task."""
        return batch

    @abc.abstractmethod
    def build(self, arch: Hashable, num_classes: int | None = None, seed: int | None = None,
              **options: Any) -> nn.Module:
        """The network of ``arch`` at random initialisation (seeded when ``seed`` is given)."""


class SupernetSpace(SearchSpace):
    """A cell space with a supernet, which the ``prune`` search strategy (:class:`lswag.search.strategies.Prune`) starts from.

    *Edges* is one tuple of op names per supernet edge, in the space's edge order; the supernet
    sums the listed ops on each edge (an empty tuple removes the edge). Pruning removes ops until
    one is left per edge, then, within each of :meth:`edge_groups`, edges until two are left.
    """

    @abc.abstractmethod
    def supernet(self, edges, num_classes: int | None = None, seed: int | None = None,
                 **options: Any) -> nn.Module:
        """The supernet of ``edges`` at random initialisation (seeded when ``seed`` is given);
        ``options`` are the width options of :meth:`build`."""

    @abc.abstractmethod
    def supernet_edges(self) -> tuple[tuple[str, ...], ...]:
        """The edges pruning starts from."""

    @abc.abstractmethod
    def edge_groups(self) -> tuple[tuple[int, ...], ...]:
        """Groups of edge positions of which pruning keeps two each (empty: every edge stays)."""

    @abc.abstractmethod
    def supernet_key(self, edges) -> str:
        """The text a supernet of ``edges`` is stored under, distinct from every architecture's."""

    @abc.abstractmethod
    def from_supernet(self, edges) -> Hashable:
        """The architecture of a fully pruned supernet's ``edges``; a one-line error when not fully pruned."""


class Chooser(Protocol):
    """What a :class:`ChoiceSpace` asks its choices of: a recorder, a replay of stored choices, a random
    draw (:mod:`lswag.spaces.family`) or an Optuna trial (:mod:`lswag.search.samplers`). Names are unique
    within an architecture; a later choice may depend on an earlier one's answer (its options, its count)."""

    def choice(self, name: str, options: Sequence[Any]) -> Any:
        """One of ``options`` (numbers, strings, booleans)."""

    def choices(self, name: str, options: Sequence[Any], count: int) -> list[Any]:
        """``count`` independent answers from ``options`` (a per-layer choice), as a list."""

    def integer(self, name: str, low: int, high: int, step: int = 1) -> int:
        """An integer of ``low``, ``low + step``, ..., ``high``."""


class ChoiceSpace(SearchSpace):
    """A space whose architectures are made of named choices asked one after another (define-by-run):
    :meth:`ask` makes an architecture from whatever answers a :class:`Chooser` gives. Optuna's samplers
    search such a space (the ``optuna-*`` strategies, :mod:`lswag.search.samplers`)."""

    @abc.abstractmethod
    def ask(self, trial: Chooser) -> Hashable:
        """The architecture made of the choices ``trial`` answers, asked in the space's order."""


def check_int(value: Any, what: str, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an int, or a one-line error naming ``what`` and the range it must lie in."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise LswagError(f"{what} must be an integer {bound}, got {value!r}")
    return int(value)


def seeded(seed: int | None, make: Callable[[], nn.Module]) -> nn.Module:
    """``make()``; with ``seed``, its weights depend only on the seed, and the global RNG is left as it was."""
    if seed is None:
        return make()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make()


def decoded(text: Any, what: str) -> Any:
    """``text`` parsed as JSON when it is the text of a JSON object, else ``text`` unchanged."""
    if isinstance(text, str) and text.strip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise LswagError(f"{what} is not valid JSON: {error}") from None
    return text


_SPACES: dict[str, SearchSpace] = {}
_PROXY_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {}


def register(space: SearchSpace, proxy_defaults: Mapping[str, Mapping[str, Any]] | None = None, *,
             replace: bool = False) -> SearchSpace:
    """Make ``space`` available by its name, with the proxy options measured to suit it
    (``{proxy: {option: value}}``, the space's entry of its module's ``PROXY_DEFAULTS``).
    A name already taken is refused: a second space under it would silently replace the first.
    ``replace`` replaces it on purpose (:func:`lswag.space` re-registering a family of that name)."""
    if space.name in _SPACES and not replace:
        raise LswagError(f"search space {space.name!r} is already registered")
    _SPACES[space.name] = space
    _PROXY_DEFAULTS[space.name] = {proxy: dict(options) for proxy, options in (proxy_defaults or {}).items()}
    return space


def get(name: str) -> SearchSpace:
    """The space registered under ``name``, or the define-by-run family ``package.module:function``
    names (:func:`lswag.spaces.family.import_family`: how the CLI and the workers find one); an
    unknown name raises an error listing the valid ones."""
    if name in _SPACES:
        return _SPACES[name]
    if isinstance(name, str) and ":" in name:
        from lswag.spaces.family import import_family

        return import_family(name)
    raise LswagError(f"{unknown_choice('search space', name, _SPACES)}; or a define-by-run family as "
                     "package.module:function (lswag.space)")


def names() -> list[str]:
    return sorted(_SPACES)


def proxy_defaults(space: SearchSpace | str) -> dict[str, dict[str, Any]]:
    """``{proxy: {option: value}}`` measured to suit the space (given or named), registered under its
    name; user options win over them. A copy: changing it changes no space's defaults."""
    if isinstance(space, str):
        space = get(space)      # an unknown name raises, listing the valid ones
    return {proxy: dict(options) for proxy, options in _PROXY_DEFAULTS.get(space.name, {}).items()}


from lswag.spaces import autoformer, darts, nb101, nb201, tnb101  # noqa: E402  (register themselves)

__all__ = ["ChoiceSpace", "Chooser", "SearchSpace", "SupernetSpace", "check_int", "decoded", "get", "names", "proxy_defaults", "register",
           "seeded", "autoformer", "darts", "nb101", "nb201", "tnb101"]
