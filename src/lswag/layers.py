"""``lswag layers``: where in depth L-SWAG should look, per search space (paper Sec. 3.1, Fig. 2b/9, Tab. 5).

For sampled architectures, one probe each gives (a) the mean Ψ_l of the layers in every depth
percentile, whose mean and spread over the architectures is the paper's Fig. 2b, and, with
ground truth, (b) the Spearman ρ of the gradient term restricted to each single percentile
(Σ Ψ_l there, the paper's Tab. 5) and of L-SWAG on every window [p1, p2].

The proposed window: with ground truth, the window of highest L-SWAG ρ among those spanning at
least ``MIN_WIDTH`` percentiles (single percentiles win or lose by sampling noise: see
``docs/reproduction.md``); without, the paper's rule, the contiguous run of percentiles around
the highest mean Ψ whose mean Ψ is above the median percentile's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from lswag import probe, spaces
from lswag import proxies as registry
from lswag.settings import Scoring, TruthSource
from lswag.engine import Prepared, sample_archs
from lswag.plots import save_figure, subplots
from lswag.probe import PERC_BINS
from lswag.proxies import ProxyFailure
from lswag.proxies.lswag import psi_by_percentile
from lswag.scoring import resolve_device
from lswag.spaces import check_int
from lswag.stats import constant_note, correlate

MIN_WIDTH = 3
WINDOWS = [(a, b) for a in range(1, PERC_BINS + 1) for b in range(a, PERC_BINS + 1)]


@dataclass(frozen=True)
class LayerAnalysis:
    n: int                                  # architectures analysed
    mean_psi: list[float]                   # per percentile 1..10 (nan where no architecture has one)
    std_psi: list[float]
    rho_gradient: list[float] | None        # Spearman of Σ Ψ within each single percentile
    rho_window: dict[tuple[int, int], float] | None   # Spearman of L-SWAG on every window
    proposed: tuple[int, int]
    reason: str


def analyse_layers(setup: Scoring, *, n: int = 1000, truth: TruthSource | None = None,
                   progress: bool = True) -> LayerAnalysis:
    """Analyse ``n`` architectures of ``setup.space`` (from the ground truth's when ``truth`` is given,
    sampled with ``setup.seed``), each probed as ``lswag bench`` scores it (:class:`lswag.engine.Prepared`:
    the space's task inputs, loss, layout and build options). The proxies and options of ``setup``
    play no part: the analysis reads L-SWAG's record with the space's measured pairing and product.
    A constant ground truth (no correlation defined) is noted in the reason, and the window chosen as
    without one."""
    search_space = setup.search_space
    check_int(n, "the number of architectures n", 1)
    table = None
    if truth is not None:
        table = truth.load(setup.space)
        archs = sample_archs(table.archs(), search_space, n, setup.seed)
    else:
        archs = search_space.sample(n, seed=setup.seed)
    prepared = Prepared(setup, setup.batch())
    # the windows of the space's own L-SWAG (its measured pairing and product, e.g. NB101's log product)
    options = {k: v for k, v in spaces.proxy_defaults(search_space).get("l_swag", {}).items() if k != "window"}
    needs = registry.get("l_swag").needs_for(options)
    target = resolve_device(setup.device)
    profiles, gradient_terms, window_scores = [], [], []
    with tqdm(archs, desc=f"{setup.space} layers", unit="arch", disable=not progress) as bar:
        for arch in bar:
            model = prepared.network(arch)(prepared.inputs.num_classes).to(target)
            record = probe.record(model, prepared.inputs, needs, gradient_draws=setup.gradient_draws,
                                  **prepared.probe_settings)
            try:
                by_bin = psi_by_percentile(record)
            except ProxyFailure:
                by_bin = {}
            profiles.append({b: sum(v) / len(v) for b, v in by_bin.items()})
            gradient_terms.append({b: sum(v) for b, v in by_bin.items()})  # the gradient term of window [b, b]
            window_scores.append({w: registry.compute("l_swag", record, model, window=w, **options)[0]
                                  for w in WINDOWS})

    means, stds = [], []
    for p in range(1, PERC_BINS + 1):
        values = np.array([profile[p] for profile in profiles if p in profile])
        means.append(float(values.mean()) if len(values) else float("nan"))
        stds.append(float(values.std()) if len(values) else float("nan"))
    accuracy = [table.value(arch) for arch in archs] if table is not None else []
    constant = constant_note(accuracy, "ground truth constant") if table is not None else None
    if table is None or constant:
        proposed = _spike_window(means)
        reason = (f"{constant or 'no ground truth'}: the run of percentiles around the highest mean Ψ "
                  f"({np.nanmax(means):.2f} at {int(np.nanargmax(means)) + 1}) whose mean Ψ is above the median")
        return LayerAnalysis(len(archs), means, stds, None, None, proposed, reason)

    rho_gradient = [correlate([t.get(p) for t in gradient_terms], accuracy, n_boot=0).spearman
                    for p in range(1, PERC_BINS + 1)]
    rho_window = {w: correlate([s[w] for s in window_scores], accuracy, n_boot=0).spearman for w in WINDOWS}
    wide = [w for w in WINDOWS if w[1] - w[0] + 1 >= MIN_WIDTH]
    proposed = max(wide, key=lambda w: rho_window[w])
    best = max(WINDOWS, key=lambda w: rho_window[w])
    reason = (f"highest L-SWAG Spearman among windows of at least {MIN_WIDTH} percentiles: "
              f"{rho_window[proposed]:.3f} (all layers {rho_window[(1, PERC_BINS)]:.3f}; "
              f"best of any width [{best[0]},{best[1]}] {rho_window[best]:.3f})")
    return LayerAnalysis(len(archs), means, stds, rho_gradient, rho_window, proposed, reason)


def _spike_window(means: list[float]) -> tuple[int, int]:
    peak = int(np.nanargmax(means))
    threshold = float(np.nanmedian(means))
    low = high = peak
    while low > 0 and means[low - 1] > threshold:
        low -= 1
    while high < PERC_BINS - 1 and means[high + 1] > threshold:
        high += 1
    return low + 1, high + 1


def plot_profile(analysis: LayerAnalysis, path, title: str = "gradient statistic by depth") -> None:
    """Mean ± std of Ψ per percentile (the paper's Fig. 2b), with the proposed window shaded."""
    percentiles = list(range(1, PERC_BINS + 1))
    figure, axes = subplots(figsize=(5, 3.2))
    mean, std = np.array(analysis.mean_psi), np.array(analysis.std_psi)
    axes.plot(percentiles, mean, marker="o")
    axes.fill_between(percentiles, mean - std, mean + std, alpha=0.25)
    axes.axvspan(analysis.proposed[0] - 0.5, analysis.proposed[1] + 0.5, color="orange", alpha=0.15,
                 label=f"proposed window [{analysis.proposed[0]}, {analysis.proposed[1]}]")
    axes.set_xticks(percentiles)
    axes.set_xlabel("depth percentile")
    axes.set_ylabel("mean Ψ_l = ln Σ 1/σ")
    axes.set_title(f"{title} ({analysis.n} architectures)")
    axes.legend(fontsize=8)
    save_figure(figure, path)
