"""NAS-Bench-201 / NATS-Bench topology space: 5 ops on the 6 edges of a 4-node cell, 15,625 archs.

Networks follow xautodl's ``TinyNetwork`` and ``InferCell`` (``xautodl/models/cell_infers``) with
the benchmark settings of NATS-Bench (``C=16, N=5``, affine BN tracking running stats), so
parameter counts match the benchmark exactly. Pitfalls handled here:

* the official index is the position in a seeded shuffle of the lexicographic product
  (``random.seed(88); random.shuffle``, from ``exps/NAS-Bench-201/main.py``), regenerated here
  without any benchmark file;
* NASLib / NAS-Bench-Suite-Zero encode archs with another op order *and* another edge order
  (:attr:`Cell.naslib_indices`), so the two integer encodings must never be mixed;
* xautodl's network returns ``(features, logits)``; ours returns the logits only;
* xautodl's head ReLU is in place; ours is not, so activation probes see intact tensors.
"""
from __future__ import annotations

import functools
import itertools
import numbers
import random
import re
from collections import OrderedDict
from typing import Any, Iterator, NamedTuple

import torch
import torch.nn as nn

from lswag.errors import LswagError
from lswag.proxies.tenas import HasThinNetwork
from lswag.spaces import ChoiceSpace, Chooser, SupernetSpace, check_int, register, seeded

#: op names in NB201 order (the order of the lexicographic product behind the official index)
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (source, target) of each edge, in arch-string order: target-major, then source
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
#: NASLib's op order and (source-major) edge order, for :attr:`Cell.naslib_indices`
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
NUM_ARCHS = len(OPS) ** len(EDGES)

_NASLIB_TO_EDGE = tuple(EDGES.index(e) for e in NASLIB_EDGES)
_VALID_OPS = ", ".join(OPS)
_NASLIB_OP_LEGEND = ", ".join(f"{i} {op}" for i, op in enumerate(NASLIB_OPS))


class Cell(NamedTuple):
    """An NB201 cell: the op on each edge, fields ``e<source>_<target>`` in :data:`EDGES` order.

    Note that the :attr:`index` property shadows ``tuple.index``.
    """

    e0_1: str
    e0_2: str
    e1_2: str
    e0_3: str
    e1_3: str
    e2_3: str

    def to_str(self) -> str:
        """The NB201 arch string, e.g. ``|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|...|``."""
        nodes = []
        for target in (1, 2, 3):
            tokens = [f"{op}~{src}" for (src, dst), op in zip(EDGES, self) if dst == target]
            nodes.append("|" + "|".join(tokens) + "|")
        return "+".join(nodes)

    @property
    def naslib_indices(self) -> tuple[int, ...]:
        """NASLib / NAS-Bench-Suite-Zero ``op_indices``: NASLib op order, source-major edges."""
        return tuple(NASLIB_OPS.index(self[e]) for e in _NASLIB_TO_EDGE)

    @property
    def is_connected(self) -> bool:
        """Whether node 3 is reachable from node 0 through non-``none`` edges (xautodl ``check_valid``)."""
        alive = {0}
        for (src, dst), op in zip(EDGES, self):
            if op != "none" and src in alive:
                alive.add(dst)
        return 3 in alive

    @property
    def index(self) -> int:
        """The official NB201 / NATS-Bench index (0..15624)."""
        return _index_by_cell()[self]


@functools.lru_cache(maxsize=None)
def _lexicographic_cells() -> tuple[Cell, ...]:
    return tuple(Cell(*ops) for ops in itertools.product(OPS, repeat=len(EDGES)))


@functools.lru_cache(maxsize=None)
def _cells_by_index() -> tuple[Cell, ...]:
    cells = list(_lexicographic_cells())
    # The module-level random is a Random instance seeded the same way, so a private instance
    # yields NB201's permutation without touching the global random state.
    random.Random(88).shuffle(cells)
    return tuple(cells)


@functools.lru_cache(maxsize=None)
def _index_by_cell() -> dict[Cell, int]:
    return {cell: i for i, cell in enumerate(_cells_by_index())}


def _cell_from_index(index: Any) -> Cell:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise LswagError(f"NB201 index must be an integer, got {index!r}")
    if not 0 <= index < NUM_ARCHS:
        raise LswagError(f"NB201 index {index} out of range 0..{NUM_ARCHS - 1}")
    return _cells_by_index()[int(index)]


def _cell_from_ops(ops: Any, where: str) -> Cell:
    ops = tuple(ops)
    if len(ops) != len(EDGES) or not all(isinstance(op, str) for op in ops):
        raise LswagError(f"NB201 arch as a sequence must be {len(EDGES)} op names, got {ops!r}; "
                         f"valid ops: {_VALID_OPS} (pass NASLib op indices as text, "
                         f"e.g. '(4, 3, 3, 0, 0, 0)')")
    for op in ops:
        if op not in OPS:
            raise LswagError(f"unknown NB201 op {op!r} in {where}; valid ops: {_VALID_OPS}")
    return Cell(*ops)


