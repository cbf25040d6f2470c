"""Pruning-based search (TE-NAS, Chen et al., ICLR 2021) for NB201, with any lswag fitness.

Start from the supernet in which every edge sums all ops but ``none`` (TE-NAS prunes ``none``
first). Each round scores, for every op of every edge that still has more than one, the supernet
with that op removed; on each such edge the op whose removal leaves the highest fitness (ranked
over the round's candidates, as TE-NAS ranks its NTK and linear-region changes) is pruned. After
``len(ops) - 1`` rounds one op per edge is left: that cell is the result.

Differences from TE-NAS, on purpose: the fitness is lswag's (a proxy, a rank combination or
LIBRA) instead of TE-NAS's NTK condition number and linear regions; the supernet is the space's
network at its build options (C=16, N=5 by default, not TE-NAS's C=3, N=1) scored once on the
search's fixed batch and weights (TE-NAS averages 3 re-initialisations); one op per edge per round.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from tqdm import tqdm

from lswag.errors import LswagError
from lswag.spaces.nb201 import EDGES, OPS, Cell

if TYPE_CHECKING:
    from lswag.search import Searcher, _Archive


def supernet_text(edges) -> str:
    """A supernet's key in the store: the arch-string form with each edge's ops joined by ``/``."""
    nodes = []
    for target in (1, 2, 3):
        tokens = [f"{'/'.join(ops) or 'none'}~{src}" for (src, dst), ops in zip(EDGES, edges) if dst == target]
        nodes.append("|" + "|".join(tokens) + "|")
    return "supernet:" + "+".join(nodes)


def prune(searcher: "Searcher", archive: "_Archive") -> tuple[str, list[float], int]:
    """Prune the NB201 supernet with ``searcher``'s fitness; returns (cell, best fitness per round,
    supernets scored). Every scored supernet goes to ``archive`` (and the store)."""
    space, build = searcher.space, searcher.config.scoring.build
    edges = [tuple(op for op in OPS if op != "none") for _ in range(6)]
    history, rounds = [], len(edges[0]) - 1
    bar = tqdm(total=sum(6 * (k + 1) for k in range(1, rounds + 1)), desc=f"prune search ({searcher.fitness.name})",
               unit="net", disable=not searcher.progress)
    while any(len(ops) > 1 for ops in edges):
        candidates = [(e, op) for e, ops in enumerate(edges) if len(ops) > 1 for op in ops]
        rows = []
        for e, op in candidates:
            pruned = [tuple(o for o in ops if o != op) if i == e else ops for i, ops in enumerate(edges)]
            key = supernet_text(pruned)
            results = searcher.scorer.score_network(
                key, lambda classes, pruned=pruned: space.supernet(pruned, num_classes=classes,
                                                                   seed=searcher.config.scoring.seed, **build))
            archive.add(key, results)
            rows.append({p: r.value for p, r in results.items()})
            bar.update()
        scores = searcher.fitness.pool_scores(rows)
        if not any(s > float("-inf") for s in scores):
            raise LswagError(f"fitness {searcher.fitness.name} failed on all {len(rows)} supernets of a pruning round; "
                             "choose another fitness")
        history.append(float(scores.max()))
        for e in {e for e, _ in candidates}:
            options = [(scores[i], -OPS.index(op), op) for i, (edge, op) in enumerate(candidates) if edge == e]
            _, _, removed = max(options)      # ties: prune the op listed last in NB201's order
            edges[e] = tuple(o for o in edges[e] if o != removed)
        bar.set_postfix(best=f"{history[-1]:.4g}")
    bar.close()
    return space.format(Cell(*(ops[0] for ops in edges))), history, len(archive.archs)
