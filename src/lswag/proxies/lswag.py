"""L-SWAG (Casarin et al., CVPR 2025): layer-wise trainability times layer-wise expressivity.

    L-SWAG = Σ_{l : p(l) ∈ [p1, p2]} Ψ_l · Λ_l
    Ψ_l = ln Σ_{i: σ_{l,i} > 0} 1 / σ_{l,i}      (σ over M gradient draws, ddof 0; ZiCo without the mean)
    Λ_l = |{ (1[a_n(x_1) > 0], ..., 1[a_n(x_B) > 0]) : n ∈ units of l's activation site }|

p(l) = ceil(10 l / L) is the depth percentile of the l-th of L layers (execution order). The
paper leaves three choices open (``docs/reproduction.md`` records what each gives):

* ``pairing`` of a layer with an activation site: ``"feeding"`` (default) the site whose output
  the layer consumes (ReLU→Conv→BN as in NB201/DARTS), else the first site executed after it
  (Conv→BN→ReLU, fc1→GELU), else the sign of the layer's own output; ``"own"`` always the sign
  of the layer's own output; ``"bins"`` Σ over percentile bins b of (Σ Ψ of the layers in b)
  times (Σ Λ of the activation sites in b), sites placed by their own depth percentile.
* ``product``: ``"sum"`` Σ Ψ_l·Λ_l (the paper's layer-wise dot product, default) or ``"log"``
  Σ ln(T_l·Λ_l) = Σ (Ψ_l + ln Λ_l), the form of one public re-implementation.
* ``window`` [p1, p2], inclusive; (1, 10) takes every layer.

One more choice is lswag's, about cost: ``patterns="draws"`` (default) counts Λ on the forward
passes of the M gradient draws (the batch's chunks, each normalised by its own BatchNorm
statistics, their patterns concatenated over the whole batch), so L-SWAG costs the draws' forward
and backward passes and nothing more; ``patterns="batch"`` counts Λ on a separate forward of the
whole batch, as SWAP does. ``docs/reproduction.md`` compares the two on the same NB201 cells.

Layers whose gradients never vary between draws have no Ψ and are skipped, as ZiCo skips them.
"""
from __future__ import annotations

import math
from collections import defaultdict

from lswag.errors import LswagError, unknown_choice
from lswag.probe import PERC_BINS, LayerRecord, Record, SiteRecord
from lswag.proxies import ProxyFailure, proxy
from lswag.proxies.activation import require_sites
from lswag.proxies.gradient import require_draws, gradient_statistic

PAIRINGS = ("feeding", "own", "bins")
PRODUCTS = ("sum", "log")
PATTERN_PASSES = ("draws", "batch")


def parse_window(window) -> tuple[int, int]:
    """(p1, p2) from a pair, a text ``"p1-p2"``, or one percentile p (the window [p, p])."""
    malformed = LswagError(f"window {window!r} is not P1-P2 or P with integers 1..{PERC_BINS}")
    if isinstance(window, int):
        window = (window, window)
    elif isinstance(window, str):
        try:
            window = tuple(int(part) for part in window.split("-"))
        except ValueError:
            raise malformed from None
    if not isinstance(window, (tuple, list)) or len(window) != 2 or not all(isinstance(p, int) for p in window):
        raise malformed
    low, high = window
    if not 1 <= low <= high <= PERC_BINS:
        raise LswagError(f"window [{low}, {high}] must satisfy 1 <= p1 <= p2 <= {PERC_BINS}")
    return low, high


def sites_of(record: Record, patterns: str) -> list[SiteRecord]:
    """The activation sites with Λ counted on the ``patterns`` pass ("draws" or "batch")."""
    return (record.draw_sites or []) if patterns == "draws" else record.sites


def layer_expressivity(record: Record, layer: LayerRecord, pairing: str, patterns: str = "draws") -> int:
    """Λ for one layer under the ``feeding`` or ``own`` pairing."""
    if pairing == "feeding":
        site = layer.input_site if layer.input_site is not None else layer.next_site
        if site is not None:
            return sites_of(record, patterns)[site].patterns
    own = layer.draw_output_patterns if patterns == "draws" else layer.output_patterns
    if own is None:
        raise ProxyFailure(f"layer {layer.name} has no activation pattern (non-finite or non-tensor output)")
    return own


