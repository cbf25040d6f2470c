"""The DARTS cell search space (Liu et al., ICLR 2019) and NAS-Bench-301 (Siems et al., 2020).

An architecture is a :class:`Genotype`: a normal and a reduction cell, each 8 ``(op, input)``
pairs, two per intermediate node 2..5, inputs 0 and 1 being the outputs of the cells k−2 and
k−1, and the nodes concatenated (``*_concat``, 2..5). The network is DARTS' ``NetworkCIFAR``
(``../shared/docs/SPACES.md`` §3.1): a 3×3 stem to 3C channels with BatchNorm, ``layers`` cells
with reductions (stride 2, channels doubled) at layers//3 and 2·layers//3, each cell
preprocessing its two inputs (a factorized reduction after a reduction cell, else ReLU-1×1-BN),
global pooling and a Linear classifier; with ``auxiliary``, DARTS' auxiliary head after cell
2·layers//3. Ops (all convolutions without bias): ``none`` (zeros, strided), ``max_pool_3x3``,
``avg_pool_3x3`` (padding not counted), ``skip_connect`` (identity, or a factorized reduction
at stride 2: ReLU, two 1×1 stride-2 convolutions of C/2, the second on the input shifted by one
pixel, concatenated, BN), ``sep_conv_KxK`` (twice ReLU → depthwise K×K → 1×1 → BN, the first with
the stride) and ``dil_conv_KxK`` (ReLU → depthwise K×K dilation 2 → 1×1 → BN). No drop-path:
it is a training regulariser, 0 at initialisation.

Two spaces: ``darts`` (8 ops, ``none`` included, as the DARTS paper and the SWAP archive of 1,000
trained cells; built as DARTS' CIFAR-10 evaluation network, C=36, 20 cells) and ``nb301`` (the
7 ops of NAS-Bench-301, no ``none``; built as its training network, C=32, 8 cells). Both sample
cells the NAS-Bench-301 way: each node two distinct inputs, ops uniform. The auxiliary head only
adds a training loss; proxies score the main path, so ``build`` leaves it out unless asked
(``auxiliary=True``; the model then returns ``{"logits", "aux_logits"}`` in train mode).

Text forms: DARTS' ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],
reduce=[...], reduce_concat=[2, 3, 4, 5])`` (canonical), and NASLib's NB301 compact form
``(((input, op), ... x8), ((input, op), ... x8))`` with op indices in NB301's order.
"""
from __future__ import annotations

import ast
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn as nn

from lswag.errors import LswagError
from lswag.proxies.tenas import HasThinNetwork
from lswag.spaces import SupernetSpace, check_int, register, seeded

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5")
#: NAS-Bench-301's ops, in the order of its compact encoding (no ``none``)
NB301_OPS = PRIMITIVES[1:]
NODES = 4
CONCAT = (2, 3, 4, 5)

Pair = tuple[str, int]


@dataclass(frozen=True)
class Genotype:
    normal: tuple[Pair, ...]
    reduce: tuple[Pair, ...]
    normal_concat: tuple[int, ...] = CONCAT
    reduce_concat: tuple[int, ...] = CONCAT

    def to_str(self) -> str:
        def cell(pairs):
            return "[" + ", ".join(f"('{op}', {i})" for op, i in pairs) + "]"
        return (f"Genotype(normal={cell(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={cell(self.reduce)}, reduce_concat={list(self.reduce_concat)})")

    def compact(self) -> tuple:
        """NASLib's NB301 compact form: ((input, op index) x 8) for the normal and the reduction cell."""
        return tuple(tuple((i, NB301_OPS.index(op)) for op, i in cell) for cell in (self.normal, self.reduce))


#: DARTS' searched cell (second order), the standard example
DARTS_V2 = Genotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)))


# -- operations ---------------------------------------------------------------------------------
class Zero(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x.mul(0.0) if self.stride == 1 else x[:, :, ::self.stride, ::self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out))


class DilConv(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding, dilation, affine=True):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine))


class SepConv(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__(DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
                         DilConv(c_in, c_out, kernel, 1, padding, 1, affine))


class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        if c_out % 2:
            raise LswagError(f"a factorized reduction needs an even channel count, got {c_out}")
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        # an odd size (TE-NAS's 3 x 3 thin copy) pads the shifted half as xautodl does; even sizes need no pad
        shifted = nn.functional.pad(x, (0, 1, 0, 1)) if x.shape[-1] % 2 or x.shape[-2] % 2 else x
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted[:, :, 1:, 1:])], dim=1))


