"""Activation-pattern proxies: nwot and swap (gradient-free; ReLU and GELU networks alike).

Both binarise activation-site outputs at 0 (``out > 0``), which is ``input > 0`` for ReLU, ReLU6,
LeakyReLU, GELU and SiLU, so GELU networks get the same treatment as ReLU ones.
"""
from __future__ import annotations

import numpy as np

from lswag.probe import Record
from lswag.errors import unknown_choice
from lswag.proxies import ProxyFailure, proxy


def require_sites(record: Record) -> None:
    """Fail when no activation site ran, or one produced NaN/inf (its patterns would mean nothing)."""
    if not record.sites:
        raise ProxyFailure("no activation site (ReLU, ReLU6, LeakyReLU, GELU or SiLU module) ran")
    broken = next((site.name for site in record.sites if not site.finite), None)
    if broken is not None:
        raise ProxyFailure(f"non-finite activations at {broken}")


@proxy("nwot", needs={"kernel"})
def nwot(record: Record, model) -> float:
    """ln|det K|, K = Σ_sites c cᵀ + (1−c)(1−c)ᵀ with c the samples' binary codes (NWOT, Mellor et al. 2021).

    K_ij counts the units on which samples i and j agree (units minus Hamming distance), summed
    over every activation site, as in NAS-Bench-Suite-Zero's ``nwot``.
    """
    require_sites(record)
    sign, logdet = np.linalg.slogdet(record.kernel)
    if sign == 0:
        raise ProxyFailure("the NWOT kernel is singular (two samples share every activation pattern)")
    return float(logdet)


SWAP_LEVELS = ("network", "layers")


def _check_swap(level) -> None:
    if level not in SWAP_LEVELS:
        raise unknown_choice("swap level", level, SWAP_LEVELS)


@proxy("swap", needs={"union"}, validate=_check_swap)
def swap(record: Record, model, level: str = "network") -> float:
    """Number of distinct sample-wise activation patterns over the units of all sites (SWAP, Peng et al. ICLR 2024).

    ``level="network"``: every unit of every activation site contributes its B-bit pattern and
    the distinct patterns are counted once. ``level="layers"``: Σ over sites of each site's own
    count Λ_l, the layer-wise SWAP that L-SWAG multiplies with its gradient term. The official
    SWAP code uses a batch of 16 and averages 32 re-initialisations; here it is one network on
    the probe's batch (choose ``--batch-size``).
    """
    _check_swap(level)
    require_sites(record)
    if level == "layers":
        return float(sum(site.patterns for site in record.sites))
    return float(record.network_patterns)