def check_options(window, pairing, product, patterns) -> None:
    parse_window(window)
    if pairing not in PAIRINGS:
        raise unknown_choice("l_swag pairing", pairing, PAIRINGS)
    if product not in PRODUCTS:
        raise unknown_choice("l_swag product", product, PRODUCTS)
    if patterns not in PATTERN_PASSES:
        raise unknown_choice("l_swag patterns", patterns, PATTERN_PASSES)


def probe_needs(window, pairing, product, patterns) -> set[str]:
    """The draws, and Λ from the draws' forwards or a whole-batch pattern pass (every layer's own
    output too for the ``own`` pairing)."""
    if patterns == "draws":
        return {"draws", "draw_patterns"} | ({"draw_layer_outputs"} if pairing == "own" else set())
    return {"draws", "patterns"} | ({"layer_outputs"} if pairing == "own" else set())


def probe_settings(window, pairing, product, patterns) -> dict:
    """Gradient draws of the window's layers only: the backward stops at the window's first layer."""
    return {"draw_window": parse_window(window)}


@proxy("l_swag", needs=probe_needs, validate=check_options, probe_settings=probe_settings)
def l_swag(record: Record, model, window=(1, PERC_BINS), pairing: str = "feeding", product: str = "sum",
           patterns: str = "draws") -> float:
    """Σ_{layers in the depth window} Ψ_l·Λ_l: gradient trainability times activation-pattern expressivity (L-SWAG, CVPR 2025)."""
    check_options(window, pairing, product, patterns)
    low, high = parse_window(window)
    sites = sites_of(record, patterns)
    if patterns == "draws" and record.draw_sites is None:
        raise ProxyFailure("the record has no activation patterns of the draws (probe need 'draw_patterns')")
    if sites:   # a network without activation sites scores each layer's own output
        require_sites(record, sites)
    layers = [layer for layer in require_draws(record, (low, high)) if low <= layer.percentile <= high]
    psi = {layer.name: gradient_statistic(layer) for layer in layers}
    layers = [layer for layer in layers if psi[layer.name] is not None]
    if not layers:
        raise ProxyFailure(f"no layer in the window [{low}, {high}] has a gradient that varies between draws")

    if pairing == "bins":
        pairs = _bin_sums(sites, layers, psi)
        if not pairs:
            raise ProxyFailure(f"no percentile bin in [{low}, {high}] has both a layer and an activation site")
    else:
        pairs = [(psi[layer.name], layer_expressivity(record, layer, pairing, patterns)) for layer in layers]
    if product == "sum":
        return sum(p * lam for p, lam in pairs)
    return sum(p + math.log(lam) for p, lam in pairs)


def _bin_sums(sites: list[SiteRecord], layers: list[LayerRecord], psi: dict) -> list[tuple[float, float]]:
    psi_of_bin, lambda_of_bin = defaultdict(float), defaultdict(float)
    for layer in layers:
        psi_of_bin[layer.percentile] += psi[layer.name]
    for site in sites:
        lambda_of_bin[site.percentile] += site.patterns
    return [(psi_of_bin[b], lambda_of_bin[b]) for b in sorted(psi_of_bin) if b in lambda_of_bin]


def psi_by_percentile(record: Record) -> dict[int, list[float]]:
    """Ψ_l of every layer that has one, grouped by depth percentile (1..10; empty bins absent)."""
    by_bin = defaultdict(list)
    for layer in require_draws(record):
        psi = gradient_statistic(layer)
        if psi is not None:
            by_bin[layer.percentile].append(psi)
    return dict(sorted(by_bin.items()))


def trainability_profile(record: Record) -> dict[int, float]:
    """Mean Ψ_l of the layers in each depth percentile (1..10): one network's curve of the paper's Fig. 2b.

    Averaged over many random architectures it shows where the gradient statistic spikes, which
    is how the paper places the L-SWAG window; percentiles without a layer that has Ψ are absent.
    """
    return {b: sum(values) / len(values) for b, values in psi_by_percentile(record).items()}
