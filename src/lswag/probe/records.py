"""What a probe records: one record per layer, per activation site and per block map, gathered
in the :class:`Record` that proxies read, and the depth percentile that places layers and sites."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from lswag.data import Batch
from lswag.probe.patterns import unique_codes
from lswag.probe.tensors import logits_of
from lswag.probe.vocabulary import PERC_BINS


@dataclass
class LayerRecord:
    """One weight-carrying module, in forward execution order."""

    name: str
    kind: str
    weight: torch.Tensor                      # the weight at probe time (of the probe's private copy of the model)
    percentile: int                           # ceil(10 l / L), 1..10
    input_site: int | None = None             # index of the activation site whose output it consumed
    next_site: int | None = None              # first activation site executed after it
    gradient: torch.Tensor | None = None      # dL/dw on the whole batch
    gradient_draws: torch.Tensor | None = None  # (M, *weight.shape), one per batch chunk
    # Λ of the sign of its own output, from the patterns pass: every layer's with ``layer_outputs``, else
    # only for a layer no activation site feeds or follows (l_swag's fallback); None when not recorded
    output_patterns: int | None = None
    draw_output_patterns: int | None = None   # the same, over the draws passes (``draw_patterns``)
    fisher: torch.Tensor | None = None        # (C_out,) float64: Σ_calls ½ mean_n (Σ_pos A⊙G)² per channel
    # 0-d float64: Σ_calls Σ_i ½ mean_n (Σ_{axes ≥ 2} A⊙G)²_{n,i}, i over A's axis 1 (NASLib's reduction)
    fisher_suite_zero: torch.Tensor | None = None
    hessian_gradient: torch.Tensor | None = None  # H g, the Hessian-vector product, weight-shaped
    # ln|det K| of the NWOT kernel of its own output's sign (``layer_kernels``); -inf when K is singular,
    # nan when the output held NaN/inf
    output_logdet: float | None = None
    # proxies memoise statistics derived from the fields above (a record is read-only once built)
    derived: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class SiteRecord:
    """One activation site (the output of an activation module), in execution order."""

    name: str
    kind: str
    units: int          # elements per sample
    percentile: int
    finite: bool = True  # False when the output held NaN or inf (its patterns mean nothing)
    #: (units, W) int64: each unit's binarised sample-wise pattern packed as bits (see :func:`words_of`)
    codes: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _distinct: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def distinct_codes(self) -> torch.Tensor:
        """The distinct rows of ``codes``, sorted; computed on first use (a proxy whose depth window
        leaves a site out never pays for its sort)."""
        if self._distinct is None:
            self._distinct = unique_codes(self.codes)
        return self._distinct

    @property
    def patterns(self) -> int:
        """Λ: the number of distinct binarised sample-wise patterns over the units."""
        return int(self.distinct_codes.shape[0])


@dataclass
class BlockRecord:
    """One feature map of the ``features`` pass (AZ-NAS), in execution order.

    ``entropy`` is AZ-NAS's expressivity of the map: the entropy −Σ_k p_k ln(p_k + 1e-8) of the
    eigenvalue shares p = λ / Σλ of the channel covariance, samples being every (sample, position)
    pair (positions: H×W of a 4-D map, tokens of a 3-D one, none of a 2-D one), float64, ddof 0.
    ``gain`` is the spectral norm σ_max of M = G_inᵀ G_out / N, G_out a ±1 gradient drawn for this
    map and G_in its vector-Jacobian product back to the previous map (rows aligned as described in
    :func:`block_gain`); None for the first map, and when ``problem`` says why it could not be taken.
    ``identity`` is True when G_in equals G_out exactly (the block passes the previous map through
    unchanged), which AZ-NAS scores −inf.
    """

    name: str
    shape: tuple[int, ...]
    entropy: float
    gain: float | None = None
    identity: bool = False
    problem: str | None = None


@dataclass
class Record:
    """What one probe recorded; proxies are functions of it (and of the model)."""

    batch: Batch
    layers: list[LayerRecord]
    sites: list[SiteRecord]
    kernel: np.ndarray | None = None          # NWOT kernel, B x B, float64
    #: ``draw_patterns``: the sites with Λ counted over the draws passes (each chunk normalised by its own
    #: BatchNorm statistics) instead of one whole-batch forward; None when not recorded
    draw_sites: list[SiteRecord] | None = None
    network_patterns: int | None = None       # distinct patterns over all sites' units together
    loss: float | None = None                 # loss of the whole-batch gradient pass
    input_jacobian: torch.Tensor | None = None  # (B, D): ∂(Σ logits)/∂x, each sample's row flattened
    output_width: int | None = None           # size of the logits' last axis (classes), jacobian pass
    blocks: list[BlockRecord] | None = None   # ``features`` pass: the block feature maps, in execution order
    block_container: str | None = None        # qualified names of the containers whose children are the blocks
    ntk: np.ndarray | None = None             # ``ntk`` pass: B x B float64 empirical NTK
    #: the depth percentiles [p1, p2] whose layers have gradient draws; None: every layer
    draw_window: tuple[int, int] | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each pass
    #: the ``output`` callable given to :func:`record`, if any (see :meth:`logits`)
    pick_logits: Callable | None = field(default=None, repr=False, compare=False)

    def logits(self, output) -> torch.Tensor:
        """The logits in a model output, picked as the probe picked them; proxies that run their
        own copy of the model (synflow, flops, zen) go through this too."""
        return (self.pick_logits or logits_of)(output)

    @property
    def num_draws(self) -> int:
        draws = next((layer.gradient_draws for layer in self.layers if layer.gradient_draws is not None), None)
        return 0 if draws is None else draws.shape[0]


def percentile(position: int, count: int) -> int:
    """Depth percentile ``ceil(PERC_BINS * position / count)`` of the 1-based ``position``."""
    return math.ceil(PERC_BINS * position / count)
