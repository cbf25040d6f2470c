"""Activation-pattern proxies: nwot, swap and reg_swap (gradient-free; ReLU and GELU networks alike).

Both binarise activation-site outputs at 0 (``out > 0``), which is ``input > 0`` for ReLU, ReLU6,
LeakyReLU, GELU and SiLU, so GELU networks get the same treatment as ReLU ones.
"""
from __future__ import annotations

import math

import numpy as np

from lswag.probe import Record, SiteRecord
from lswag.errors import LswagError
from lswag.proxies import ProxyFailure, one_of, proxy


def require_sites(record: Record, sites: list[SiteRecord] | None = None) -> None:
    """Fail when no activation site ran, or one produced NaN/inf (its patterns would mean nothing).

    ``sites`` defaults to the whole-batch pattern pass's (``record.sites``)."""
    sites = record.sites if sites is None else sites
    if not sites:
        raise ProxyFailure("no activation site (ReLU, ReLU6, LeakyReLU, GELU or SiLU, as a module or a function call) ran")
    broken = next((site.name for site in sites if not site.finite), None)
    if broken is not None:
        raise ProxyFailure(f"non-finite activations at {broken}")


@proxy("nwot", needs={"kernel"})
def nwot(record: Record, model) -> float:
    """ln|det K|, K = Σ_sites c cᵀ + (1−c)(1−c)ᵀ with c the samples' binary codes (NWOT, Mellor et al. 2021).

    K_ij counts the units on which samples i and j agree (units minus Hamming distance), summed
    over every activation site, as in NAS-Bench-Suite-Zero's ``nwot``, with one difference: the
    reference code hooks every module whose type name contains "ReLU", so on xautodl's NB201
    network a ReLU inside a ``ReLUConvBN`` container is counted twice (the container's input is
    the ReLU's); lswag counts each site once (docs/reproduction.md, NB201).
    """
    require_sites(record)
    sign, logdet = np.linalg.slogdet(record.kernel)
    if sign == 0:
        raise ProxyFailure("the NWOT kernel is singular (two samples share every activation pattern)")
    return float(logdet)


def network_ceiling(record: Record) -> tuple[int, str]:
    """The most distinct patterns U units can show on B samples: min(U, 2^B), and what that bound is."""
    samples, units = len(record.batch), sum(site.units for site in record.sites)
    if 2 ** samples <= units:
        return 2 ** samples, (f"2^{samples}, every pattern a batch of {samples} can show: it cannot rank networks at "
                              "this batch; use a larger batch")
    return units, f"its {units} units: every unit has its own pattern, so it only counts the network's units"


def swap_ceiling(record: Record, model, level: str) -> tuple[int, str]:
    """Network level: min(U, 2^B) over all units; layers: that bound summed over the sites."""
    if level == "network":
        return network_ceiling(record)
    samples = len(record.batch)
    return sum(min(site.units, 2 ** samples) for site in record.sites), (
        f"every site shows min(its units, 2^{samples}) patterns: it cannot rank networks at this batch; "
        "use a larger batch")


@proxy("swap", needs={"union"}, validate=one_of("swap", level=("network", "layers")), ceiling=swap_ceiling)
def swap(record: Record, model, level: str = "network") -> float:
    """Number of distinct sample-wise activation patterns over the units of all sites (SWAP, Peng et al. ICLR 2024).

    ``level="network"``: every unit of every activation site contributes its B-bit pattern and
    the distinct patterns are counted once. ``level="layers"``: Σ over sites of each site's own
    count Λ_l, the layer-wise SWAP that L-SWAG multiplies with its gradient term. The official
    SWAP code uses a batch of 16 and averages 32 re-initialisations; here it is one network on
    the probe's batch (choose ``--batch-size``).
    """
    require_sites(record)
    if level == "layers":
        return float(sum(site.patterns for site in record.sites))
    return float(record.network_patterns)


#: reg_swap defaults, in thousands of parameters (see :func:`reg_swap`)
REG_SWAP_MU = 1500.0
REG_SWAP_SIGMA = 1.0e6


def _check_reg_swap(mu, sigma) -> None:
    for key, value in (("mu", mu), ("sigma", sigma)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise LswagError(f"reg_swap {key} must be a finite number, got {value!r}")
    if sigma <= 0:
        raise LswagError(f"reg_swap sigma must be > 0 (it divides (P - mu)^2), got {sigma!r}")


def parameters_in_thousands(model) -> float:
    """#parameters / 1e3, every parameter except those whose name contains ``auxiliary`` (SWAP's ``count_parameters``)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name) / 1e3


def size_factor(model, mu: float, sigma: float) -> float:
    """reg_swap's exp(−(P − μ)² / σ), P = :func:`parameters_in_thousands`."""
    return math.exp(-((parameters_in_thousands(model) - mu) ** 2) / sigma)


def reg_swap_ceiling(record: Record, model, mu: float, sigma: float) -> tuple[float, str]:
    """swap's network ceiling times the size factor: there it ranks networks by their size alone."""
    bound, why = network_ceiling(record)
    return float(bound) * size_factor(model, mu, sigma), f"the size factor times swap's ceiling, {why}"


@proxy("reg_swap", needs={"union"}, validate=_check_reg_swap, ceiling=reg_swap_ceiling)
def reg_swap(record: Record, model, mu: float = REG_SWAP_MU, sigma: float = REG_SWAP_SIGMA) -> float:
    """swap · exp(−(P − μ)² / σ), P = #parameters in thousands (regularised SWAP, Peng et al. ICLR 2024).

    ``swap`` is the network-level SWAP of this module (distinct sample-wise patterns over the units
    of every activation site, on the probe's batch). P counts every parameter (BN affine included)
    except names containing ``auxiliary``, divided by 1e3, as SWAP's ``cal_regular_factor``. μ is in
    thousands of parameters and σ in (thousands of parameters)²: σ divides the squared distance and
    is not squared itself, as in SWAP's code (not a Gaussian's 2σ²).

    μ and σ pick the model size the score prefers, so they belong to a search space. The SWAP paper
    sets them per space; its values could not be checked from the sources available here, so the
    defaults are lswag's own, for NB201/CIFAR-10 (C=16, N=5; 73 K to 1,532 K parameters, median
    344 K): μ = 1500 (near the largest cell, as accuracy grows with size there) and σ = 10⁶, which
    keeps the factor between about e^-2 and 1 over that range. Set both for any other space (AutoFormer-
    Small's ~23,000 K parameters give a factor of e^-462 with the defaults). Fails instead of
    returning 0 when the factor underflows to 0.
    """
    _check_reg_swap(mu, sigma)
    require_sites(record)
    factor = size_factor(model, mu, sigma)
    if factor == 0.0:
        raise ProxyFailure(f"the regularisation factor exp(-(P - mu)^2 / sigma) underflows to 0 for "
                           f"P = {parameters_in_thousands(model):g} K, "
                           f"mu = {mu:g}, sigma = {sigma:g}; set mu and sigma for this search space")
    return float(record.network_patterns) * factor
