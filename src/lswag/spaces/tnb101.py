"""TransNAS-Bench-101 (Duan et al., CVPR 2021): micro (cell) and macro (skeleton) spaces, 7 tasks.

Encoder (``MacroNet(net_code, structure='backbone')``, ``../shared/docs/SPACES.md`` §4.3): a stem
(3×3 stride-2 conv to C/2, BN, then ReLU-conv3×3 stride 2-BN to C; input /4), then one module per
digit of the skeleton, each two cells (the first with the module's stride and channel change):
digit 1 keeps channels and resolution, 2 doubles the channels, 3 halves the resolution, 4 both.

* **micro** ``64-41414-a_bc_def``: fixed skeleton 41414, and the cell: node 1 = op_a(node 0),
  node 2 = op_b(n0) + op_c(n1), node 3 = op_d(n0) + op_e(n1) + op_f(n2), ops 0 none (zeros),
  1 skip (identity, or a factorized reduction when the edge changes stride or channels), 2 ReLU-
  conv1×1-BN, 3 ReLU-conv3×3-BN; edges from node 0 carry the cell's stride and channel change.
  4,096 cells.
* **macro** ``64-<4 to 6 digits>-basic``: the cell is a ResNet basic block (ReLU-conv3×3-BN twice,
  a 1×1 conv-BN shortcut when shape changes). The benchmark's shortcut BN was built as
  ``BatchNorm2d(planes, affine, track_running_stats)``, i.e. eps = 1 and momentum = 1 (§0.5); the
  builder keeps it (``bn_compat=True``, the network the benchmark trained). A skeleton has 1..4
  downsampling digits (3, 4) and 1..3 channel-doubling ones (2, 4): 3,256 networks.

Convolutions start Kaiming-normal (fan-out, ReLU gain), BN scales 1 and shifts 0 (the encoder's
initialisation); heads keep PyTorch's defaults. Tasks (``build(arch, task=...)``, :data:`TASKS`):

=================  ==================  ==========================================  ==================
task               input               head                                        loss
=================  ==================  ==========================================  ==================
class_object       3×256×256           pool → Linear(C, 100)                       soft cross-entropy
class_scene        3×256×256           pool → Linear(C, 63)                        soft cross-entropy
room_layout        3×256×256           pool → Linear(C, 9)                         MSE
jigsaw             9 tiles 3×64×64     shared encoder per tile, pool, concat,      cross-entropy
                                       Linear(9C, 1000)
segmentsemantic    3×256×256           conv/deconv decoder to 17×256×256           per-pixel CE
autoencoder        3×256×256           14-layer conv/deconv decoder, Tanh, 3×256²  L1
normal             3×256×256           as autoencoder                              L1
=================  ==================  ==========================================  ==================

The decoders' depth follows the encoder's output width as the benchmark computed it (for a
224×224 input, although it trains on 256×256; the integer log makes both agree). The pix2pix
discriminator of autoencoder and normal only trains the generator: ``discriminator=True`` adds
it as the ``discriminator`` attribute (it takes no part in the forward pass).
"""
from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn as nn

from lswag.data import Batch
from lswag.errors import LswagError, unknown_choice
from lswag.probe import DeclaresBlocks
from lswag.spaces import SearchSpace, check_int, register, seeded

BASE_CHANNELS = 64
MICRO_SKELETON = "41414"
MICRO_OPS = "0123"       # none, skip, conv1x1, conv3x3
TILES = 9


@dataclass(frozen=True)
class Task:
    name: str
    input_shape: tuple[int, ...]      # per sample
    outputs: int                      # classes, channels or values
    loss: str


TASKS = {t.name: t for t in (
    Task("class_object", (3, 256, 256), 100, "soft_cross_entropy"),
    Task("class_scene", (3, 256, 256), 63, "soft_cross_entropy"),
    Task("room_layout", (3, 256, 256), 9, "mse"),
    Task("jigsaw", (TILES, 3, 64, 64), 1000, "cross_entropy"),
    Task("segmentsemantic", (3, 256, 256), 17, "cross_entropy"),
    Task("autoencoder", (3, 256, 256), 3, "l1"),
    Task("normal", (3, 256, 256), 3, "l1"),
)}

