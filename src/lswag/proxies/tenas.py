"""TE-NAS components (Chen et al., ICLR 2021): NTK condition number and number of linear regions.

TE-NAS ranks a *pool* of networks on both and adds the ranks: :func:`lswag.ensembles.te_nas`.
Conventions checked against the TE-NAS code as AZ-NAS re-uses it on NB201
(cvlab-yonsei/AZ-NAS, ``NB201/ZeroShotProxy/compute_te_nas_score.py``, from VITA-Group/TENAS).
"""
from __future__ import annotations

import numpy as np

from lswag.errors import LswagError
from lswag.probe import Record
from lswag.proxies import ProxyFailure, proxy
from lswag.proxies.activation import require_sites


#: TE-NAS's NTK batch: ``prune_tenas.py --batch_size`` ("batch size for ntk"), default 16
NTK_SAMPLES = 16


def check_samples(samples) -> None:
    if not isinstance(samples, int) or samples < 2:
        raise LswagError(f"te_ntk_cond samples must be an integer >= 2, got {samples!r}")


@proxy("te_ntk_cond", needs={"ntk"}, validate=check_samples, probe_settings=lambda samples: {"ntk_samples": samples})
def te_ntk_cond(record: Record, model, samples: int = NTK_SAMPLES) -> float:
    """−λ_max(Θ) / λ_min(Θ): the negative condition number of the empirical NTK (TE-NAS), higher is better.

    Θ_ij = ⟨∂(Σ_c f_c(x_i))/∂θ, ∂(Σ_c f_c(x_j))/∂θ⟩ over the first ``samples`` examples of the
    probe's batch (all of it when smaller; TE-NAS's default NTK batch is 16), θ every parameter
    whose name contains ``weight`` (Conv, Linear, norm scales), one backward per sample through
    the forward of those examples together in train mode, as TE-NAS's ``get_ntk_n``
    (``train_mode=True``, one batch of real images). The cost grows with ``samples``: one backward
    per sample, and a ``samples`` × #weights gradient matrix in memory. Eigenvalues by ``eigvalsh``
    in float64. TE-NAS maps a NaN condition
    number to 1e5; here a singular or indefinite Θ (λ_min ≤ 0, e.g. an output that does not depend on
    the weights, or a batch larger than the number of weights) and NaN are failures with the reason.
    """
    ntk = record.ntk
    if ntk is None:
        raise ProxyFailure("no NTK was recorded")
    if not np.all(np.isfinite(ntk)):
        raise ProxyFailure("non-finite NTK")
    if ntk.shape[0] < 2:
        raise ProxyFailure("an NTK condition number needs a batch of at least 2")
    eigenvalues = np.linalg.eigvalsh(ntk)
    if not eigenvalues[0] > 0:
        raise ProxyFailure(f"the NTK is singular (smallest eigenvalue {eigenvalues[0]:.3g} <= 0)")
    return float(-eigenvalues[-1] / eigenvalues[0])


@proxy("te_linear_regions", needs={"kernel"})
def te_linear_regions(record: Record, model) -> float:
    """Number of distinct activation patterns among the samples of the batch (TE-NAS's linear regions).

    A sample's pattern is its binary code 1[a > 0] over every unit of every activation site; two
    samples share a linear region when their codes are equal. Counted from the NWOT kernel, which
    holds for each pair the number of units on which they agree: i and j are equal exactly when
    K_ij equals the total number of units. TE-NAS's ``Linear_Region_Collector`` counts the same
    quantity (Σ_i 1 / |{j : code_j = code_i}|) over ReLU outputs with 4-D inputs; AZ-NAS's re-use
    runs it on the network itself with one batch of Gaussian images of the data's shape, as here,
    where every activation site (ReLU, GELU, ...) of any rank counts and the batch is the probe's
    (pass a ``gaussian`` batch for AZ-NAS's input). With such inputs nearly every sample has its
    own pattern and the count saturates at B (it does on DARTS and NB301 at 32²). TE-NAS's own
    pruning counts on a thin copy of the network (C = 1, N = 1, no stem) fed 3 × 1000 Gaussian
    1-channel 3 × 3 inputs, which does not saturate; lswag builds no such copy.
    """
    require_sites(record)
    kernel = record.kernel
    units = sum(site.units for site in record.sites)
    same = kernel == float(units)
    distinct = sum(1 for i in range(kernel.shape[0]) if not same[i, :i].any())
    return float(distinct)
