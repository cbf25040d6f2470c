"""TE-NAS components (Chen et al., ICLR 2021): NTK condition number and number of linear regions.

TE-NAS ranks a *pool* of networks on both and adds the ranks: :func:`lswag.ensembles.te_nas`.
Conventions checked against the TE-NAS code as AZ-NAS re-uses it on NB201
(cvlab-yonsei/AZ-NAS, ``NB201/ZeroShotProxy/compute_te_nas_score.py``, from VITA-Group/TENAS).
"""
from __future__ import annotations

import abc

import numpy as np
import torch
import torch.nn as nn

from lswag import probe
from lswag.data import Batch
from lswag.errors import LswagError, unknown_choice
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


class HasThinNetwork(abc.ABC):
    """A network with TE-NAS's thin copy, which ``te_linear_regions(network="thin")`` counts on.

    Declared by inheriting it (NB201's and DARTS' cell networks), so that the proxies need not know
    the spaces: ``class TinyNetwork(nn.Module, HasThinNetwork)``.
    """

    @abc.abstractmethod
    def thin_network(self) -> nn.Module:
        """A fresh thin copy (PyTorch's default initialisation) that takes 1-channel images."""


NETWORKS = ("self", "thin")
#: TE-NAS's region count (prune_tenas.py): 3 batches of 1000 inputs, each a 3 x 3 crop of one channel of an image
THIN_SAMPLES, THIN_CROP = 3000, 3


def check_regions(network, seed) -> None:
    if network not in NETWORKS:
        raise unknown_choice("te_linear_regions network", network, NETWORKS)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise LswagError(f"te_linear_regions seed must be an integer, got {seed!r}")


def regions_ceiling(record: Record, model, network: str, seed: int) -> tuple[float, str]:
    """The most regions the count can find: one per input (sample, or crop of the thin copy)."""
    if network == "thin":
        return THIN_SAMPLES, (f"its {THIN_SAMPLES} crops: every crop has its own activation pattern, so it cannot "
                              "rank networks")
    return len(record.batch), ("the batch size: every sample has its own activation pattern, so it cannot rank "
                               "networks at this batch; use a larger batch, or network=thin on NB201 and DARTS cells")


@proxy("te_linear_regions", needs=lambda network, seed: {"patterns"} if network == "self" else set(),
       validate=check_regions, own_pass=("network=thin: TE-NAS's thin copy, one forward of 3000 3x3 crops", "forward"),
       ceiling=regions_ceiling)
def te_linear_regions(record: Record, model, network: str = "self", seed: int = 0) -> float:
    """Number of distinct activation patterns among the input samples (TE-NAS's linear regions).

    A sample's pattern is its binary code 1[a > 0] over every unit of every activation site; two
    samples share a linear region when their codes are equal. TE-NAS's ``Linear_Region_Collector``
    counts the same quantity (Σ_i 1 / |{j : code_j = code_i}|) over ReLU outputs with 4-D inputs.

    ``network="self"``: on the network itself and the probe's batch, as AZ-NAS re-uses TE-NAS
    (``compute_te_nas_score.py``, one batch of Gaussian images of the data's shape: pass a
    ``gaussian`` batch for that input), every activation site (ReLU, GELU, ...) of any rank
    counting. With such inputs nearly every sample has its own pattern and the count saturates at
    the batch size (it does on DARTS and NB301 at 32², and on ViTs), its declared ceiling: ``lswag
    score`` warns, and ``lswag bench`` reports the proxy as constant over such a pool.

    ``network="thin"``: as TE-NAS's own pruning counts, on the network's thin copy (its
    ``thin_network()``, :class:`HasThinNetwork`: NB201 and DARTS cells, width 1, no stem) fed 3000
    inputs, each a random 3 × 3 crop of one random channel of a random image of the probe's batch
    (TE-NAS crops its training images the same way), drawn from a CPU generator seeded with
    ``seed`` that also seeds the copy's weights (PyTorch's default initialisation, as TE-NAS's thin
    copy keeps). One difference: the copy's BatchNorm normalises the 3000 crops together where
    TE-NAS forwards them as three batches of 1000. Fails on networks without a thin copy.
    """
    if network == "self":
        require_sites(record)
        return float(probe.count_unique(probe.sample_codes(record.sites, len(record.batch))))
    thin = _thin_copy(model, seed)
    crops = _crops(record.batch.x, seed)
    labels = torch.zeros(len(crops), dtype=torch.long, device=crops.device)    # a forward-only pass reads none
    thin_record = probe.record(thin, Batch(x=crops, y=labels, num_classes=record.batch.num_classes,
                                           source="TE-NAS 3x3 crops"), {"patterns"})
    require_sites(thin_record)
    return float(probe.count_unique(probe.sample_codes(thin_record.sites, len(crops))))


def _thin_copy(model, seed: int):
    if not isinstance(model, HasThinNetwork):
        raise ProxyFailure(f"TE-NAS defines a thin copy for NB201 and DARTS cell networks only; a "
                           f"{type(model).__name__} has none (use network=self)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.thin_network().to(device)


def _crops(x: torch.Tensor, seed: int) -> torch.Tensor:
    """THIN_SAMPLES random 1-channel THIN_CROP x THIN_CROP crops of the images ``x`` (B, C, H, W)."""
    if x.dim() != 4 or not x.is_floating_point() or min(x.shape[2:]) < THIN_CROP:
        raise ProxyFailure(f"the thin copy's crops need float images (B, C, H, W) of at least "
                           f"{THIN_CROP} x {THIN_CROP} pixels, got {tuple(x.shape)} {x.dtype}")
    generator = torch.Generator().manual_seed(seed)
    batch, channels, height, width = x.shape
    image, channel, top, left = (torch.randint(n, (THIN_SAMPLES,), generator=generator)
                                 for n in (batch, channels, height - THIN_CROP + 1, width - THIN_CROP + 1))
    windows = x.cpu().unfold(2, THIN_CROP, 1).unfold(3, THIN_CROP, 1)   # (B, C, H', W', 3, 3), a view
    return windows[image, channel, top, left].unsqueeze(1).to(x.device)
