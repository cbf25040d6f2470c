"""AutoFormer's ViT search spaces (Chen et al., ICCV 2021) as standalone subnets.

A subnet of AutoFormer's supernet, run as the supernet runs it with the README flags ``--gp
--change_qkv --relative_position`` (``../shared/docs/SPACES.md`` §5), built from ordinary modules
so that every proxy sees plain ``nn.Conv2d``/``nn.Linear``/``nn.LayerNorm``/``nn.GELU``:

* patch embedding: a 16×16 convolution of stride 16 to E channels; a class token and absolute
  position embeddings (1 + #patches tokens);
* ``depth`` pre-norm encoder layers, layer i with ``num_heads[i]`` heads of 64 dimensions
  (``change_qkv``: q, k, v are 64·h wide whatever E is, ``qkv`` one Linear E → 3·64·h with bias,
  ``proj`` 64·h → E, scale 64^-½), 2-D relative position embeddings added to the keys and the
  values (``relative_position``: per layer two tables, vertical and horizontal, of 2·14 + 2 rows
  for each of k and v; the class token has its own row 0), and an MLP E → int(E·mlp_ratio[i]) →
  E with GELU;
* a final LayerNorm, the mean over the patch tokens (``gp``) and a Linear head.

Weights: truncated normal (std 0.02) for every Linear, the class token, the position and the
relative position embeddings; LayerNorm 1 and 0; Linear biases 0; the patch convolution keeps
PyTorch's default, as the supernet's ``_init_weights`` leaves it. A subnet's parameter count
(:meth:`AutoFormerSpace.params`, analytic) equals the supernet's ``get_sampled_params_numel`` for
its config: 22.891M for the searched AutoFormer-S subnet.

An architecture is a :class:`ViTConfig` (E shared by all layers, a per-layer MLP ratio and head
count); its text form is ``E/r_1,...,r_d/h_1,...,h_d``, e.g. ``384/4.0,4.0/6,6`` for depth 2, and
AutoFormer's own config dict (``{"embed_dim": 384, "layer_num": 13, "mlp_ratio": [...],
"num_heads": [...]}``, as JSON) parses too, as does ViT-Bench-101's (``{"hidden_dim": 192,
"depth": 12, ...}``).

``vitbench101-autoformer`` is the same Tiny grid built as ViT-Bench-101 trained it (Auto-Prox,
Wei et al. AAAI 2024; lliai/Auto-Prox-AAAI24 ``pycls/models/auto/autoformer_subnet.py`` and
``common.py``): a plain ViT whose subnets differ from ``autoformer-t``'s in three ways, and
agree in every other (patch convolution, class token, absolute positions, pre-norm blocks, GELU
MLP of int(E·r) units, mean over the patch tokens, Linear head, initialisation):

* attention as wide as the embedding: q, k, v are E wide whatever the head count (head dim E/h,
  scale (E/h)^-½; ``qkv`` E → 3E, ``proj`` E → E), not 64·h;
* no relative position embeddings;
* LayerNorm eps 1e-6 (pycls's ``TRANSFORMER.LN_EPS``), not 1e-5.

Its classes default to CIFAR-100's 100. Dropout and drop path (0.1 in training) are absent: the
probe disables both anyway.
"""
from __future__ import annotations

import itertools
import math
import numbers
import random
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn as nn

from lswag.errors import LswagError
from lswag.spaces import SearchSpace, check_int, decoded, register, seeded

HEAD_DIM = 64
MAX_RELATIVE_POSITION = 14
PATCH = 16


@dataclass(frozen=True)
class Network:
    """How a config becomes a network: AutoFormer's supernet (default) or another trainer's ViT."""

    #: width of one attention head; None: E / heads, so q, k and v are E wide
    head_dim: int | None = HEAD_DIM
    #: 2-D relative position embeddings on the keys and the values (AutoFormer's ``--relative_position``)
    relative_position: bool = True
    layer_norm_eps: float = 1e-5

    def attention_width(self, embed_dim: int, num_heads: int) -> int:
        """The width of q, k and v (each) in a layer of ``num_heads`` heads."""
        return embed_dim if self.head_dim is None else num_heads * self.head_dim