def _inputs_phrase(node: int) -> str:
    sources = [str(i) for i in range(node)]
    if node == 1:
        return "input 0"
    return "inputs " + ", ".join(sources[:-1]) + " and " + sources[-1]


def _parse_arch_string(text: str) -> Cell:
    parts = text.split("+")
    if len(parts) != 3:
        raise LswagError(f"NB201 arch string needs 3 nodes separated by '+', got {len(parts)} "
                         f"in {text!r}; format: |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    ops: dict[tuple[int, int], str] = {}
    for target, part in enumerate(parts, start=1):
        # Like xautodl's str2structure: empty pieces between '|' are ignored.
        tokens = [t.strip() for t in part.split("|") if t.strip()]
        sources = []
        for token in tokens:
            op, sep, src = token.partition("~")
            if not sep or not src.strip().isdigit():
                raise LswagError(f"malformed NB201 edge {token!r} in {text!r}; expected "
                                 f"'op~source' with op one of: {_VALID_OPS}")
            if op not in OPS:
                raise LswagError(f"unknown NB201 op {op!r} in {text!r}; valid ops: {_VALID_OPS}")
            sources.append(int(src))
            ops[(int(src), target)] = op
        if sorted(sources) != list(range(target)):
            raise LswagError(f"NB201 node {target} must list {_inputs_phrase(target)} exactly once, "
                             f"got {sources} in {text!r}")
    return Cell(*(ops[e] for e in EDGES))


def _parse_naslib(text: str) -> Cell:
    body = text
    if body[:1] + body[-1:] in ("()", "[]"):
        body = body[1:-1]
    pieces = [p.strip() for p in body.split(",")]
    if pieces and pieces[-1] == "":
        pieces.pop()  # a trailing comma, as in Python's tuple syntax
    if len(pieces) != len(EDGES) or not all(re.fullmatch(r"-?\d+", p) for p in pieces):
        raise LswagError(f"NASLib NB201 encoding needs {len(EDGES)} comma-separated op indices, "
                         f"got {text!r}; op indices: {_NASLIB_OP_LEGEND}")
    ops = [None] * len(EDGES)
    for piece, edge in zip(pieces, _NASLIB_TO_EDGE):
        value = int(piece)
        if not 0 <= value < len(NASLIB_OPS):
            raise LswagError(f"NASLib op index {value} out of range 0..{len(NASLIB_OPS) - 1} "
                             f"in {text!r}; op indices: {_NASLIB_OP_LEGEND}")
        ops[edge] = NASLIB_OPS[value]
    return Cell(*ops)


class Zero(nn.Module):
    """The ``none`` op. It multiplies by zero instead of being dropped, as in xautodl, so the
    graph (and anything probing it) still sees the edge."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ReLUConvBN(nn.Sequential):
    """xautodl's ``ReLUConvBN`` with affine BN, hence a bias-free conv."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int) -> None:
        super().__init__(OrderedDict(
            relu=nn.ReLU(inplace=False),
            conv=nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2,
                           bias=False),
            bn=nn.BatchNorm2d(c_out),
        ))


