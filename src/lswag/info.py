"""Plug-in information theory on discretised scores: bins, entropy, conditional entropy, gain.

LIBRA (``lswag.libra``) asks how much a candidate proxy ``z`` still tells about the accuracy
``y`` once the best proxy ``z1`` is known. All quantities are plug-in estimates in bits: the
empirical frequencies of the observed (discretised) values stand in for the probabilities.

* :func:`discretise` maps real scores to equal-width bins; the number of bins follows Sturges'
  rule ``⌈1 + log2 n⌉`` (Sturges 1926; Scott 2009) by default, or NAS-Bench-Suite-Zero's
  ``round(1 + 3.322·ln n)`` (its code writes Sturges' base-10 constant with a natural log).
* :func:`entropy` ``H(X1, …, Xk) = −Σ p log2 p`` over the observed joint values.
* :func:`conditional_entropy` ``H(y | z1, …, zk) = H(y, z1, …, zk) − H(z1, …, zk)``.
* :func:`information_gain` ``IG(z) = H(y | given) − H(y | given, z)``: the paper's Eq. 9 with
  ``given = (z1,)`` (L-SWAG paper §3.2 and appendix G, after NAS-Bench-Suite-Zero §4).
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from lswag.errors import LswagError, unknown_choice

__all__ = ["BIN_RULES", "bin_count", "discretise", "entropy", "conditional_entropy", "information_gain"]

#: rule name -> number of bins for n finite values
BIN_RULES = {
    "sturges": lambda n: math.ceil(1 + math.log2(n)),
    "suite_zero": lambda n: round(1 + 3.322 * math.log(n)),
}


def bin_count(n: int, bins: str | int = "sturges") -> int:
    """The number of equal-width bins for ``n`` values: a rule of :data:`BIN_RULES` or a count."""
    if isinstance(bins, numbers.Integral) and not isinstance(bins, bool):
        if bins < 1:
            raise LswagError(f"the number of bins must be at least 1, got {bins}")
        return int(bins)
    if bins not in BIN_RULES:
        raise unknown_choice("binning rule", str(bins), BIN_RULES)
    return BIN_RULES[bins](max(int(n), 1))


def discretise(values: Sequence[float], bins: str | int = "sturges") -> np.ndarray:
    """Equal-width bin index (0 … k−1) of every value; failures share one extra bin, k.

    The k bins split [min, max] of the finite values into equal widths (the maximum falls in
    the last bin), with k from :func:`bin_count` over the finite values. A failure (NaN, ±inf)
    carries no score to place, so all failures form a category of their own instead of
    crowding into the lowest bin as NAS-Bench-Suite-Zero's −1e8 sentinel would. Constant
    values all land in bin 0.
    """
    x = np.asarray(values, dtype=float).reshape(-1)
    finite = np.isfinite(x)
    k = bin_count(int(finite.sum()), bins)
    out = np.full(x.shape, k, dtype=np.int64)
    if finite.any():
        low, high = x[finite].min(), x[finite].max()
        if high > low:
            position = (x[finite] - low) / (high - low) * k
            out[finite] = np.minimum(position.astype(np.int64), k - 1)
        else:
            out[finite] = 0
    return out


def _joint_codes(variables: Sequence[Sequence]) -> np.ndarray:
    """One integer per sample naming its joint value over ``variables`` (discrete, same length)."""
    columns = [np.asarray(v).reshape(-1) for v in variables]
    lengths = {c.size for c in columns}
    if len(lengths) != 1:
        raise LswagError(f"variables of different lengths {sorted(lengths)}; they must describe the same samples")
    if columns[0].size == 0:
        raise LswagError("entropy of no samples is undefined")
    _, codes = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    return codes.reshape(-1)


def entropy(*variables: Sequence) -> float:
    """Plug-in joint entropy ``H(X1, …, Xk) = −Σ_v p(v) log2 p(v)`` in bits of discrete samples.

    ``p(v)`` is the fraction of samples whose joint value is ``v``. Discretise real scores
    first (:func:`discretise`).
    """
    if not variables:
        raise LswagError("entropy needs at least one variable")
    counts = np.bincount(_joint_codes(variables))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns −0.0 into 0.0


def conditional_entropy(y: Sequence, *given: Sequence) -> float:
    """``H(y | z1, …, zk) = H(y, z1, …, zk) − H(z1, …, zk)`` in bits; ``H(y)`` when nothing is given."""
    if not given:
        return entropy(y)
    return max(entropy(y, *given) - entropy(*given), 0.0)  # clamp float noise of equal terms


def information_gain(y: Sequence, z: Sequence, given: Sequence[Sequence] = ()) -> float:
    """``IG = H(y | given) − H(y | given, z)``: what ``z`` adds about ``y`` beyond ``given``, in bits.

    With ``given = (z1,)`` this is the L-SWAG paper's Eq. 9; with nothing given it is the mutual
    information ``I(y; z)``. Never negative for plug-in estimates (conditioning cannot raise the
    empirical entropy).
    """
    return max(conditional_entropy(y, *given) - conditional_entropy(y, *given, z), 0.0)