#: ViT-Bench-101's AutoFormer-Ti network (Auto-Prox's ``AutoFormerSub``; module docstring)
VITBENCH101 = Network(head_dim=None, relative_position=False, layer_norm_eps=1e-6)


@dataclass(frozen=True)
class Grid:
    """The choices of one AutoFormer space (its ``experiments/supernet/*.yaml``)."""

    embed_dim: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    num_heads: tuple[int, ...]
    depth: tuple[int, ...]


GRIDS = {
    "t": Grid(embed_dim=(192, 216, 240), mlp_ratio=(3.5, 4.0), num_heads=(3, 4), depth=(12, 13, 14)),
    "s": Grid(embed_dim=(320, 384, 448), mlp_ratio=(3.0, 3.5, 4.0), num_heads=(5, 6, 7), depth=(12, 13, 14)),
    "b": Grid(embed_dim=(528, 576, 624), mlp_ratio=(3.0, 3.5, 4.0), num_heads=(9, 10), depth=(14, 15, 16)),
}


@dataclass(frozen=True)
class ViTConfig:
    """One subnet: the embedding width E of every layer, and each layer's MLP ratio and head count."""

    embed_dim: int
    mlp_ratio: tuple[float, ...]
    num_heads: tuple[int, ...]

    @property
    def depth(self) -> int:
        return len(self.mlp_ratio)

    def to_str(self) -> str:
        return f"{self.embed_dim}/{','.join(str(float(r)) for r in self.mlp_ratio)}/{','.join(map(str, self.num_heads))}"

    def as_dict(self) -> dict[str, Any]:
        """AutoFormer's config dict (``set_sample_config``)."""
        return {"layer_num": self.depth, "embed_dim": [self.embed_dim] * self.depth,
                "mlp_ratio": list(self.mlp_ratio), "num_heads": list(self.num_heads)}


class RelativePosition2D(nn.Module):
    """Embeddings of the 2-D offset between two tokens, for one of k or v: ``table_v[dy] + table_h[dx]``.

    Offsets between patch tokens (row-major on a square grid) are clipped to ±14 and shifted to
    rows 1..29; any pair involving the class token takes row 0 of both tables.
    """

    def __init__(self, head_dim: int, max_relative_position: int = MAX_RELATIVE_POSITION):
        super().__init__()
        self.max_relative_position = max_relative_position
        rows = 2 * max_relative_position + 2
        self.table_v = nn.Parameter(torch.empty(rows, head_dim))
        self.table_h = nn.Parameter(torch.empty(rows, head_dim))

    def forward(self, tokens: int) -> torch.Tensor:
        """(tokens, tokens, head_dim) embeddings of every (query, key) pair."""
        patches = tokens - 1
        side = int(math.isqrt(patches))
        position = torch.arange(patches, device=self.table_v.device)
        limit = self.max_relative_position

        def index(coordinate):
            offset = (coordinate[None, :] - coordinate[:, None]).clamp(-limit, limit) + limit + 1
            return nn.functional.pad(offset, (1, 0, 1, 0))          # row 0 for the class token
        return self.table_v[index(position // side)] + self.table_h[index(position % side)]


class Attention(nn.Module):
    """Multi-head self-attention; AutoFormer's has 64-dimensional heads and relative positions on k and v."""

    def __init__(self, embed_dim: int, num_heads: int, network: Network = Network()):
        super().__init__()
        width = network.attention_width(embed_dim, num_heads)
        if width % num_heads:
            raise LswagError(f"attention width {width} does not split into {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, width // num_heads
        self.qkv = nn.Linear(embed_dim, 3 * width)
        self.proj = nn.Linear(width, embed_dim)
        self.relative_k = RelativePosition2D(self.head_dim) if network.relative_position else None
        self.relative_v = RelativePosition2D(self.head_dim) if network.relative_position else None
        self.scale = self.head_dim ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-2, -1)
        if self.relative_k is not None:
            logits = logits + torch.einsum("bhqd,qkd->bhqk", q, self.relative_k(tokens))
        attention = (logits * self.scale).softmax(dim=-1)
        out = attention @ v
        if self.relative_v is not None:
            out = out + torch.einsum("bhqk,qkd->bhqd", attention, self.relative_v(tokens))
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim))


