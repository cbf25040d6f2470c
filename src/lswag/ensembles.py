"""Rank ensembles that score a POOL of architectures: AZ-NAS, TE-NAS and plain rank averaging.

A per-network proxy scores one network; these combine several proxies' values *across a pool*,
so an architecture's combined score depends on which other architectures are in the pool. Every
function here takes the pool's table ``{arch: {component: value or Failure}}`` (the components
are registered per-network proxies, computed with ``lswag.score``; :func:`component_table` builds
the table from a pool of models) and returns ``{arch: combined score}``, higher is better, for
every arch of the table.

Ranks are ascending, 1 (worst) .. N (best), with ties sharing their average rank
(``scipy.stats.rankdata(method="average")``, as both reference codes). A component that failed on
an architecture -- a :class:`lswag.proxies.Failure`, ``None``, NaN or ±inf -- ranks below every
real value, the failures tying among themselves (:func:`lswag.stats.failures_last`); AZ-NAS maps
its NaN components to −inf, which ranks the same way.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as _st

from lswag.errors import LswagError, unknown_choice
from lswag.proxies import Failure
from lswag.stats import failures_last

#: AZ-NAS's four components, as registered per-network proxies (complexity = FLOPs, ranked ascending)
AZ_NAS = ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity")
#: TE-NAS's two components (both "higher is better": te_ntk_cond is already −κ)
TE_NAS = ("te_ntk_cond", "te_linear_regions")

Table = Mapping[Hashable, Mapping[str, Any]]


def ranks(values: Sequence[Any]) -> np.ndarray:
    """Ascending average ranks 1..N of one component over the pool; failures rank last, tied."""
    return _st.rankdata(failures_last(list(values)), method="average")


def _columns(table: Table, components: Iterable[str]) -> tuple[list, dict[str, np.ndarray]]:
    components = list(components)
    if not components:
        raise LswagError("an ensemble needs at least one component")
    if len(set(components)) != len(components):
        raise LswagError(f"components listed twice: {components}")
    archs = list(table)
    if not archs:
        raise LswagError("an ensemble needs a pool of at least one architecture")
    for arch in archs:
        missing = [c for c in components if c not in table[arch]]
        if missing:
            raise LswagError(f"architecture {arch!r} has no value for {', '.join(missing)} "
                             "(record a Failure rather than leaving it out)")
    return archs, {c: ranks([table[arch][c] for arch in archs]) for c in components}


def az_nas(table: Table, components: Iterable[str] = AZ_NAS) -> dict[Hashable, float]:
    """AZ-NAS over a pool: Σ_components ln(rank / N), rank ascending so the best gets N (ln 1 = 0).

    As the authors' aggregation (cvlab-yonsei/AZ-NAS, ``np.log(stats.rankdata(score) / N)`` summed
    over expressivity, progressivity, trainability and FLOPs). The best possible score is 0; one
    component ranked last costs ln(1/N).
    """
    archs, columns = _columns(table, components)
    size = len(archs)
    total = sum(np.log(column / size) for column in columns.values())
    return {arch: float(value) for arch, value in zip(archs, total)}


def te_nas(table: Table, components: Iterable[str] = TE_NAS) -> dict[Hashable, float]:
    """TE-NAS over a pool: rank(−κ_NTK) + rank(#linear regions), ranks ascending (higher is better).

    TE-NAS ranks κ ascending and the regions descending and keeps the smallest sum; with both
    components stored "higher is better" this is the same order, reversed in sign.
    """
    archs, columns = _columns(table, components)
    total = sum(columns.values())
    return {arch: float(value) for arch, value in zip(archs, total)}


def rank_average(table: Table, components: Iterable[str]) -> dict[Hashable, float]:
    """Plain rank averaging over a pool: mean over the components of each one's ascending rank."""
    archs, columns = _columns(table, components)
    mean = sum(columns.values()) / len(columns)
    return {arch: float(value) for arch, value in zip(archs, mean)}


_ENSEMBLES: dict[str, tuple[Callable[..., dict], tuple[str, ...] | None]] = {}
#: name -> (combining function, its default components), read-only: :func:`register` adds one
ENSEMBLES = MappingProxyType(_ENSEMBLES)


def register(name: str, function: Callable[..., dict], components: Iterable[str] | None = None) -> None:
    """Make ``function(table, components)`` available as ensemble ``name``, by default over
    ``components`` (None: the caller must list them). A name already taken is refused, since a
    second ensemble under it would silently replace the first."""
    if name in _ENSEMBLES:
        raise LswagError(f"ensemble {name!r} is already registered")
    _ENSEMBLES[name] = (function, None if components is None else tuple(components))


register("az_nas", az_nas, AZ_NAS)
register("te_nas", te_nas, TE_NAS)
register("rank_average", rank_average)


def pool_ensembles(values: Mapping[str, Mapping[Hashable, Any]]) -> dict[str, dict[Hashable, float]]:
    """``{ensemble: {arch: combined score}}`` of every ensemble with default components (AZ-NAS,
    TE-NAS) whose components are all among ``values`` (``{component: {arch: value or Failure}}``,
    every component over the same archs)."""
    out = {}
    for name, (_, components) in ENSEMBLES.items():
        if components is None or not set(components) <= set(values):
            continue
        archs = list(values[components[0]])
        out[name] = combine(name, {arch: {c: values[c][arch] for c in components} for arch in archs})
    return out


def combine(name: str, table: Table, components: Iterable[str] | None = None) -> dict[Hashable, float]:
    """The ensemble ``name`` (``az_nas``, ``te_nas`` or ``rank_average``) of a pool's table."""
    if name not in ENSEMBLES:
        raise unknown_choice("ensemble", name, ENSEMBLES)
    function, default = ENSEMBLES[name]
    chosen = default if components is None else tuple(components)
    if chosen is None:
        raise LswagError(f"ensemble {name!r} needs its components listed")
    return function(table, chosen)


def component_table(models: Mapping[Hashable, Any], batch, components: Iterable[str],
                    **kwargs) -> dict[Hashable, dict[str, float | Failure]]:
    """``{arch: {component: value or Failure}}`` for a pool ``{arch: nn.Module}``, each scored with
    ``lswag.score(model, batch, components, **kwargs)`` (one probe per network; the same batch for all)."""
    from lswag.scoring import score

    components = list(components)
    return {arch: score(model, batch, components, **kwargs) for arch, model in models.items()}

