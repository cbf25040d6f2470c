"""Pareto maths of a multi-objective search: non-dominated sorting, the first front, hypervolume.

Every function takes ``points``, an (n, m) array of n candidates' m objectives all to be
maximised; :func:`maximised` makes it from a fitness (maximised) and costs (minimised, so
negated). Point a dominates b when it is at least as good in every objective and better in one.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def maximised(fitness: Sequence[float], costs: Sequence[Sequence[float]]) -> np.ndarray:
    """The (n, 1 + k) objectives to maximise of n candidates: their ``fitness``, then each of the k
    ``costs`` (each a sequence of n values, minimised) negated."""
    return np.column_stack([np.asarray(fitness, dtype=float), *(-np.asarray(c, dtype=float) for c in costs)])


def dominance(points: np.ndarray) -> np.ndarray:
    """The (n, n) matrix whose [i, j] says that point i dominates point j."""
    points = np.asarray(points, dtype=float)
    at_least = (points[:, None, :] >= points[None, :, :]).all(axis=2)
    better = (points[:, None, :] > points[None, :, :]).any(axis=2)
    return at_least & better


def pareto_ranks(points: np.ndarray) -> np.ndarray:
    """Each point's front by non-dominated sorting (Deb et al.'s NSGA-II): 0 for the points no
    other dominates, 1 for those only points of front 0 dominate, and so on."""
    dominates = dominance(points)
    count = dominates.sum(axis=0)              # how many points dominate each one
    ranks = np.full(len(count), -1)
    front, rank = np.flatnonzero(count == 0), 0
    while front.size:
        ranks[front] = rank
        count = count - dominates[front].sum(axis=0)
        front, rank = np.flatnonzero((count == 0) & (ranks < 0)), rank + 1
    return ranks


def first_front(points: np.ndarray) -> list[int]:
    """The indices of the points no other dominates, in their order."""
    if len(points) == 0:
        return []
    return np.flatnonzero(~dominance(points).any(axis=0)).tolist()


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` and bounded below by ``reference`` (every objective maximised;
    points not above the reference in every objective add nothing). Exact: a sweep in 2-D, slices
    along the last objective above (each slice the lower-dimensional volume of the points that reach it)."""
    reference = np.asarray(reference, dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    points = points[(points > reference).all(axis=1)]
    if len(points) == 0:
        return 0.0
    if len(reference) == 1:
        return float(points.max() - reference[0])
    if len(reference) == 2:
        volume, reached = 0.0, reference[1]
        for x, y in sorted(map(tuple, points), key=lambda p: (-p[0], -p[1])):
            if y > reached:                    # the strip this point adds above those of larger x
                volume += (x - reference[0]) * (y - reached)
                reached = y
        return volume
    levels = np.unique(points[:, -1])          # ascending
    volume, below = 0.0, reference[-1]
    for level in levels:
        reaching = points[points[:, -1] >= level, :-1]
        volume += hypervolume(reaching, reference[:-1]) * (level - below)
        below = level
    return volume
