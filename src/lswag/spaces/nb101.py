"""The NAS-Bench-101 cell search space (Ying et al., ICML 2019).

A cell is a DAG of at most 7 vertices given by a strictly upper-triangular adjacency matrix (at
most 9 edges) and one op per vertex: ``input``, interior ops among ``conv3x3-bn-relu``,
``conv1x1-bn-relu`` and ``maxpool3x3``, and ``output``. As NAS-Bench-101's ``ModelSpec``, a spec is
pruned first (vertices not on an input-output path removed); a spec without such a path is
invalid. Isomorphic cells share :func:`graph_hash` (the benchmark's ``hash_module``), and the
space holds 423,624 distinct ones (the NAS-Bench-101 authors' count).

The network is NAS-Bench-101's (``nasbench/lib/model_builder.py``, ``../shared/docs/SPACES.md``
§2.1): a 3×3 conv-BN-ReLU stem to 128 channels, 3 stacks of 3 cells, a 2×2 max-pool and doubled
channels before stacks 2 and 3, global average pooling and a Linear layer. Inside a cell, the
output's channels are split among the vertices that feed it (:func:`vertex_channels`); a vertex
sums its inputs (interior ones truncated to its width, the cell input through a 1×1 conv-BN-ReLU
projection) and applies its op; the output concatenates its interior inputs and adds the
projected cell input when the input feeds it directly. Convolutions have no bias; BatchNorm uses
eps 1e-5 and momentum 0.003 (TensorFlow's 0.997 decay). Weights are drawn as the PyTorch port
NASLib uses draws them: convolutions N(0, 2 / (k·k·C_out)), the Linear layer N(0, 0.01²), biases 0.

Text forms: ``0111101|0000011|...|0000000;input,conv3x3-bn-relu,...,output`` (canonical: matrix
rows as bits, then the ops), or JSON ``{"matrix": [[...]], "ops": [...]}`` (``adjacency`` also
accepted).
"""
from __future__ import annotations

import hashlib
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn

from lswag.errors import LswagError
from lswag.spaces import SearchSpace, check_int, decoded, register, seeded

OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
MAX_VERTICES = 7
MAX_EDGES = 9
STEM_CHANNELS = 128
STACKS = 3
CELLS_PER_STACK = 3
#: distinct cells of the benchmark (NAS-Bench-101 paper, Table 1; ``generate_graphs.py``)
NUM_CELLS = 423_624
BN_MOMENTUM = 0.003     # TensorFlow's decay 0.997, in PyTorch's convention
BN_EPS = 1e-5
#: NASLib's nb101 encoding: 49 adjacency entries, then a code per vertex
NASLIB_OP_CODES = {0: "input", 1: "output", 2: "maxpool3x3", 3: "conv1x1-bn-relu", 4: "conv3x3-bn-relu"}
NASLIB_ENCODING_LENGTH = MAX_VERTICES * MAX_VERTICES + MAX_VERTICES


@dataclass(frozen=True)
class Spec:
    """A pruned cell: the adjacency rows and the ops, input first and output last."""

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]

    @property
    def array(self) -> np.ndarray:
        return np.array(self.matrix, dtype=np.int64)

    @property
    def edges(self) -> int:
        return int(self.array.sum())

    def to_str(self) -> str:
        return "|".join("".join(map(str, row)) for row in self.matrix) + ";" + ",".join(self.ops)

    def hash(self) -> str:
        return graph_hash(self.array, [-1] + [OPS.index(op) for op in self.ops[1:-1]] + [-2])


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def graph_hash(matrix: np.ndarray, labels: list[int]) -> str:
    """NAS-Bench-101's ``hash_module``: iterated hashing of each vertex's (out-degree, in-degree,
    label) with its neighbours' hashes; isomorphic labelled graphs get the same fingerprint."""
    vertices = len(matrix)
    in_degree, out_degree = matrix.sum(axis=0), matrix.sum(axis=1)
    hashes = [_md5(str((int(out_degree[v]), int(in_degree[v]), labels[v]))) for v in range(vertices)]
    for _ in range(vertices):
        hashes = [_md5("".join(sorted(hashes[w] for w in range(vertices) if matrix[w, v])) + "|"
                       + "".join(sorted(hashes[w] for w in range(vertices) if matrix[v, w])) + "|" + hashes[v])
                  for v in range(vertices)]
    return _md5(str(sorted(hashes)))


