"""Pruning-based search (TE-NAS, Chen et al., ICLR 2021) for the cell spaces, with any lswag fitness.

Start from the space's supernet, in which every edge sums all ops but ``none`` (TE-NAS prunes
``none`` first; :meth:`supernet_edges`). Each round scores, for every op of every edge that still
has more than one, the supernet with that op removed; on each such edge the op whose removal
leaves the highest fitness (ranked over the round's candidates, as TE-NAS ranks its NTK and
linear-region changes) is pruned, until one op per edge is left. DARTS cells then keep two
inputs per node (:meth:`edge_groups`): one more round scores the supernet without each edge of
a node that has more than two, and keeps the two whose removal costs most. The result is the
space's architecture of what is left (:meth:`from_supernet`): NB201 cells and DARTS genotypes.

Differences from TE-NAS, on purpose: the fitness is lswag's (a proxy, a rank combination or
LIBRA) instead of TE-NAS's NTK condition number and linear regions; the supernet is the space's
network at the search's build options (TE-NAS: NB201 C=3, N=1; DARTS C=1, two cells), scored once
on the search's fixed batch and weights (TE-NAS averages 3 re-initialisations), one op per edge per
round (TE-NAS prunes up to 3 per round on DARTS).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tqdm import tqdm

from lswag.errors import LswagError

if TYPE_CHECKING:
    from lswag.search import Searcher, _Archive


def prune(searcher: "Searcher", archive: "_Archive") -> tuple[str, list[float], int]:
    """Prune the space's supernet with ``searcher``'s fitness; returns (architecture, best fitness of
    each round, supernets scored). Every scored supernet goes to ``archive`` (and the store)."""
    space, build, seed = searcher.space, searcher.config.scoring.build, searcher.config.scoring.seed
    edges = [tuple(ops) for ops in space.supernet_edges()]
    groups = [g for g in space.edge_groups() if len(g) > 2]
    rounds = len(edges[0]) - 1
    total = len(edges) * sum(k + 1 for k in range(1, rounds + 1)) + sum(len(g) for g in groups)
    bar = tqdm(total=total, desc=f"prune search ({searcher.fitness.name})", unit="net", disable=not searcher.progress)
    history: list[float] = []

    def scores_of(variants: list[list[tuple[str, ...]]]):
        rows = []
        for variant in variants:
            key = space.supernet_key(variant)
            results = searcher.scorer.score_network(
                key, lambda classes, v=variant: space.supernet(v, num_classes=classes, seed=seed, **build))
            archive.add(key, results)
            rows.append({p: r.value for p, r in results.items()})
            bar.update()
        scores = searcher.fitness.pool_scores(rows)
        if not any(math.isfinite(s) for s in scores):
            raise LswagError(f"fitness {searcher.fitness.name} failed on all {len(rows)} supernets of a pruning "
                             "round; choose another fitness")
        history.append(float(scores.max()))
        bar.set_postfix(best=f"{history[-1]:.4g}")
        return scores

    while any(len(ops) > 1 for ops in edges):                         # ops, one per edge per round
        candidates = [(e, op) for e, ops in enumerate(edges) if len(ops) > 1 for op in ops]
        scores = scores_of([[tuple(o for o in ops if o != op) if i == e else ops for i, ops in enumerate(edges)]
                            for e, op in candidates])
        for e in {e for e, _ in candidates}:
            # the op whose removal leaves the highest fitness; ties: the one listed last
            _, _, removed = max((scores[i], i, op) for i, (edge, op) in enumerate(candidates) if edge == e)
            edges[e] = tuple(o for o in edges[e] if o != removed)
    if groups:                                                         # inputs, two per node
        candidates = [e for group in groups for e in group]
        scores = scores_of([[() if i == e else ops for i, ops in enumerate(edges)] for e in candidates])
        by_edge = dict(zip(candidates, scores))
        for group in groups:
            keep = sorted(group, key=lambda e: (by_edge[e], e))[:2]   # removing these costs most
            for e in group:
                if e not in keep:
                    edges[e] = ()
    bar.close()
    return space.format(space.from_supernet(edges)), history, len(archive.archs)
