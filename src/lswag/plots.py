"""The paper's figures from benchmark results, with matplotlib, written as files.

Importing this module changes nothing in matplotlib: the non-interactive Agg backend is chosen
when the first figure is made, and only if the user has chosen none (``MPLBACKEND``,
``matplotlib.use``), so a notebook's or a GUI's backend is left alone.

* :func:`heatmap`: Spearman ρ of proxies (rows) on benchmarks (columns), like the paper's Fig. 3.
* :func:`rank_scatter`: rank a proxy predicts against the true rank of each architecture, like
  its Fig. 8; rank 1 is the best (most accurate, highest score), failures take the last ranks.
* :func:`pareto`: a multi-objective search's candidates and Pareto front, fitness against the first cost.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lswag.settings import check_output
from lswag.stats import failures_last


def pyplot():
    """``matplotlib.pyplot``, with the Agg backend unless the user has chosen one."""
    import matplotlib

    if "MPLBACKEND" not in os.environ and matplotlib.rcParams._get_backend_or_none() is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subplots(**kwargs):
    """A new figure and its axes (:func:`matplotlib.pyplot.subplots`)."""
    return pyplot().subplots(**kwargs)


def heatmap(rho: dict[str, dict[str, float]], path, title: str = "Spearman ρ") -> Path:
    """``rho[proxy][benchmark]`` as an annotated heatmap PNG; rows sorted by mean ρ."""
    benchmarks = sorted({b for row in rho.values() for b in row})
    def mean(row):
        values = [v for v in row.values() if not math.isnan(v)]
        return sum(values) / len(values) if values else -math.inf
    proxies = sorted(rho, key=lambda p: mean(rho[p]), reverse=True)
    grid = [[rho[p].get(b, math.nan) for b in benchmarks] for p in proxies]
    figure, axes = subplots(figsize=(1.2 + 1.1 * len(benchmarks), 0.9 + 0.4 * len(proxies)))
    image = axes.imshow(grid, cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto")
    axes.set_xticks(range(len(benchmarks)), benchmarks, rotation=30, ha="right")
    axes.set_yticks(range(len(proxies)), proxies)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if not math.isnan(value):
                axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_title(title)
    return save_figure(figure, path)


def rank_scatter(proxy: str, scores, truth, path) -> Path:
    """Predicted rank (from ``scores``, failures last) against true rank (from ``truth``) as a PNG;
    rank 1 is the best of each."""
    from scipy.stats import rankdata

    predicted = rankdata(-failures_last(scores))
    actual = rankdata(-np.asarray(truth, dtype=float))
    figure, axes = subplots(figsize=(4, 4))
    axes.scatter(actual, predicted, s=4, alpha=0.5)
    axes.plot([1, len(actual)], [1, len(actual)], color="grey", linewidth=0.8)
    axes.set_xlabel("true rank (1 = most accurate)")
    axes.set_ylabel(f"rank by {proxy} (1 = highest score)")
    axes.set_title(proxy)
    return save_figure(figure, path)


def pareto(result, path) -> Path:
    """The Pareto front of a search that minimised costs (a :class:`lswag.search.SearchResult` or its
    saved JSON) as a PNG: every candidate in grey, fitness (y) against the first cost (x, on a log
    scale when it spans more than 10x), the front highlighted and joined as a step line, each front
    point labelled with its index (``lswag train --pick N``)."""
    from lswag.settings import COST_UNITS

    data = result if isinstance(result, dict) else asdict(result)
    cost, front, objectives = data["minimise"][0], data["front"], data["objectives"]
    every = [(x, y) for x, y in zip(objectives[cost], objectives["fitness"]) if x is not None and y is not None]
    figure, axes = subplots(figsize=(6, 4.5))
    if every:
        axes.scatter(*zip(*every), s=10, color="lightgrey", label=f"candidates ({len(every)})")
    xs, ys = [p[cost] for p in front], [p["fitness"] for p in front]
    axes.step(xs, ys, where="post", color="tab:red", linewidth=1)
    axes.scatter(xs, ys, s=24, color="tab:red", zorder=3, label=f"Pareto front ({len(front)})")
    for index, (x, y) in enumerate(zip(xs, ys)):
        axes.annotate(str(index), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    spread = [x for x, _ in every] or xs
    if min(spread) > 0 and max(spread) > 10 * min(spread):
        axes.set_xscale("log")
    axes.set_xlabel(f"{cost} ({COST_UNITS[cost]}, minimised)")
    axes.set_ylabel(f"fitness {data['fitness']} (maximised)")
    others = f"; also minimised: {', '.join(data['minimise'][1:])}" if len(data["minimise"]) > 1 else ""
    axes.set_title(f"{data['strategy']} search of {data['space']}{others}", fontsize=10)
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def save_figure(figure, path) -> Path:
    """Write ``figure`` at ``path`` (a PNG, ``.png`` added when it has no suffix; folders created) and
    release it; returns the path written. The image grows to hold every label, however long."""
    check_output(path, folder=False)
    path = Path(path)
    path = path if path.suffix else path.with_name(path.name + ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")   # cropped or grown to its labels (tight_layout cannot grow)
    pyplot().close(figure)
    return path