def prune(matrix: np.ndarray, ops: list[str]) -> tuple[np.ndarray, list[str]] | None:
    """The matrix and ops without the vertices off every input-output path; None when the output
    cannot be reached from the input (``ModelSpec._prune``)."""
    vertices = len(matrix)
    forward, frontier = {0}, [0]
    while frontier:
        v = frontier.pop()
        for w in range(v + 1, vertices):
            if matrix[v, w] and w not in forward:
                forward.add(w)
                frontier.append(w)
    backward, frontier = {vertices - 1}, [vertices - 1]
    while frontier:
        v = frontier.pop()
        for w in range(v):
            if matrix[w, v] and w not in backward:
                backward.add(w)
                frontier.append(w)
    keep = sorted(forward & backward)
    if vertices - 1 not in forward:
        return None
    return matrix[np.ix_(keep, keep)], [ops[v] for v in keep]


def vertex_channels(c_in: int, c_out: int, matrix: np.ndarray) -> list[int]:
    """Channels of every vertex (``compute_vertex_channels``): the output's ``c_out`` split as
    evenly as possible among the interior vertices feeding it (the first ones get the remainder),
    then each other interior vertex as wide as the widest vertex it feeds."""
    vertices = len(matrix)
    channels = [0] * vertices
    channels[0], channels[-1] = c_in, c_out
    if vertices == 2:
        return channels
    feeding_output = int(matrix[1:, -1].sum())
    interior, correction = divmod(c_out, feeding_output)
    for v in range(1, vertices - 1):
        if matrix[v, -1]:
            channels[v] = interior + (1 if correction > 0 else 0)
            correction -= 1 if correction > 0 else 0
    for v in range(vertices - 3, 0, -1):
        if not matrix[v, -1]:
            channels[v] = max(channels[w] for w in range(v + 1, vertices - 1) if matrix[v, w])
    return channels


class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM), nn.ReLU())


def _vertex_op(op: str, channels: int) -> nn.Module:
    if op == "maxpool3x3":
        return nn.MaxPool2d(3, 1, 1)
    return ConvBNReLU(channels, channels, 3 if op == "conv3x3-bn-relu" else 1)


class Cell(nn.Module):
    def __init__(self, spec: Spec, c_in: int, c_out: int):
        super().__init__()
        matrix = spec.array
        self.matrix = matrix
        self.channels = vertex_channels(c_in, c_out, matrix)
        vertices = len(matrix)
        self.ops = nn.ModuleDict({str(t): _vertex_op(spec.ops[t], self.channels[t]) for t in range(1, vertices - 1)})
        self.projections = nn.ModuleDict({str(t): ConvBNReLU(c_in, self.channels[t], 1)
                                          for t in range(1, vertices) if matrix[0, t]})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        matrix, vertices = self.matrix, len(self.matrix)
        tensors, outputs = [x], []
        for t in range(1, vertices - 1):
            fan_in = [tensors[s][:, :self.channels[t]] for s in range(1, t) if matrix[s, t]]
            if matrix[0, t]:
                fan_in.append(self.projections[str(t)](x))
            tensors.append(self.ops[str(t)](sum(fan_in)))
            if matrix[t, -1]:
                outputs.append(tensors[t])
        if not outputs:                         # only input -> output
            return self.projections[str(vertices - 1)](x)
        out = torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]
        if matrix[0, -1]:
            out = out + self.projections[str(vertices - 1)](x)
        return out


class NB101Network(nn.Module):
    def __init__(self, spec: Spec, num_classes: int = 10, stem_channels: int = STEM_CHANNELS):
        super().__init__()
        self.stem = ConvBNReLU(3, stem_channels, 3)
        layers, c_in, channels = [], stem_channels, stem_channels
        for stack in range(STACKS):
            if stack > 0:
                layers.append(nn.MaxPool2d(2, 2))
                channels *= 2
            for _ in range(CELLS_PER_STACK):
                layers.append(Cell(spec, c_in, channels))
                c_in = channels
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(self.stem(x)).mean(dim=(2, 3)))