class ResNetBasicblock(nn.Module):
    """The stride-2 reduction block between stages; its shortcut has no BN and no ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, stride=1)
        self.shortcut = nn.Sequential(OrderedDict(
            pool=nn.AvgPool2d(kernel_size=2, stride=2),
            conv=nn.Conv2d(c_in, c_out, 1, bias=False),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class MixedOp(nn.Module):
    """A supernet edge: the sum of its ops' outputs (TE-NAS's mixed op with equal weights)."""

    def __init__(self, names: tuple[str, ...], channels: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(_make_op(name, channels) for name in names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [op(x) for op in self.ops]
        return sum(outputs[1:], outputs[0])


def _make_op(name: str | tuple[str, ...], channels: int) -> nn.Module:
    # Cells keep their width and resolution, so xautodl's FactorizedReduce and the 1x1
    # preprocessing of its pooling op never occur.
    if isinstance(name, tuple):
        return MixedOp(name, channels) if name else Zero()
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, stride=1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, stride=1)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class InferCell(nn.Module):
    """xautodl's ``InferCell``: node j is the sum of op(node i) over i < j; node 3 is the output.
    In a supernet cell an edge holds a tuple of ops (:class:`MixedOp`)."""

    def __init__(self, cell: Cell | tuple[tuple[str, ...], ...], channels: int) -> None:
        super().__init__()
        # Built in arch-string order, as xautodl does, so a seed gives xautodl's initial weights.
        self.edges = nn.ModuleList(_make_op(op, channels) for op in cell)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            terms = [edge(nodes[src]) for (src, dst), edge in zip(EDGES, self.edges) if dst == target]
            nodes.append(sum(terms[1:], terms[0]))
        return nodes[3]


class TinyNetwork(nn.Module, HasThinNetwork):
    """xautodl's ``TinyNetwork``: stem, 3 stages of ``N`` cells at widths C, 2C, 4C separated by
    two :class:`ResNetBasicblock` reductions, then BN-ReLU-pool-linear.

    ``forward`` returns the logits only (xautodl's returns ``(features, logits)``).
    """

    def __init__(self, cell: Cell | tuple[tuple[str, ...], ...], C: int = 16, N: int = 5,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.arch = cell
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, C, 3, padding=1, bias=False),
            bn=nn.BatchNorm2d(C),
        ))
        layers: list[nn.Module] = []
        c_prev = C
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(ResNetBasicblock(c_prev, width))
            layers.extend(InferCell(cell, width) for _ in range(N))
            c_prev = width
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(OrderedDict(
            bn=nn.BatchNorm2d(c_prev),
            # Not in place (xautodl's is): probes hook activations, and an in-place ReLU would
            # overwrite the BN output they may hold.
            relu=nn.ReLU(inplace=False),
        ))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x)
        x = self.global_pooling(self.lastact(x))
        return self.classifier(torch.flatten(x, 1))

    def thin_network(self) -> "ThinNetwork":
        """TE-NAS's thin copy, on which its pruning counts linear regions (``prune_tenas.py``'s NB201
        thin configuration: C=1, N=1, depth 1, no stem): the first cell alone at width 1 on 1-channel
        inputs, then BN-ReLU-pool-linear."""
        return ThinNetwork(InferCell(self.arch, 1), self.classifier.out_features)


class ThinNetwork(nn.Module):
    """One width-1 cell, then the network's head (BN-ReLU-pool-linear)."""

    def __init__(self, cell: InferCell, num_classes: int) -> None:
        super().__init__()
        self.cell = cell
        self.lastact = nn.Sequential(nn.BatchNorm2d(1), nn.ReLU())
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.global_pooling(self.lastact(self.cell(x))), 1))


