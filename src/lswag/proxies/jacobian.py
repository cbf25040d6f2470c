"""Input-Jacobian proxies: jacov and epe_nas (NAS-Bench-Suite-Zero conventions).

Both read the probe's input Jacobian J (B × D): row b is ∂(Σ logits)/∂x_b, the sample's input
flattened whatever its shape (images, sequences, tabular), from one forward + backward of the
whole batch. Correlations are taken between samples (rows), in float64.
"""
from __future__ import annotations

import math

import numpy as np

from lswag.probe import Record, all_finite
from lswag.proxies import ProxyFailure, proxy
from lswag.proxies.inputs import require_float_input

#: the constant added to eigenvalues (jacov) and to |correlations| (epe_nas) in the reference code
K = 1e-5
#: above this many classes (logits), EPE-NAS switches to its normalised pairwise form
MANY_CLASSES = 100


def input_jacobian(record: Record, proxy: str) -> np.ndarray:
    """J as a float64 array; ``proxy`` fails on token inputs (no Jacobian), when J is non-finite, or when a
    sample's row is constant."""
    require_float_input(record, proxy, "it differentiates the output with respect to the input")
    jacobian = record.input_jacobian
    if jacobian.numel() == 0:
        raise ProxyFailure("the input Jacobian is empty")
    if not all_finite(jacobian):
        raise ProxyFailure("non-finite input Jacobian")
    rows = jacobian.double().cpu().numpy()
    if rows.shape[0] < 2:
        raise ProxyFailure("a correlation between samples needs a batch of at least 2")
    if not np.any(rows):
        raise ProxyFailure("the output does not depend on the input (the input Jacobian is 0)")
    constant = np.flatnonzero(rows.max(1) == rows.min(1))
    if constant.size:
        raise ProxyFailure(f"the input Jacobian of sample {int(constant[0])} is constant: "
                           "its correlation with the others is undefined")
    return rows


@proxy("jacov", needs={"input_jacobian"})
def jacov(record: Record, model) -> float:
    """−Σ_i [ln(λ_i + k) + 1/(λ_i + k)], λ the eigenvalues of corrcoef(J), k = 1e-5 (Mellor et al. 2021 v1).

    J is the input Jacobian of the summed logits, one row per sample (B × D); corrcoef is between
    samples (B × B). This is NAS-Bench-Suite-Zero's ``jacov`` (NASLib ``compute_jacob_cov``, from
    the first NASWOT version; higher is better). NASLib takes ``np.linalg.eig`` of the symmetric
    matrix; ``eigvalsh`` gives the same eigenvalues, always real.
    """
    corr = np.corrcoef(input_jacobian(record, "jacov"))
    if not np.all(np.isfinite(corr)):
        raise ProxyFailure("non-finite correlation between input Jacobians")
    shifted = np.linalg.eigvalsh(corr) + K
    if np.any(shifted <= 0):
        raise ProxyFailure(f"corrcoef(J) has an eigenvalue below -{K} (numerically indefinite)")
    return float(-np.sum(np.log(shifted) + 1.0 / shifted))


def epe_ceiling(record: Record, model) -> tuple[float, str] | None:
    """The one value EPE-NAS can take when no class of the batch has two samples (C ≤ 100), else no bound."""
    if record.output_width > MANY_CLASSES:   # single-sample classes are left out there: it fails instead
        return None
    _, counts = np.unique(record.batch.y.cpu().numpy(), return_counts=True)
    if counts.max() > 1:
        return None
    return len(counts) * math.log(1.0 + K), (
        f"no class of the batch has two samples, and each single-sample class scores ln(1 + {K:g}) whatever the "
        "network: it cannot rank networks; use a batch in which classes repeat (larger, or of fewer classes)")


@proxy("epe_nas", needs={"input_jacobian"}, ceiling=epe_ceiling)
def epe_nas(record: Record, model) -> float:
    """EPE-NAS (Lopes et al. 2021): per-class correlations of the input Jacobians, as NAS-Bench-Suite-Zero scores it.

    J (B × D) as for ``jacov``, its rows grouped by the batch labels. For each class c with rows
    J_c: s_c = Σ_{i,j} ln(|corrcoef(J_c)_{ij}| + 1e-5). With C = the number of logits (their
    last axis, NASLib's ``y.shape[-1]``):

    * C ≤ 100: score = Σ_c |s_c|; a class with a single sample has corrcoef = [[1]], s_c = ln(1 + 1e-5).
      When no class has two samples (100 classes at batch 16, say) the score is B·ln(1 + 1e-5) for
      every network: its declared ceiling, at which ``lswag score`` warns.
    * C > 100: s_c is divided by n_c (the class's number of samples) and
      score = Σ_c Σ_c' |s_c − s_c'| / (number of classes scored); single-sample classes are left
      out (in NASLib's ``eval_score_perclass`` their 0-d corrcoef makes ``len()`` raise and the
      class is skipped), and the proxy fails when no class has two samples.

    Follows NASLib's ``epe_nas.py`` (taken from the authors' ``search.py``). A sample whose
    Jacobian is constant (its correlations undefined; NaN in the reference) is a failure.
    """
    rows = input_jacobian(record, "epe_nas")
    labels = record.batch.y
    if labels.dim() != 1 or labels.is_floating_point() or labels.numel() != rows.shape[0]:
        raise ProxyFailure("EPE-NAS needs one integer class label per sample")
    labels = labels.cpu().numpy()
    if record.output_width is None:
        raise ProxyFailure("the number of classes (logits) was not recorded")
    many = record.output_width > MANY_CLASSES
    scores = []
    for label in np.unique(labels):
        members = rows[labels == label]
        if members.shape[0] == 1:
            if many:
                continue
            scores.append(math.log(1.0 + K))
            continue
        corr = np.corrcoef(members)
        if not np.all(np.isfinite(corr)):
            raise ProxyFailure(f"non-finite correlation between the input Jacobians of class {int(label)}")
        s = float(np.sum(np.log(np.abs(corr) + K)))
        scores.append(s / members.shape[0] if many else s)
    if not many:
        return float(np.sum(np.abs(scores)))
    if not scores:
        raise ProxyFailure(f"with more than {MANY_CLASSES} classes EPE-NAS needs a class with at least 2 samples "
                           "in the batch")
    values = np.array(scores)
    return float(np.abs(values[:, None] - values[None, :]).sum() / len(values))