class MixedOp(nn.Module):
    """A supernet edge: the sum of its ops' outputs (TE-NAS's mixed op with equal weights)."""

    def __init__(self, names: tuple[str, ...], channels: int, stride: int, affine: bool = True):
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, channels, stride, affine) for name in names)

    def forward(self, x):
        outputs = [op(x) for op in self.ops]
        return sum(outputs[1:], outputs[0])


def make_op(name: str | tuple[str, ...], channels: int, stride: int, affine: bool = True) -> nn.Module:
    if isinstance(name, tuple):                    # a supernet edge; an empty one is removed
        return MixedOp(name, channels, stride, affine) if name else Zero(stride)
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, affine)
    kind, kernel = name[:3], int(name[-1])
    if kind == "sep":
        return SepConv(channels, channels, kernel, stride, kernel // 2, affine)
    return DilConv(channels, channels, kernel, stride, 2 * (kernel // 2), 2, affine)


class Cell(nn.Module):
    """A cell: node ``nodes[k]`` adds ``ops[k]`` of input ``inputs[k]`` (two pairs per node in a
    genotype; every earlier node, with mixed ops, in a supernet)."""

    def __init__(self, pairs, concat, c_prev_prev, c_prev, channels, reduction, reduction_prev, affine=True,
                 nodes=None):
        super().__init__()
        self.preprocess0 = (FactorizedReduce(c_prev_prev, channels) if reduction_prev
                            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        self.inputs = [i for _, i in pairs]
        self.ops = nn.ModuleList(make_op(op, channels, 2 if reduction and i < 2 else 1, affine) for op, i in pairs)
        self.concat = list(concat)
        self.nodes = list(nodes) if nodes is not None else [_node_of(k) for k in range(len(pairs))]

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(2, 2 + NODES):
            terms = [op(states[i]) for op, i, n in zip(self.ops, self.inputs, self.nodes) if n == node]
            states.append(sum(terms[1:], terms[0]))
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' CIFAR auxiliary head, for 8×8 inputs."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(), nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU())
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class NetworkCIFAR(nn.Module, HasThinNetwork):
    """DARTS' evaluation network (see the module docstring)."""

    def __init__(self, genotype: Genotype, C: int, num_classes: int, layers: int, auxiliary: bool,
                 affine: bool = True, nodes=None):
        super().__init__()
        self.genotype, self.nodes = genotype, nodes      # for thin_network()
        stem = 3 * C
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem))
        c_prev_prev, c_prev, channels = stem, stem, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.aux_position = 2 * layers // 3
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            channels = channels * 2 if reduction else channels
            pairs, concat = (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal,
                                                                                         genotype.normal_concat)
            self.cells.append(Cell(pairs, concat, c_prev_prev, c_prev, channels, reduction, reduction_prev, affine,
                                   nodes))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, len(concat) * channels
            if i == self.aux_position:
                c_aux = c_prev
        self.auxiliary = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_position and self.auxiliary is not None and self.training:
                aux_logits = self.auxiliary(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits if aux_logits is None else {"logits": logits, "aux_logits": aux_logits}

    def thin_network(self) -> "ThinNetwork":
        """TE-NAS's thin copy, on which its pruning counts linear regions (``prune_tenas.py``'s DARTS
        thin configuration: C=1, N=1, depth 2, no stem, stem multiplier 1): a normal and a reduction
        cell of this genotype at width 1 on 1-channel inputs, then BN-ReLU-pool-linear."""
        g = self.genotype
        normal = Cell(g.normal, g.normal_concat, 1, 1, 1, False, False, True, self.nodes)
        reduction = Cell(g.reduce, g.reduce_concat, 1, len(g.normal_concat), 2, True, False, True, self.nodes)
        return ThinNetwork(normal, reduction, 2 * len(g.reduce_concat), self.classifier.out_features)


class ThinNetwork(nn.Module):
    """Two cells on the input as both their states, then TE-NAS's supernet head (BN-ReLU-pool-linear)."""

    def __init__(self, normal: Cell, reduction: Cell, channels: int, num_classes: int):
        super().__init__()
        self.cells = nn.ModuleList([normal, reduction])
        self.lastact = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        s0 = s1 = x
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(self.lastact(s1)).flatten(1))


# -- the spaces ---------------------------------------------------------------------------------
def _node_of(position: int) -> int:
    return 2 + position // 2


#: (node, input) of the 14 edges of a supernet cell: every node takes every earlier one
SUPERNET_EDGES = tuple((node, source) for node in range(2, 2 + NODES) for source in range(node))


class DartsSpace(SupernetSpace):
    input_shape = (3, 32, 32)
    channels_last_on_cpu = True
    num_classes = 10

    def __init__(self, name: str, ops: tuple[str, ...], C: int, layers: int, description: str):
        self.name, self.ops, self.default_C, self.default_layers = name, ops, C, layers
        self.description = description

    def parse(self, text: Any) -> Genotype:
        """A :class:`Genotype` from one, from DARTS' ``Genotype(...)`` text, or from NASLib's compact
        NB301 form; every op must be one of the space's and every input an earlier node."""
        if isinstance(text, Genotype):
            return self.validate(text)
        if not isinstance(text, str):
            raise LswagError(f"cannot parse a {self.name} genotype from {type(text).__name__} {text!r}")
        stripped = text.strip()
        if stripped.startswith("Genotype("):
            return self.validate(self._from_genotype_text(stripped))
        if stripped.startswith("("):
            return self.validate(self._from_compact(stripped))
        raise LswagError(f"cannot parse {self.name} genotype {text!r}; expected DARTS' "
                         f"\"Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], "
                         f"reduce_concat=[2, 3, 4, 5])\" or NASLib's compact ((input, op) x 8, x 8)")

    def _from_genotype_text(self, text: str) -> Genotype:
        try:
            call = ast.parse(text, mode="eval").body
            fields = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except (SyntaxError, ValueError, AttributeError):
            raise LswagError(f"malformed {self.name} genotype text {text[:80]!r}...") from None
        missing = {"normal", "reduce"} - set(fields)
        if missing:
            raise LswagError(f"{self.name} genotype lacks {', '.join(sorted(missing))}")
        try:
            return Genotype(tuple((str(op), int(i)) for op, i in fields["normal"]),
                            tuple((str(op), int(i)) for op, i in fields["reduce"]),
                            tuple(fields.get("normal_concat", CONCAT)), tuple(fields.get("reduce_concat", CONCAT)))
        except (TypeError, ValueError):
            raise LswagError(f"{self.name} genotype cells must be lists of (op, input) pairs") from None

    def _from_compact(self, text: str) -> Genotype:
        try:
            cells = ast.literal_eval(text)
            normal, reduce = ([(NB301_OPS[op], int(i)) for i, op in cell] for cell in cells)
        except (SyntaxError, ValueError, TypeError, IndexError):
            raise LswagError(f"malformed compact {self.name} genotype {text[:80]!r}; expected "
                             f"(((input, op), ... x8), ((input, op), ... x8)) with op 0..{len(NB301_OPS) - 1} "
                             f"({', '.join(NB301_OPS)})") from None
        return Genotype(tuple(normal), tuple(reduce))

    def validate(self, genotype: Genotype) -> Genotype:
        for label, cell, concat in (("normal", genotype.normal, genotype.normal_concat),
                                    ("reduce", genotype.reduce, genotype.reduce_concat)):
            if len(cell) != 2 * NODES:
                raise LswagError(f"{self.name} {label} cell has {len(cell)} (op, input) pairs, expected {2 * NODES}")
            for position, (op, source) in enumerate(cell):
                if op not in self.ops:
                    raise LswagError(f"{self.name} {label} cell: unknown op {op!r}; valid: {', '.join(self.ops)}")
                node = _node_of(position)
                if not 0 <= source < node:
                    raise LswagError(f"{self.name} {label} cell: node {node} takes input {source}; "
                                     f"valid inputs are 0..{node - 1}")
            if not concat or any(not 2 <= n < 2 + NODES for n in concat):
                raise LswagError(f"{self.name} {label}_concat {list(concat)} must list nodes among 2..{1 + NODES}")
        return Genotype(tuple(genotype.normal), tuple(genotype.reduce), tuple(genotype.normal_concat),
                        tuple(genotype.reduce_concat))

    def format(self, arch: Any) -> str:
        return self.parse(arch).to_str()

    def _cells(self) -> int:
        """Cells with two distinct inputs per node: Π_node C(node, 2) input pairs, |ops|^8 op choices."""
        return math.prod(math.comb(node, 2) for node in range(2, 2 + NODES)) * len(self.ops) ** (2 * NODES)

    def size(self) -> int:
        return self._cells() ** 2

    def _random_cell(self, rng: random.Random) -> tuple[Pair, ...]:
        pairs = []
        for node in range(2, 2 + NODES):
            for source in sorted(rng.sample(range(node), 2)):
                pairs.append((rng.choice(self.ops), source))
        return tuple(pairs)

    def enumerate(self) -> Iterator[Genotype]:
        """Every genotype with two distinct inputs per node (about 1e18: take, never list)."""
        def cells():
            sources = itertools.product(*(itertools.combinations(range(node), 2) for node in range(2, 2 + NODES)))
            for chosen in sources:
                flat = [s for pair in chosen for s in pair]
                for ops in itertools.product(self.ops, repeat=2 * NODES):
                    yield tuple(zip(ops, flat))
        for normal in cells():
            for reduce in cells():
                yield Genotype(normal, reduce)

    def sample(self, n: int, seed: int = 0) -> list[Genotype]:
        """``n`` distinct genotypes, NAS-Bench-301's way: each node two distinct inputs, ops uniform."""
        n = check_int(n, f"{self.name} sample size")
        rng, found = random.Random(seed), {}
        while len(found) < n:
            found.setdefault(Genotype(self._random_cell(rng), self._random_cell(rng)), None)
        return list(found)

    def mutate(self, arch: Any, rng: random.Random, prob: float | None = None) -> Genotype:
        """One pair of the normal or the reduction cell changed: its op for another, or its input for
        another one that keeps the node's two inputs distinct (when there is one). With ``prob``, each
        of the cells' pairs is changed so with that probability (one pair when none is drawn)."""
        genotype = self.parse(arch)
        cells = {"normal": list(genotype.normal), "reduce": list(genotype.reduce)}
        pairs = [(which, i) for which in cells for i in range(len(cells[which]))]
        chosen = [] if prob is None else [pair for pair in pairs if rng.random() < prob]
        for which, position in chosen or [(rng.choice(("normal", "reduce")), rng.randrange(len(cells["normal"])))]:
            cell = cells[which]
            op, source = cell[position]
            node, partner = _node_of(position), cell[position ^ 1][1]
            others = [s for s in range(node) if s not in (source, partner)]
            if others and rng.random() < 0.5:
                cell[position] = (op, rng.choice(others))
            else:
                cell[position] = (rng.choice([o for o in self.ops if o != op]), source)
        return Genotype(tuple(cells["normal"]), tuple(cells["reduce"]), genotype.normal_concat, genotype.reduce_concat)

    def crossover(self, first: Any, second: Any, rng: random.Random) -> Genotype:
        """Each node's two (op, input) pairs, in each cell, from either parent with probability ½."""
        a, b = self.parse(first), self.parse(second)

        def mix(x, y):
            return tuple(pair for node in range(NODES)
                         for pair in (x if rng.random() < 0.5 else y)[2 * node:2 * node + 2])
        return Genotype(mix(a.normal, b.normal), mix(a.reduce, b.reduce), a.normal_concat, a.reduce_concat)

    def build(self, arch: Any, num_classes: int | None = None, seed: int | None = None, C: int | None = None,
              layers: int | None = None, auxiliary: bool = False, affine: bool = True) -> NetworkCIFAR:
        """``NetworkCIFAR`` of ``arch`` with ``C`` initial channels and ``layers`` cells (the space's
        training configuration by default). ``affine=False`` drops the BatchNorm scales and shifts
        inside the cells' ops (not the stem's or the preprocessing's), as NASLib's NB301 model does
        (NAS-Bench-Suite-Zero's ``params`` column counts that model). With ``seed``, weights depend
        only on the seed."""
        genotype = self.parse(arch)
        classes = check_int(self.num_classes if num_classes is None else num_classes, "num_classes", 1)
        C = check_int(self.default_C if C is None else C, f"{self.name} initial channels C", 2)
        layers = check_int(self.default_layers if layers is None else layers, f"{self.name} layers", 3)
        return seeded(seed, lambda: NetworkCIFAR(genotype, C, classes, layers, auxiliary, affine))


    # -- supernets, for pruning (lswag.search.strategies.Prune) ------------------------------------
    # ``edges``: the normal cell's 14 supernet edges (:data:`SUPERNET_EDGES`), then the reduction
    # cell's, each a tuple of op names (empty: the edge is removed).

    def supernet_edges(self) -> tuple[tuple[str, ...], ...]:
        """The start of pruning: every op but ``none`` on every edge of both cells."""
        return tuple(tuple(op for op in self.ops if op != "none") for _ in range(2 * len(SUPERNET_EDGES)))

    def edge_groups(self) -> tuple[tuple[int, ...], ...]:
        """The edges entering each node of each cell: pruning keeps two of each group."""
        return tuple(tuple(offset + k for k, (n, _) in enumerate(SUPERNET_EDGES) if n == node)
                     for offset in (0, len(SUPERNET_EDGES)) for node in range(2, 2 + NODES))

    def supernet_key(self, edges) -> str:
        half = len(SUPERNET_EDGES)
        cells = [";".join(f"{'/'.join(ops) or 'none'}~{src}" for ops, (_, src) in zip(edges[i:i + half], SUPERNET_EDGES))
                 for i in (0, half)]
        return f"supernet:normal={cells[0]}|reduce={cells[1]}"

    def supernet(self, edges, num_classes: int | None = None, seed: int | None = None, C: int | None = None,
                 layers: int | None = None) -> NetworkCIFAR:
        """NetworkCIFAR whose cells sum, on each supernet edge, the ops ``edges`` lists."""
        edges = tuple(tuple(ops) for ops in edges)
        half = len(SUPERNET_EDGES)
        if len(edges) != 2 * half or any(op not in self.ops for ops in edges for op in ops):
            raise LswagError(f"a {self.name} supernet has {2 * half} edges (normal, then reduction cell), each "
                             f"ops among {', '.join(self.ops)}")
        sources = [src for _, src in SUPERNET_EDGES]
        genotype = Genotype(tuple(zip(edges[:half], sources)), tuple(zip(edges[half:], sources)))
        classes = check_int(self.num_classes if num_classes is None else num_classes, "num_classes", 1)
        C = check_int(self.default_C if C is None else C, f"{self.name} initial channels C", 2)
        layers = check_int(self.default_layers if layers is None else layers, f"{self.name} layers", 3)
        nodes = [n for n, _ in SUPERNET_EDGES]
        return seeded(seed, lambda: NetworkCIFAR(genotype, C, classes, layers, False, True, nodes))

    def from_supernet(self, edges) -> Genotype:
        """The genotype of a pruned supernet: two edges of one op each per node."""
        half = len(SUPERNET_EDGES)
        cells = []
        for offset in (0, half):
            pairs = [(ops[0], src) for ops, (_, src) in zip(edges[offset:offset + half], SUPERNET_EDGES) if ops]
            if len(pairs) != 2 * NODES or any(len(ops) > 1 for ops in edges[offset:offset + half]):
                raise LswagError(f"a pruned {self.name} supernet needs one op on two edges per node, got {edges!r}")
            cells.append(tuple(pairs))
        return self.validate(Genotype(*cells))


#: proxy options measured to suit each space (:func:`lswag.spaces.proxy_defaults`); user options win
PROXY_DEFAULTS = {
    # L-SWAG's product, measured per space on 200 archs each (docs/reproduction.md): on SWAP's DARTS
    # cells (scored at C=16, 8 cells) Σ ln(Ψ_l·Λ_l) gives rho 0.74, the paper's Σ Ψ_l·Λ_l 0.57 (paired
    # difference [0.12, 0.22]); on NB301's genotypes the sum wins (0.59 against 0.52), so it keeps it.
    "darts": {"l_swag": {"product": "log"}},
    "nb301": {},
}

DARTS = register(DartsSpace("darts", PRIMITIVES, C=36, layers=20, description=(
    "DARTS cells: 8 ops (none included) on 2 distinct inputs per node, normal + reduction cell; "
    "NetworkCIFAR C=36, 20 cells (DARTS' CIFAR-10 evaluation network)")), proxy_defaults=PROXY_DEFAULTS["darts"])
NB301 = register(DartsSpace("nb301", NB301_OPS, C=32, layers=8, description=(
    "NAS-Bench-301: DARTS cells with its 7 ops (no none); NetworkCIFAR C=32, 8 cells (its training network)")),
    proxy_defaults=PROXY_DEFAULTS["nb301"])