class NB101Space(SearchSpace):
    name = "nb101"
    description = ("NAS-Bench-101: cells of <= 7 vertices and <= 9 edges, ops conv3x3/conv1x1/maxpool3x3, "
                   "423,624 distinct cells; 128-channel stem, 3 stacks x 3 cells, CIFAR-10")
    input_shape = (3, 32, 32)
    channels_last_on_cpu = True
    num_classes = 10

    def parse(self, text: Any) -> Spec:
        """A pruned :class:`Spec` from one, from ``rows;ops`` text, from JSON or a dict with
        ``matrix`` (or ``adjacency``) and ``ops``, or from a (matrix, ops) pair; invalid specs raise."""
        if isinstance(text, Spec):
            return self.validate(text.matrix, text.ops)
        text = decoded(text, "nb101 spec")
        if isinstance(text, dict):
            matrix = text.get("matrix", text.get("adjacency"))
            if matrix is None or "ops" not in text:
                raise LswagError("an nb101 spec needs 'matrix' (or 'adjacency') and 'ops'")
            return self.validate(matrix, text["ops"])
        if isinstance(text, str) and text.strip().startswith("("):
            try:
                text = [int(v) for v in text.strip()[1:-1].split(",") if v.strip()]
            except ValueError:
                raise LswagError(f"an nb101 NASLib encoding holds integers only, got {text!r}") from None
        if isinstance(text, (tuple, list)) and len(text) == NASLIB_ENCODING_LENGTH:
            return self._from_naslib(list(text))
        if isinstance(text, (tuple, list)) and len(text) == 2:
            return self.validate(*text)
        if isinstance(text, str) and ";" in text:
            rows, _, ops = text.strip().partition(";")
            try:
                matrix = [[int(bit) for bit in row] for row in rows.split("|")]
            except ValueError:
                raise LswagError(f"nb101 matrix rows must be 0/1 digits, got {rows!r}") from None
            return self.validate(matrix, [op.strip() for op in ops.split(",")])
        raise LswagError(f"cannot parse nb101 spec {text!r}; expected "
                         f"'0110|0001|0001|0000;input,conv3x3-bn-relu,maxpool3x3,output', "
                         "{\"matrix\": [[...]], \"ops\": [...]} or NASLib's 56-integer encoding")

    def _from_naslib(self, encoding: list) -> Spec:
        """NASLib's encoding: the 7×7 adjacency flattened row by row, then one code per vertex
        (:data:`NASLIB_OP_CODES`), as in NAS-Bench-Suite-Zero's ``naslib_encoding`` column."""
        codes = encoding[MAX_VERTICES * MAX_VERTICES:]
        if any(code not in NASLIB_OP_CODES for code in codes):
            raise LswagError(f"nb101 NASLib op codes must be in {sorted(NASLIB_OP_CODES)} "
                             f"({', '.join(f'{k} {v}' for k, v in NASLIB_OP_CODES.items())}), got {codes}")
        matrix = [encoding[row * MAX_VERTICES:(row + 1) * MAX_VERTICES] for row in range(MAX_VERTICES)]
        return self.validate(matrix, [NASLIB_OP_CODES[code] for code in codes])

    def validate(self, matrix, ops) -> Spec:
        """The pruned spec; one-line errors for a malformed or invalid one."""
        try:
            array = np.array(matrix, dtype=np.int64)
        except (TypeError, ValueError):
            raise LswagError(f"nb101 matrix must be a square 0/1 matrix, got {matrix!r}") from None
        ops = list(ops)
        if array.ndim != 2 or array.shape[0] != array.shape[1]:
            raise LswagError(f"nb101 matrix must be square, got shape {array.shape}")
        vertices = array.shape[0]
        if not 2 <= vertices <= MAX_VERTICES:
            raise LswagError(f"an nb101 cell has 2..{MAX_VERTICES} vertices, got {vertices}")
        if not np.isin(array, (0, 1)).all():
            raise LswagError("nb101 matrix entries must be 0 or 1")
        if np.tril(array).any():
            raise LswagError("nb101 matrix must be strictly upper-triangular (edges go from lower to higher "
                             "vertices; anything else is a cycle or a self-loop)")
        if len(ops) != vertices:
            raise LswagError(f"nb101 spec has {vertices} vertices but {len(ops)} ops")
        if ops[0] != "input" or ops[-1] != "output":
            raise LswagError(f"nb101 ops must start with 'input' and end with 'output', got {ops[0]!r} ... {ops[-1]!r}")
        for op in ops[1:-1]:
            if op not in OPS:
                raise LswagError(f"unknown nb101 op {op!r}; valid: {', '.join(OPS)}")
        pruned = prune(array, ops)
        if pruned is None:
            raise LswagError("nb101 cell has no path from input to output")
        array, ops = pruned
        if array.sum() > MAX_EDGES:
            raise LswagError(f"nb101 cell has {int(array.sum())} edges after pruning; at most {MAX_EDGES}")
        return Spec(tuple(tuple(int(b) for b in row) for row in array), tuple(ops))

    def format(self, arch: Any) -> str:
        return self.parse(arch).to_str()

    def size(self) -> int:
        return NUM_CELLS

    def enumerate(self) -> Iterator[Spec]:
        """Every distinct valid cell once (by :func:`graph_hash`), smallest vertex count first. The
        full walk tries millions of labelled graphs in Python (hours): take, do not exhaust."""
        seen = set()
        for vertices in range(2, MAX_VERTICES + 1):
            upper = [(i, j) for j in range(vertices) for i in range(j)]
            for bits in itertools.product((0, 1), repeat=len(upper)):
                if sum(bits) > MAX_EDGES:
                    continue
                matrix = np.zeros((vertices, vertices), dtype=np.int64)
                for (i, j), bit in zip(upper, bits):
                    matrix[i, j] = bit
                for interior in itertools.product(OPS, repeat=vertices - 2):
                    ops = ["input", *interior, "output"]
                    pruned = prune(matrix, ops)
                    if pruned is None or len(pruned[1]) != vertices:   # smaller cells come at their own count
                        continue
                    spec = Spec(tuple(tuple(int(b) for b in row) for row in matrix), tuple(ops))
                    key = spec.hash()
                    if key not in seen:
                        seen.add(key)
                        yield spec

    def _random_valid(self, rng: random.Random) -> Spec:
        while True:
            matrix = np.triu([[rng.randint(0, 1) for _ in range(MAX_VERTICES)] for _ in range(MAX_VERTICES)], 1)
            ops = ["input", *(rng.choice(OPS) for _ in range(MAX_VERTICES - 2)), "output"]
            try:
                return self.validate(matrix, ops)
            except LswagError:
                continue

    def sample(self, n: int, seed: int = 0) -> list[Spec]:
        """``n`` cells of distinct hashes, NASLib's way: a random upper-triangular 7×7 matrix and
        random interior ops, redrawn until valid."""
        check_int(n, "nb101 sample size", 0, NUM_CELLS)
        rng, found = random.Random(seed), {}
        while len(found) < n:
            spec = self._random_valid(rng)
            found.setdefault(spec.hash(), spec)
        return list(found.values())

    @staticmethod
    def _padded(spec: Spec) -> tuple[np.ndarray, list[str]]:
        """The 7-vertex form: unused vertices (no edges, any op) inserted before the output."""
        vertices = len(spec.ops)
        matrix = np.zeros((MAX_VERTICES, MAX_VERTICES), dtype=np.int64)
        array = spec.array
        keep = list(range(vertices - 1)) + [MAX_VERTICES - 1]
        matrix[np.ix_(keep, keep)] = array
        ops = list(spec.ops[:-1]) + [OPS[2]] * (MAX_VERTICES - vertices) + ["output"]
        return matrix, ops

    def mutate(self, arch: Any, rng: random.Random, prob: float | None = None) -> Spec:
        """NASLib's mutation: each possible edge flipped with probability 1/7 and each interior op
        redrawn with probability 1/3 (``prob`` when given), repeated until the cell is valid and a
        different cell."""
        op_prob = 1 / 3 if prob is None else prob
        spec = self.parse(arch)
        matrix, ops = self._padded(spec)
        for _ in range(10_000):
            new = matrix.copy()
            for i in range(MAX_VERTICES):
                for j in range(i + 1, MAX_VERTICES):
                    if rng.random() < 1 / MAX_VERTICES:
                        new[i, j] = 1 - new[i, j]
            new_ops = [ops[0]] + [rng.choice(OPS) if rng.random() < op_prob else op for op in ops[1:-1]] + [ops[-1]]
            try:
                child = self.validate(new, new_ops)
            except LswagError:
                continue
            if child.hash() != spec.hash():
                return child
        raise LswagError(f"no valid mutation of nb101 cell {spec.to_str()} found in 10,000 tries")

    def crossover(self, first: Any, second: Any, rng: random.Random) -> Spec:
        """Each possible edge and each interior op (of the 7-vertex forms) from either parent with
        probability ½, repeated until the child is valid (the first parent after 1,000 tries)."""
        (m1, o1), (m2, o2) = self._padded(self.parse(first)), self._padded(self.parse(second))
        for _ in range(1000):
            take = np.array([[rng.random() < 0.5 for _ in range(MAX_VERTICES)] for _ in range(MAX_VERTICES)])
            ops = [a if rng.random() < 0.5 else b for a, b in zip(o1, o2)]
            try:
                return self.validate(np.where(take, m1, m2), ops)
            except LswagError:
                continue
        return self.parse(first)

    def build(self, arch: Any, num_classes: int | None = None, seed: int | None = None,
              stem_channels: int = STEM_CHANNELS) -> NB101Network:
        """NAS-Bench-101's network of ``arch``; ``stem_channels`` scales every width (128 in the
        benchmark). With ``seed``, weights depend only on the seed."""
        spec = self.parse(arch)
        classes = check_int(self.num_classes if num_classes is None else num_classes, "num_classes", 1)
        stem_channels = check_int(stem_channels, "nb101 stem_channels", 1)
        return seeded(seed, lambda: NB101Network(spec, classes, stem_channels))


#: proxy options measured to suit the space (:func:`lswag.spaces.proxy_defaults`); user options win
PROXY_DEFAULTS = {
    # Measured on all 301 distinct cells of Suite-Zero's table (docs/reproduction.md): Σ ln(Ψ_l·Λ_l)
    # gives rho 0.56, the paper's Σ Ψ_l·Λ_l 0.37 (Λ_l ≈ the layer's unit count there, so the sum
    # weighs the widest layers); no window gains held-out over all layers with the log product.
    "nb101": {"l_swag": {"product": "log"}},
}

SPACE = register(NB101Space(), proxy_defaults=PROXY_DEFAULTS["nb101"])