class EncoderLayer(nn.Module):
    def __init__(self, embed_dim: int, mlp_ratio: float, num_heads: int, network: Network = Network()):
        super().__init__()
        hidden = int(embed_dim * mlp_ratio)
        self.attn_norm = nn.LayerNorm(embed_dim, eps=network.layer_norm_eps)
        self.attn = Attention(embed_dim, num_heads, network)
        self.ffn_norm = nn.LayerNorm(embed_dim, eps=network.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.ffn_norm(x))


class AutoFormerViT(nn.Module):
    """A standalone AutoFormer subnet (see the module docstring)."""

    def __init__(self, config: ViTConfig, num_classes: int = 1000, image_size: int = 224,
                 network: Network = Network()):
        super().__init__()
        patches = (image_size // PATCH) ** 2
        self.patch_embed = nn.Conv2d(3, config.embed_dim, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.empty(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(torch.empty(1, patches + 1, config.embed_dim))
        self.blocks = nn.Sequential(*[EncoderLayer(config.embed_dim, r, h, network)
                                      for r, h in zip(config.mlp_ratio, config.num_heads)])
        self.norm = nn.LayerNorm(config.embed_dim, eps=network.layer_norm_eps)
        self.head = nn.Linear(config.embed_dim, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, RelativePosition2D):
                nn.init.trunc_normal_(module.table_v, std=0.02)
                nn.init.trunc_normal_(module.table_h, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 1:].mean(dim=1))


def _choice(value: Any, choices: tuple, what: str, space: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value not in choices:
        raise LswagError(f"{space} {what} {value!r} is not in the grid; choose from {', '.join(map(str, choices))}")
    return type(choices[0])(value)


class AutoFormerSpace(SearchSpace):
    """One AutoFormer grid (T, S or B); ``lswag.spaces.get("autoformer-s")``."""

    input_shape = (3, 224, 224)
    num_classes = 1000
    loss = "cross_entropy"
    optimizer = "adamw"
    input_sized = True

    def __init__(self, key: str, grid: Grid | None = None, network: Network = Network()):
        self.grid, self.network = grid or GRIDS[key], network
        self.name = f"autoformer-{key}"
        self.description = f"AutoFormer-{key.upper()} ViT subnets as AutoFormer's supernet runs them: {self._choices()}"

    def _choices(self) -> str:
        g = self.grid
        listed = lambda values: "{" + ", ".join(map(str, values)) + "}"  # noqa: E731
        return (f"E in {listed(g.embed_dim)}, depth in {listed(g.depth)}, per layer MLP ratio in "
                f"{listed(g.mlp_ratio)} and heads in {listed(g.num_heads)}, 224x224, patch 16")

    # -- architectures ------------------------------------------------------------------------
    def parse(self, text: Any) -> ViTConfig:
        """A :class:`ViTConfig` from one, from ``E/r_1,...,r_d/h_1,...,h_d``, or from AutoFormer's
        config dict (or its JSON text); every value must lie in the grid."""
        if isinstance(text, ViTConfig):
            return self.validate(text.embed_dim, text.mlp_ratio, text.num_heads)
        text = decoded(text, f"{self.name} config")
        if isinstance(text, dict):
            return self._from_dict(text)
        if not isinstance(text, str):
            raise LswagError(f"cannot parse an {self.name} architecture from {type(text).__name__} {text!r}")
        parts = text.strip().split("/")
        try:
            embed, ratios, heads = int(parts[0]), [float(r) for r in parts[1].split(",")], \
                [int(h) for h in parts[2].split(",")]
        except (ValueError, IndexError):
            raise LswagError(f"cannot parse {self.name} architecture {text!r}; expected "
                             f"E/r_1,...,r_d/h_1,...,h_d like '384/4.0,3.5/6,7' or AutoFormer's config dict") from None
        if len(parts) != 3:
            raise LswagError(f"{self.name} architecture {text!r} has {len(parts)} '/'-parts, expected 3")
        return self.validate(embed, ratios, heads)

    def _from_dict(self, config: dict) -> ViTConfig:
        if "embed_dim" not in config and "hidden_dim" in config:    # ViT-Bench-101's name for it
            config = {**config, "embed_dim": config["hidden_dim"]}
        missing = {"embed_dim", "mlp_ratio", "num_heads"} - set(config)
        if missing:
            raise LswagError(f"{self.name} config lacks {', '.join(sorted(missing))} (embed_dim may be hidden_dim)")
        embed = config["embed_dim"]
        if isinstance(embed, (list, tuple)):
            if len(set(embed)) != 1:
                raise LswagError(f"{self.name} shares one embed_dim across layers, got {embed}")
            embed = embed[0]
        depth = config.get("layer_num", config.get("depth", len(config["mlp_ratio"])))
        ratios, heads = list(config["mlp_ratio"])[:depth], list(config["num_heads"])[:depth]
        if len(ratios) != depth or len(heads) != depth:
            raise LswagError(f"{self.name} config has layer_num {depth} but {len(config['mlp_ratio'])} MLP ratios "
                             f"and {len(config['num_heads'])} head counts")
        return self.validate(embed, ratios, heads)

    def validate(self, embed_dim, mlp_ratio, num_heads) -> ViTConfig:
        """The config, checked against the grid (one-line errors that say what is wrong)."""
        if len(mlp_ratio) != len(num_heads):
            raise LswagError(f"{self.name}: {len(mlp_ratio)} MLP ratios but {len(num_heads)} head counts")
        _choice(len(mlp_ratio), self.grid.depth, "depth", self.name)
        return ViTConfig(_choice(embed_dim, self.grid.embed_dim, "embed_dim", self.name),
                         tuple(_choice(r, self.grid.mlp_ratio, "mlp_ratio", self.name) for r in mlp_ratio),
                         tuple(_choice(h, self.grid.num_heads, "num_heads", self.name) for h in num_heads))

    def format(self, arch: Any) -> str:
        return self.parse(arch).to_str()

    def size(self) -> int:
        g = self.grid
        return sum(len(g.embed_dim) * (len(g.mlp_ratio) * len(g.num_heads)) ** d for d in g.depth)

    def enumerate(self) -> Iterator[ViTConfig]:
        """Every config, depth by depth (the S space holds ~7.7e13: take, never list)."""
        g = self.grid
        for depth in g.depth:
            for embed in g.embed_dim:
                for layers in itertools.product(itertools.product(g.mlp_ratio, g.num_heads), repeat=depth):
                    yield ViTConfig(embed, tuple(r for r, _ in layers), tuple(h for _, h in layers))

    def random_config(self, rng: random.Random) -> ViTConfig:
        """AutoFormer's sampler: a uniform depth, then one E and each layer's ratio and heads uniformly."""
        g = self.grid
        depth = rng.choice(g.depth)
        return ViTConfig(rng.choice(g.embed_dim), tuple(rng.choice(g.mlp_ratio) for _ in range(depth)),
                         tuple(rng.choice(g.num_heads) for _ in range(depth)))

    def sample(self, n: int, seed: int = 0, min_params: float | None = None,
               max_params: float | None = None) -> list[ViTConfig]:
        """``n`` distinct configs from AutoFormer's sampler (uniform depth first, so not uniform over
        the set, which is almost all maximal depth), kept when their parameter count lies in
        [``min_params``, ``max_params``] (e.g. 21e6 and 23e6, the budget of the paper's searches)."""
        check_int(n, f"{self.name} sample size")
        rng, found, tries = random.Random(seed), {}, 0
        while len(found) < n:
            tries += 1
            if tries > 1000 * (n + 10):
                raise LswagError(f"found only {len(found)} of {n} {self.name} configs with "
                                 f"{min_params} <= params <= {max_params} in {tries - 1} draws")
            config = self.random_config(rng)
            params = self.params(config)
            if (min_params is None or params >= min_params) and (max_params is None or params <= max_params):
                found.setdefault(config, None)
        return list(found)

    def mutate(self, arch: Any, rng: random.Random, prob: float | None = None, structure_prob: float = 0.4) -> ViTConfig:
        """AutoFormer's mutation: with ``structure_prob`` a new depth (layers cut, or new random
        layers appended), each layer's ratio and heads redrawn with ``prob`` (AutoFormer's m_prob,
        0.2 by default), then with ``structure_prob`` a new E. Redrawn values may equal the old
        ones, as in AutoFormer, so the child can equal its parent."""
        config, g = self.parse(arch), self.grid
        layer_prob = 0.2 if prob is None else prob
        ratios, heads = list(config.mlp_ratio), list(config.num_heads)
        if rng.random() < structure_prob:
            depth = rng.choice(g.depth)
            ratios = (ratios + [rng.choice(g.mlp_ratio) for _ in range(depth)])[:depth]
            heads = (heads + [rng.choice(g.num_heads) for _ in range(depth)])[:depth]
        ratios = [rng.choice(g.mlp_ratio) if rng.random() < layer_prob else r for r in ratios]
        heads = [rng.choice(g.num_heads) if rng.random() < layer_prob else h for h in heads]
        embed = rng.choice(g.embed_dim) if rng.random() < structure_prob else config.embed_dim
        return ViTConfig(embed, tuple(ratios), tuple(heads))

    def crossover(self, first: Any, second: Any, rng: random.Random) -> ViTConfig:
        """AutoFormer's crossover: each E, ratio and head count from either parent with probability ½;
        the parents must have the same depth, as AutoFormer pairs them."""
        a, b = self.parse(first), self.parse(second)
        if a.depth != b.depth:
            raise LswagError(f"{self.name} crossover needs parents of equal depth, got {a.depth} and {b.depth}")
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        return ViTConfig(pick(a.embed_dim, b.embed_dim), tuple(map(pick, a.mlp_ratio, b.mlp_ratio)),
                         tuple(map(pick, a.num_heads, b.num_heads)))

    # -- networks ----------------------------------------------------------------------------
    def params(self, arch: Any, num_classes: int | None = None, image_size: int = 224) -> int:
        """The subnet's parameter count in closed form (for AutoFormer's network, its supernet's
        ``get_sampled_params_numel``)."""
        config = self.parse(arch)
        e = config.embed_dim
        classes = self.num_classes if num_classes is None else num_classes
        patches = (image_size // PATCH) ** 2
        total = (3 * PATCH * PATCH * e + e) + e * (2 + patches)           # patch conv, class token, positions
        for ratio, heads in zip(config.mlp_ratio, config.num_heads):
            hidden, width = int(e * ratio), self.network.attention_width(e, heads)
            total += 4 * e                                                 # two LayerNorms
            total += 3 * width * e + 3 * width + width * e + e             # qkv, proj
            if self.network.relative_position:                             # tables of k and v, 2 each
                total += 2 * 2 * (2 * MAX_RELATIVE_POSITION + 2) * (width // heads)
            total += e * hidden + hidden + hidden * e + e                  # MLP
        return total + 2 * e + e * classes + classes                       # final norm, head

    def build(self, arch: Any, num_classes: int | None = None, seed: int | None = None,
              image_size: int = 224) -> AutoFormerViT:
        """The subnet of ``arch`` for ``image_size`` inputs (a multiple of 16). With ``seed``,
        weights depend only on the seed and the global RNG is left as is."""
        config = self.parse(arch)
        classes = self.num_classes if num_classes is None else num_classes
        if check_int(image_size, f"{self.name} image_size", PATCH) % PATCH:
            raise LswagError(f"{self.name} image_size must be a multiple of {PATCH}, got {image_size!r}")
        return seeded(seed, lambda: AutoFormerViT(config, check_int(classes, "num_classes", 1), image_size,
                                                  self.network))


class ViTBench101Space(AutoFormerSpace):
    """AutoFormer-T configs built as ViT-Bench-101 trained them (:data:`VITBENCH101`; module
    docstring): the network of ``../shared/benchmarks/vitbench101_autoformer``'s accuracies."""

    num_classes = 100
    truth_arch_column = "arch_json"

    def __init__(self):
        super().__init__("t", network=VITBENCH101)
        self.name = "vitbench101-autoformer"
        self.description = ("AutoFormer-T ViT subnets as ViT-Bench-101 (Auto-Prox) trained them: attention E wide "
                            f"(head dim E/h), no relative positions; {self._choices()}")


SPACES = {**{key: register(AutoFormerSpace(key)) for key in GRIDS}, "vitbench101": register(ViTBench101Space())}
