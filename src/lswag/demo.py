"""``lswag demo``: score sampled NB201 cells with L-SWAG on built-in data and rank them."""
from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from lswag import spaces
from lswag.data import load_batch
from lswag.proxies import Failure
from lswag.scoring import score_architecture


@dataclass(frozen=True)
class RankedCell:
    arch: str
    value: float | Failure
    seconds: float


def run_demo(n: int = 20, *, data: str = "digits", batch_size: int = 64, seed: int = 0,
             proxy: str = "l_swag", progress: bool = True) -> list[RankedCell]:
    """Score ``n`` NB201 cells sampled with ``seed`` on one fixed batch, best first (failures last)."""
    space = spaces.get("nb201")
    batch = load_batch(data, batch_size=batch_size, seed=seed, image_size=space.input_shape[1:])
    cells = []
    for arch in tqdm(space.sample(n, seed=seed), desc=f"scoring NB201 cells with {proxy}",
                     unit="cell", disable=not progress):
        _, _, (result,) = score_architecture("nb201", arch, proxies=[proxy], seed=seed, batch=batch)
        cells.append(RankedCell(space.format(arch), result.value, result.seconds))
    return sorted(cells, key=lambda c: (isinstance(c.value, Failure),
                                        0.0 if isinstance(c.value, Failure) else -c.value))
