"""What a search maximises: :class:`Fitness`, made from its text by :func:`make_fitness`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from lswag import proxies as registry
from lswag.ensembles import ENSEMBLES, rank_average
from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.stats import failures_last


@dataclass(frozen=True)
class Fitness:
    """What a search maximises: ``proxies`` scored per candidate, ``combine`` over a pool of them.

    ``per_candidate``: a candidate's fitness is a value of the candidate alone (a proxy's), the same
    in any pool; otherwise it is relative to the pool (a rank average, AZ-NAS, TE-NAS, LIBRA) and
    changes as the archive grows, so a sampler that learns from each value once (Optuna's,
    :mod:`lswag.search.samplers`) cannot use it.
    """

    name: str
    proxies: tuple[str, ...]
    combine: Callable[[list[Mapping[str, Any]]], np.ndarray] = field(repr=False)
    describe: str = ""
    per_candidate: bool = False

    def pool_scores(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Fitness of each row ``{proxy: value or Failure}`` of a pool; failures are ``-inf``."""
        if not rows:
            return np.zeros(0)
        failed = np.array([any(failed_value(row[p]) for p in self.proxies) for row in rows])
        scores = np.asarray(self.combine(rows), dtype=float)
        return np.where(failed | ~np.isfinite(scores), -math.inf, scores)


def failed_value(value: Any) -> bool:
    return isinstance(value, Failure) or value is None or not math.isfinite(float(value))


def plain_value(value: Any) -> float:
    """A proxy's value as a float; NaN for a failure."""
    return math.nan if failed_value(value) else float(value)


def _pool(function, components) -> Callable:
    def combine(rows):
        table = {i: {c: row[c] for c in components} for i, row in enumerate(rows)}
        combined = function(table, components)
        return [combined[i] for i in range(len(rows))]
    return combine


def _pool_ensembles() -> list[str]:
    """The ensembles of :data:`lswag.ensembles.ENSEMBLES` with fixed components (AZ-NAS, TE-NAS)."""
    return [name for name, (_, components) in ENSEMBLES.items() if components is not None]


def make_fitness(spec: str, libra=None) -> Fitness:
    """A :class:`Fitness` from its text: a proxy name, ``rank:a,b,...`` (rank averaging), a pool
    ensemble of :data:`lswag.ensembles.ENSEMBLES` (``az_nas``, ``te_nas``), or ``libra`` with a
    fitted ``libra`` (:func:`lswag.libra.fit`)."""
    spec = spec.strip()
    if spec == "libra":
        if libra is None:
            raise LswagError("fitness libra needs a fitted LIBRA: give --truth and --metric, it is fitted on "
                             "--calibration architectures of the truth file")
        return Fitness("libra", libra.proxies, lambda rows: libra.score({p: [plain_value(r[p]) for r in rows]
                                                                          for p in libra.proxies}),
                       f"LIBRA of {', '.join(libra.proxies)} ({libra.combination})")
    if spec in _pool_ensembles():
        function, components = ENSEMBLES[spec]
        return Fitness(spec, components, _pool(function, components),
                       f"{spec} of {', '.join(components)} over the archive")
    if spec.startswith("rank:"):
        components = tuple(dict.fromkeys(p.strip() for p in spec[5:].split(",") if p.strip()))
        if len(components) < 2:
            raise LswagError(f"a rank fitness combines at least two proxies, e.g. rank:l_swag,nwot; got {spec!r}")
        for name in components:
            registry.get(name)
        return Fitness(spec, components, _pool(rank_average, components),
                       f"rank average of {', '.join(components)} over the archive")
    if spec not in registry.names():
        raise LswagError(f"unknown fitness {spec!r}; valid: a proxy ({', '.join(registry.names())}), "
                         f"rank:PROXY,PROXY,..., {', '.join(_pool_ensembles())} or libra")
    return Fitness(spec, (spec,), lambda rows: failures_last([plain_value(r[spec]) for r in rows]), spec,
                   per_candidate=True)