class NB201Space(SupernetSpace, ChoiceSpace):
    """The NAS-Bench-201 / NATS-Bench topology search space (xautodl ``TinyNetwork``)."""

    name = "nb201"
    description = ("NAS-Bench-201 / NATS-Bench topology space: 5 ops on the 6 edges of a cell, "
                   "15,625 archs, xautodl TinyNetwork (C=16, N=5) on CIFAR-10")
    input_shape = (3, 32, 32)
    channels_last_on_cpu = True
    num_classes = 10

    def parse(self, text: Any) -> Cell:
        """A :class:`Cell` from an arch string, NASLib op indices as text (``"(4, 3, 3, 0, 0, 0)"``
        or ``"4,3,3,0,0,0"``), an official index (``"1601"`` or ``1601``), a :class:`Cell`, or a
        sequence of 6 op names in :data:`EDGES` order. Inputs within a node may come in any order.
        """
        if isinstance(text, numbers.Integral) and not isinstance(text, bool):
            return _cell_from_index(text)
        if isinstance(text, (tuple, list)):
            return _cell_from_ops(text, repr(tuple(text)))
        if not isinstance(text, str):
            raise LswagError(f"cannot parse an NB201 arch from {type(text).__name__} {text!r}")
        stripped = text.strip()
        if "~" in stripped or "|" in stripped:
            return _parse_arch_string(stripped)
        if "," in stripped or stripped[:1] in ("(", "["):
            return _parse_naslib(stripped)
        if re.fullmatch(r"[+-]?\d+", stripped):
            return _cell_from_index(int(stripped))
        raise LswagError(f"cannot parse NB201 arch {text!r}; expected an arch string like "
                         f"'|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|', "
                         f"NASLib op indices like '(4, 3, 3, 0, 0, 0)', or an index 0..{NUM_ARCHS - 1}")

    def format(self, arch: Any) -> str:
        return self.parse(arch).to_str()

    def size(self) -> int:
        return NUM_ARCHS

    def ask(self, trial: Chooser) -> Cell:
        """The cell of the op ``trial`` chooses on each edge (choices ``edge0``..``edge5``, :data:`EDGES` order)."""
        return _cell_from_ops([trial.choice(f"edge{i}", OPS) for i in range(len(EDGES))], "the trial's choices")

    def enumerate(self) -> Iterator[Cell]:
        """Every cell in lexicographic product order (first edge most significant), xautodl's
        ``gen_all`` order, which is *not* the index order."""
        return iter(_lexicographic_cells())

    def sample(self, n: int, seed: int = 0) -> list[Cell]:
        n = check_int(n, "NB201 sample size")
        if n > NUM_ARCHS:
            raise LswagError(f"cannot sample {n} distinct NB201 archs; the space has {NUM_ARCHS}")
        cells = _lexicographic_cells()
        return [cells[i] for i in random.Random(seed).sample(range(NUM_ARCHS), n)]

    def mutate(self, arch: Any, rng: random.Random, prob: float | None = None) -> Cell:
        """The cell with one edge, drawn uniformly, given another op, drawn uniformly; with ``prob``,
        each edge is given another op with that probability (one edge when none is drawn)."""
        ops = list(self.parse(arch))
        edges = [] if prob is None else [e for e in range(len(EDGES)) if rng.random() < prob]
        for edge in edges or [rng.randrange(len(EDGES))]:
            ops[edge] = rng.choice([op for op in OPS if op != ops[edge]])
        return Cell(*ops)

    def crossover(self, first: Any, second: Any, rng: random.Random) -> Cell:
        """Each edge's op from either parent with probability ½."""
        return Cell(*(a if rng.random() < 0.5 else b for a, b in zip(self.parse(first), self.parse(second))))

    def supernet(self, edge_ops, num_classes: int | None = None, seed: int | None = None,
                 C: int = 16, N: int = 5) -> TinyNetwork:
        """The supernet whose edge ``e`` sums the ops ``edge_ops[e]`` (six collections of op names,
        in :data:`EDGES` order; an empty one is ``none``), for pruning (:class:`lswag.search.strategies.Prune`)."""
        edges = tuple(tuple(sorted(set(ops), key=OPS.index)) for ops in edge_ops)
        if len(edges) != len(EDGES) or any(op not in OPS for ops in edges for op in ops):
            raise LswagError(f"an NB201 supernet has {len(EDGES)} edges, each a set of ops among {_VALID_OPS}; "
                             f"got {edge_ops!r}")
        num_classes = check_int(self.num_classes if num_classes is None else num_classes, "NB201 num_classes", 1)
        return seeded(seed, lambda: TinyNetwork(edges, check_int(C, "NB201 width C", 1),
                                                check_int(N, "NB201 cells per stage N"), num_classes))

    def supernet_edges(self) -> tuple[tuple[str, ...], ...]:
        """The start of pruning: every op but ``none`` on every edge."""
        return tuple(tuple(op for op in OPS if op != "none") for _ in EDGES)

    def edge_groups(self) -> tuple[tuple[int, ...], ...]:
        """NB201 cells keep every edge: no edge pruning."""
        return ()

    def supernet_key(self, edges) -> str:
        """A supernet's key in the store: the arch-string form with each edge's ops joined by ``/``."""
        nodes = []
        for target in (1, 2, 3):
            tokens = [f"{'/'.join(ops) or 'none'}~{src}" for (src, dst), ops in zip(EDGES, edges) if dst == target]
            nodes.append("|" + "|".join(tokens) + "|")
        return "supernet:" + "+".join(nodes)

    def from_supernet(self, edges) -> Cell:
        if any(len(ops) != 1 for ops in edges):
            raise LswagError(f"a pruned NB201 supernet has one op per edge, got {edges!r}")
        return Cell(*(ops[0] for ops in edges))

    def index_of(self, arch: Any) -> int:
        """The official NB201 / NATS-Bench index of ``arch``."""
        return self.parse(arch).index

    def from_index(self, index: int) -> Cell:
        """The cell with official NB201 / NATS-Bench index ``index``."""
        return _cell_from_index(index)

    def build(self, arch: Any, num_classes: int | None = None, seed: int | None = None,
              C: int = 16, N: int = 5) -> TinyNetwork:
        """The :class:`TinyNetwork` of ``arch``, ``C`` channels in the first stage and ``N`` cells
        per stage. With ``seed``, weights depend only on the seed and the global RNG is left as is."""
        cell = self.parse(arch)
        num_classes = check_int(self.num_classes if num_classes is None else num_classes, "NB201 num_classes", 1)
        C = check_int(C, "NB201 width C", 1)
        N = check_int(N, "NB201 cells per stage N")
        return seeded(seed, lambda: TinyNetwork(cell, C, N, num_classes))


#: proxy options measured to suit the space (:func:`lswag.spaces.proxy_defaults`); user options win
PROXY_DEFAULTS = {
    # Measured on 400 cells x CIFAR-10/100/ImageNet16-120 (docs/reproduction.md): the best window
    # spanning at least 3 depth percentiles; all layers give rho 0.78/0.78/0.76, this 0.80/0.80/0.77.
    "nb201": {"l_swag": {"window": (4, 7)}},
}

SPACE = register(NB201Space(), proxy_defaults=PROXY_DEFAULTS["nb201"])