DENSE_TASKS = ("segmentsemantic", "autoencoder", "normal")   # decoder heads: outputs of the input's size


# -- encoder ------------------------------------------------------------------------------------
class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out))


class Zero(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x):
        if self.c_in == self.c_out:
            return x.mul(0.0) if self.stride == 1 else x[:, :, ::self.stride, ::self.stride].mul(0.0)
        return x.new_zeros(x.shape[0], self.c_out, (x.shape[2] + 1) // self.stride, (x.shape[3] + 1) // self.stride)


class FactorizedReduce(nn.Module):
    """ReLU, two 1×1 convolutions (the second on the input shifted by one pixel, zero-padded), concat, BN."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        if c_out % 2:
            raise LswagError(f"a factorized reduction needs an even channel count, got {c_out}")
        self.relu = nn.ReLU()
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out // 2, 1, stride, bias=False) for _ in range(2))
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = self.relu(x)
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.convs[0](x), self.convs[1](shifted)], dim=1))


def _micro_op(op: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    if op == "0":
        return Zero(c_in, c_out, stride)
    if op == "1":
        return nn.Identity() if stride == 1 and c_in == c_out else FactorizedReduce(c_in, c_out, stride)
    kernel = 1 if op == "2" else 3
    return ReLUConvBN(c_in, c_out, kernel, stride, kernel // 2)


class MicroCell(nn.Module):
    def __init__(self, cell: str, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.nodes = [""] + cell.split("_")             # ['', 'a', 'bc', 'def']
        self.edges = nn.ModuleList(_micro_op(op, c_in if source == 0 else c_out, c_out, stride if source == 0 else 1)
                                   for node in self.nodes for source, op in enumerate(node))

    def forward(self, x):
        features, edge = [x], 0
        for node in self.nodes[1:]:
            outputs = [self.edges[edge + source](features[source]) for source in range(len(node))]
            edge += len(node)
            features.append(torch.stack(outputs).sum(0))
        return features[-1]


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, bn_compat: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            # the benchmark's BatchNorm2d(planes, affine, track_running_stats): eps 1, momentum 1
            norm = nn.BatchNorm2d(c_out, eps=1.0, momentum=1.0) if bn_compat else nn.BatchNorm2d(c_out)
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm)

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


class Encoder(nn.Module):
    """The benchmark's ``MacroNet`` backbone; ``output_dim`` as the benchmark computes it (224×224 input)."""

    def __init__(self, skeleton: str, cell: str | None, channels: int = BASE_CHANNELS, bn_compat: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(channels // 2),
                                  ReLUConvBN(channels // 2, channels, 3, 2, 1))
        width, planes, modules = 224 // 4, channels, []
        for digit in map(int, skeleton):
            target = planes * 2 if digit % 2 == 0 else planes
            stride = 2 if digit > 2 else 1
            width //= stride
            blocks = []
            for block in range(2):
                c_in, block_stride = (planes, stride) if block == 0 else (target, 1)
                blocks.append(MicroCell(cell, c_in, target, block_stride) if cell is not None
                              else BasicBlock(c_in, target, block_stride, bn_compat))
            modules.append(nn.Sequential(*blocks))
            planes = target
        self.layers = nn.Sequential(*modules)
        self.output_dim = (planes, width, width)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.layers(self.stem(x))


# -- heads --------------------------------------------------------------------------------------
class ConvLayer(nn.Sequential):
    """Conv (with bias) → BN → activation; the last layers have no BN."""

    def __init__(self, c_in, c_out, activation, norm=True, transposed=False):
        conv = (nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1) if transposed
                else nn.Conv2d(c_in, c_out, 3, 1, 1))
        super().__init__(conv, *([nn.BatchNorm2d(c_out)] if norm else []), *([activation] if activation else []))


def _leaky():
    return nn.LeakyReLU(0.2)


class SegmentationDecoder(nn.Sequential):
    def __init__(self, in_dim, classes, target_width=256):
        c, width = in_dim[0], in_dim[1]
        upsamples = int(math.log2(target_width / width))
        if upsamples not in range(2, 7):
            raise LswagError(f"the segmentation decoder needs 2..6 upsamplings, got {upsamples} (encoder width {width})")
        layers, channels = [ConvLayer(c, 1024, _leaky())], 1024
        for _ in range(6 - upsamples):
            layers.append(ConvLayer(channels, channels // 2, _leaky()))
            channels //= 2
        for _ in range(upsamples - 1):
            layers.append(ConvLayer(channels, channels // 2, _leaky(), transposed=True))
            channels //= 2
        layers += [ConvLayer(channels, channels, _leaky(), transposed=True),
                   ConvLayer(channels, classes, None, norm=False)]
        super().__init__(*layers)


class GenerativeDecoder(nn.Sequential):
    """The pix2pix generator's decoder: 14 conv / deconv layers 1024 → ... → 16 → 3 channels, Tanh."""

    def __init__(self, in_dim, channels_out=3, target_width=256):
        c, width = in_dim[0], in_dim[1]
        upsamples = int(math.log2(target_width / width))
        if upsamples not in range(2, 7):
            raise LswagError(f"the generative decoder needs 2..6 upsamplings, got {upsamples} (encoder width {width})")
        up = lambda c_in, c_out, needed: ConvLayer(c_in, c_out, _leaky(), transposed=needed)  # noqa: E731
        super().__init__(
            ConvLayer(c, 1024, _leaky()), ConvLayer(1024, 1024, _leaky()), up(1024, 512, upsamples == 6),
            ConvLayer(512, 512, _leaky()), up(512, 256, upsamples >= 5),
            ConvLayer(256, 128, _leaky()), up(128, 64, upsamples >= 4),
            ConvLayer(64, 64, _leaky()), up(64, 32, upsamples >= 3),
            ConvLayer(32, 32, _leaky()), up(32, 16, True),
            ConvLayer(16, 32, _leaky()), up(32, 16, True),
            ConvLayer(16, channels_out, nn.Tanh(), norm=False))


class Discriminator(nn.Module):
    """pix2pix discriminator with spectral norm (trains the generator; not part of the forward pass)."""

    def __init__(self):
        super().__init__()
        spec = nn.utils.spectral_norm
        specs = [(6, 64, 5, 4, 2), (64, 128, 5, 4, 2), (128, 256, 5, 4, 2), (256, 256, 3, 1, 1),
                 (256, 512, 3, 1, 1), (512, 512, 3, 1, 1)]
        layers = []
        for c_in, c_out, k, s, p in specs:
            layers += [spec(nn.Conv2d(c_in, c_out, k, s, p)), nn.LeakyReLU(0.2)]
        self.model = nn.Sequential(*layers, nn.Conv2d(512, 1, 3, 1, 1), nn.AdaptiveAvgPool2d(1))

    def forward(self, pair):
        return self.model(pair).flatten()


class TaskNetwork(DeclaresBlocks, nn.Module):
    """Encoder + the task's head; jigsaw runs the shared encoder on each of the 9 tiles."""

    #: AZ-NAS's blocks are the encoder's modules (see :func:`lswag.probe.block_containers`)
    block_containers = ("encoder.layers",)

    def __init__(self, encoder: Encoder, task: Task, outputs: int, discriminator: bool = False):
        super().__init__()
        self.task = task.name
        self.encoder = encoder
        channels = encoder.output_dim[0]
        if task.name == "jigsaw":
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(TILES * channels, outputs))
        elif task.name == "segmentsemantic":
            self.head = SegmentationDecoder(encoder.output_dim, outputs)
        elif task.name in ("autoencoder", "normal"):
            self.head = GenerativeDecoder(encoder.output_dim, outputs)
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, outputs))
        self.discriminator = Discriminator() if discriminator else None

    def forward(self, x):
        if self.task == "jigsaw":
            if x.dim() != 5 or x.shape[1] != TILES:
                raise LswagError(f"jigsaw takes (batch, {TILES}, 3, H, W) tiles, got {tuple(x.shape)}")
            return self.head(torch.cat([self.encoder(x[:, i]) for i in range(TILES)], dim=1))
        return self.head(self.encoder(x))


# -- task batches -------------------------------------------------------------------------------


def task_batch(batch: Batch, task: Task, seed: int = 0) -> Batch:
    """A task's inputs and targets made from an image batch (B, 3, S, S), for scoring at init.

    The benchmark's Taskonomy targets are not available here, so they are derived from the
    images or drawn (seeded by ``seed``); only the loss gradients at initialisation see them.

    * class_object, class_scene: the one-hot distribution of ``label mod classes`` (the benchmark
      trains on soft labels), ``num_classes`` = the task's classes.
    * room_layout: 9 values drawn from N(0, 1).
    * jigsaw: the image cut into a 3×3 grid; the centred S/4-pixel square of each cell is a tile
      (64 px at 256², as in the benchmark); the tiles are shuffled by one of 1000 distinct seeded
      permutations, whose index is the class.
    * segmentsemantic: each pixel's class is its luminance quantile in its image, in 17 equal bins.
    * autoencoder: the image itself, scaled per image to [-1, 1] (the decoder ends in Tanh).
    * normal: the unit normal (−∂L/∂x, −∂L/∂y, 1) of the luminance surface L, a pseudo-normal map.
    """
    x, generator = batch.x, torch.Generator().manual_seed(seed)
    b, (h, w) = len(batch), x.shape[-2:]
    luminance = x.mean(dim=1)
    if task.name in ("class_object", "class_scene"):
        target = nn.functional.one_hot(batch.y % task.outputs, task.outputs).float()
        return Batch(x, target, task.outputs, batch.source)
    if task.name == "room_layout":
        return Batch(x, torch.randn(b, task.outputs, generator=generator), task.outputs, batch.source)
    if task.name == "jigsaw":
        tile = h // 4
        if tile < 1:
            raise LswagError(f"jigsaw tiles need images of at least 4 pixels, got {h}x{w}")
        permutations = _jigsaw_permutations(task.outputs, seed)
        rows = [(r * h // 3 + (h // 3 - tile) // 2, c * w // 3 + (w // 3 - tile) // 2)
                for r in range(3) for c in range(3)]
        tiles = torch.stack([x[:, :, top:top + tile, left:left + tile] for top, left in rows], dim=1)
        target = torch.randint(task.outputs, (b,), generator=generator)
        order = permutations[target]                                    # (B, 9)
        shuffled = tiles[torch.arange(b)[:, None], order]
        return Batch(shuffled, target, task.outputs, batch.source)
    if task.name == "segmentsemantic":
        ranks = luminance.flatten(1).argsort(dim=1).argsort(dim=1)
        target = (ranks * task.outputs // (h * w)).view(b, h, w)
        return Batch(x, target, task.outputs, batch.source)
    if task.name == "autoencoder":
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        high = x.amax(dim=(1, 2, 3), keepdim=True)
        return Batch(x, 2 * (x - low) / (high - low).clamp_min(1e-12) - 1, task.outputs, batch.source)
    dy, dx = torch.gradient(luminance, dim=(1, 2))
    normal = torch.stack([-dx, -dy, torch.ones_like(dx)], dim=1)
    return Batch(x, normal / normal.norm(dim=1, keepdim=True), task.outputs, batch.source)


def _jigsaw_permutations(count: int, seed: int) -> torch.Tensor:
    """``count`` distinct permutations of the 9 tiles, seeded (the benchmark's own set is not public here)."""
    rng, chosen = random.Random(seed), {}
    while len(chosen) < count:
        order = tuple(rng.sample(range(TILES), TILES))
        chosen.setdefault(order, None)
    return torch.tensor(list(chosen))


# -- the spaces ---------------------------------------------------------------------------------
def _macro_skeletons() -> tuple[str, ...]:
    """Every valid macro skeleton: 4-6 digits, 1..4 downsampling (3, 4), 1..3 doubling (2, 4)."""
    skeletons = []
    for length in (4, 5, 6):
        for digits in itertools.product("1234", repeat=length):
            down = sum(d in "34" for d in digits)
            double = sum(d in "24" for d in digits)
            if 1 <= down <= 4 and 1 <= double <= 3:
                skeletons.append("".join(digits))
    return tuple(skeletons)


class TNB101Space(SearchSpace):
    input_shape = (3, 256, 256)
    num_classes = 63
    loss = "soft_cross_entropy"           # of the default task, class_scene

    def __init__(self, kind: str):
        self.kind = kind
        self.name = f"tnb101_{kind}"
        self.description = (
            "TransNAS-Bench-101 micro: cells a_bc_def of 4 ops (none, skip, conv1x1, conv3x3) in skeleton "
            "64-41414, 4,096 networks, 7 tasks" if kind == "micro" else
            "TransNAS-Bench-101 macro: ResNet-block skeletons of 4-6 modules (keep/double channels, "
            "keep/halve resolution), 3,256 networks, 7 tasks")
        self._macros = _macro_skeletons() if kind == "macro" else None
        # what a dense task's input side (segmentation, autoencoder, normal) must be a multiple of: the
        # largest stride of the space's encoders (stem 4, then 2 per halving module), which the decoder
        # upsamples back by
        halvings = max(sum(d in "34" for d in skeleton) for skeleton in self._macros or (MICRO_SKELETON,))
        self.dense_input_multiple = 4 * 2 ** halvings

    def parse(self, text: Any) -> str:
        """The canonical arch string (``64-41414-a_bc_def`` or ``64-<digits>-basic``) from one, or from
        NASLib's op indices (``(a, b, c, d, e, f)``; macro indices padded with zeros)."""
        if isinstance(text, (tuple, list)):
            text = str(tuple(text))
        if not isinstance(text, str):
            raise LswagError(f"cannot parse a {self.name} arch from {type(text).__name__} {text!r}")
        stripped = text.strip().replace(" ", "")
        if stripped.startswith("("):
            digits = [d for d in re.findall(r"\d+", stripped)]
            if self.kind == "micro":
                if len(digits) != 6:
                    raise LswagError(f"{self.name} op indices need 6 entries, got {len(digits)}")
                stripped = f"{BASE_CHANNELS}-{MICRO_SKELETON}-{digits[0]}_{''.join(digits[1:3])}_{''.join(digits[3:])}"
            else:
                stripped = f"{BASE_CHANNELS}-{''.join(d for d in digits if d != '0')}-basic"
        parts = stripped.split("-")
        if len(parts) != 3 or parts[0] != str(BASE_CHANNELS):
            raise LswagError(f"cannot parse {self.name} arch {text!r}; expected "
                             + ("'64-41414-a_bc_def' with ops 0-3" if self.kind == "micro" else "'64-1234-basic'"))
        if self.kind == "micro":
            if parts[1] != MICRO_SKELETON or not re.fullmatch(r"[0-3]_[0-3]{2}_[0-3]{3}", parts[2]):
                raise LswagError(f"{self.name} arch {text!r} must be '64-41414-a_bc_def' with each op in "
                                 "0 none, 1 skip, 2 conv1x1, 3 conv3x3")
        elif parts[2] != "basic" or parts[1] not in self._macros:
            raise LswagError(f"{self.name} arch {text!r} is not a valid macro skeleton: 4-6 digits of 1-4 "
                             "(1 keep, 2 double channels, 3 halve resolution, 4 both) with 1-4 halvings "
                             "and 1-3 doublings, then '-basic'")
        return "-".join(parts)

    def format(self, arch: Any) -> str:
        return self.parse(arch)

    def size(self) -> int:
        return 4 ** 6 if self.kind == "micro" else len(self._macros)

    def enumerate(self) -> Iterator[str]:
        if self.kind == "macro":
            return (f"{BASE_CHANNELS}-{s}-basic" for s in self._macros)
        return (f"{BASE_CHANNELS}-{MICRO_SKELETON}-{o[0]}_{''.join(o[1:3])}_{''.join(o[3:])}"
                for o in itertools.product(MICRO_OPS, repeat=6))

    def sample(self, n: int, seed: int = 0) -> list[str]:
        check_int(n, f"{self.name} sample size", 0, self.size())
        return random.Random(seed).sample(list(self.enumerate()), n)

    def _micro_ops(self, arch: str) -> list[str]:
        return list(arch.split("-")[2].replace("_", ""))

    def mutate(self, arch: Any, rng: random.Random, prob: float | None = None) -> str:
        """Micro: one op changed; macro: one module's digit changed, or a module added or removed,
        redrawn until the skeleton is valid. With ``prob``: micro, each op changed with that
        probability; macro, each module gives one such move with that probability (at least one
        change either way)."""
        arch = self.parse(arch)
        if self.kind == "micro":
            ops = self._micro_ops(arch)
            chosen = [] if prob is None else [i for i in range(6) if rng.random() < prob]
            for i in chosen or [rng.randrange(6)]:
                ops[i] = rng.choice([o for o in MICRO_OPS if o != ops[i]])
            return self.parse(tuple(ops))
        skeleton = arch.split("-")[1]
        moves = 1 if prob is None else max(1, sum(rng.random() < prob for _ in skeleton))
        for _ in range(moves):
            skeleton = self._macro_move(skeleton, rng)
        return f"{BASE_CHANNELS}-{skeleton}-basic"

    def _macro_move(self, skeleton: str, rng: random.Random) -> str:
        while True:
            digits, move = list(skeleton), rng.choice(("change", "insert", "delete"))
            if move == "change":
                i = rng.randrange(len(digits))
                digits[i] = rng.choice([d for d in "1234" if d != digits[i]])
            elif move == "insert":
                digits.insert(rng.randrange(len(digits) + 1), rng.choice("1234"))
            else:
                digits.pop(rng.randrange(len(digits)))
            candidate = "".join(digits)
            if candidate in self._macros:
                return candidate

    def crossover(self, first: Any, second: Any, rng: random.Random) -> str:
        """Micro: each op from either parent; macro: a prefix of one skeleton and a suffix of the
        other, redrawn until valid (the first parent after 1,000 tries)."""
        a, b = self.parse(first), self.parse(second)
        if self.kind == "micro":
            return self.parse(tuple(x if rng.random() < 0.5 else y for x, y in zip(self._micro_ops(a), self._micro_ops(b))))
        sa, sb = a.split("-")[1], b.split("-")[1]
        for _ in range(1000):
            candidate = sa[:rng.randint(1, len(sa))] + sb[rng.randint(0, len(sb) - 1):]
            if candidate in self._macros:
                return f"{BASE_CHANNELS}-{candidate}-basic"
        return a

    def task(self, name: str) -> Task:
        if name not in TASKS:
            raise unknown_choice("TransNAS-Bench-101 task", name, TASKS)
        return TASKS[name]

    def task_loss(self, task: str = "class_scene", **_build_options: Any) -> str:
        return self.task(task).loss

    def prepare(self, batch: Batch, seed: int = 0, task: str = "class_scene", **_build_options: Any) -> Batch:
        """``batch``'s images as ``task``'s inputs and targets (:func:`task_batch`)."""
        side = self.dense_input_multiple
        if task in DENSE_TASKS and any(size % side for size in batch.x.shape[-2:]):
            raise LswagError(f"{self.name} {task} needs an input side that is a multiple of {side} (its deepest "
                             f"encoder's stride, which the decoder upsamples back), got "
                             f"{'x'.join(map(str, batch.x.shape[-2:]))}; e.g. --image-size {2 * side} or the "
                             "benchmark's 256")
        return task_batch(batch, self.task(task), seed)

    def build(self, arch: Any, num_classes: int | None = None, seed: int | None = None, task: str = "class_scene",
              discriminator: bool = False, bn_compat: bool = True) -> TaskNetwork:
        """The benchmark's network of ``arch`` for ``task`` (:data:`TASKS`). ``num_classes`` overrides
        the width of a classification head (class_object, class_scene, jigsaw)."""
        arch, spec = self.parse(arch), self.task(task)
        outputs = spec.outputs
        if num_classes is not None and task in ("class_object", "class_scene", "jigsaw"):
            outputs = check_int(num_classes, "num_classes", 1)
        _, skeleton, cell = arch.split("-")

        def make():
            encoder = Encoder(skeleton, None if cell == "basic" else cell, BASE_CHANNELS, bn_compat)
            return TaskNetwork(encoder, spec, outputs, discriminator)
        return seeded(seed, make)


MICRO = register(TNB101Space("micro"))
MACRO = register(TNB101Space("macro"))
