"""AZ-NAS components (Lee & Ham, CVPR 2024): expressivity, progressivity, trainability, complexity.

Each is a per-network proxy; AZ-NAS itself ranks a *pool* of networks on all four and sums
ln(rank / N) -- that is :func:`lswag.ensembles.az_nas`, which takes the table of these values.

The first three read the probe's ``features`` pass (:class:`lswag.probe.BlockRecord`): the maps
are the input of the first block and the output of every block (:func:`lswag.probe.block_containers`:
one container's children, or every stage's; on NB201 the stem output and the 17 cell outputs, exactly
AZ-NAS's ``extract_cell_features``). Conventions checked against the authors' code
(cvlab-yonsei/AZ-NAS, ``NB201/ZeroShotProxy/compute_az_nas_score.py``): expressivity of a map is
the entropy of the eigenvalue shares of its channel covariance over (sample, position) rows;
trainability pairs consecutive maps with a ±1 output gradient. Differences, all deliberate:

* Initialisation: AZ-NAS redraws the weights Kaiming-normal fan-in before scoring; lswag scores
  the network as given, as every probe proxy -- pass ``init="kaiming"`` to ``lswag.evaluate``
  (N(0, 2/fan_in), biases 0, norm scales 1) for AZ-NAS's setting.
* Randomness: the ±1 gradients come from a generator seeded with
  :data:`lswag.probe.RADEMACHER_SEED`, not the global RNG, so scores are reproducible.
* Precision: covariances, eigenvalues and singular values in float64 (AZ-NAS: float32).
* A NaN that AZ-NAS maps to −inf, and an identity block (−inf trainability), are failures with
  their reason here; failures rank last in the ensemble, as −inf does in AZ-NAS.
* Maps of different rank (around a Flatten) and 3-D token maps are handled
  (:func:`lswag.probe.block_gain`); AZ-NAS's code knows 4-D maps only.
"""
from __future__ import annotations

import math

from lswag.probe import BlockRecord, Record
from lswag.proxies import ProxyFailure, proxy
from lswag.proxies.size import flops

#: AZ-NAS's trainability of one block from its gain σ: −σ − 1/(σ + 1e-6) + 2 (0 at σ = 1, its maximum)
GAIN_EPS = 1e-6


def _blocks(record: Record, at_least: int = 1) -> list[BlockRecord]:
    blocks = record.blocks
    if not blocks:
        if record.block_container is None:
            raise ProxyFailure("no nn.Sequential or nn.ModuleList with two or more children to take blocks from")
        raise ProxyFailure(f"no block of {record.block_container or 'the model'} produced a floating-point map")
    if len(blocks) < at_least:
        raise ProxyFailure(f"{at_least} block feature maps needed, {len(blocks)} recorded")
    broken = next((b for b in blocks if not math.isfinite(b.entropy)), None)
    if broken is not None:
        raise ProxyFailure(f"the feature map of {broken.name} is non-finite or constant (its covariance "
                           "has no spectrum)")
    return blocks


@proxy("az_expressivity", needs={"blocks"})
def az_expressivity(record: Record, model) -> float:
    """Σ_maps −Σ_k p_k ln(p_k + 1e-8), p the eigenvalue shares of each block map's channel covariance (AZ-NAS).

    Isotropy of the features: high when the variance is spread evenly over the channels. Rows are
    (sample, position) pairs of a 4-D map, (sample, token) pairs of a 3-D one, samples of a 2-D
    one; the covariance is mean-centred and divided by the number of rows.
    """
    return sum(b.entropy for b in _blocks(record))


@proxy("az_progressivity", needs={"blocks"})
def az_progressivity(record: Record, model) -> float:
    """min_i (E_{i+1} − E_i) over consecutive block maps, E the expressivity of each map (AZ-NAS).

    High when the expressivity grows from every map to the next; needs two maps.
    """
    entropies = [b.entropy for b in _blocks(record, at_least=2)]
    return min(later - earlier for earlier, later in zip(entropies, entropies[1:]))


@proxy("az_trainability", needs={"blocks"})
def az_trainability(record: Record, model) -> float:
    """mean over consecutive block pairs of −σ − 1/(σ + 1e-6) + 2, σ = ‖G_inᵀ G_out / N‖₂ (AZ-NAS).

    G_out is a ±1 gradient on the later map, G_in its backpropagation to the earlier one, both as
    (position, channel) rows; when the resolution halves, G_in is pixel-unshuffled first. σ is the
    spectral norm of the block's average input-output Jacobian in that sense; the term is largest
    (0) at σ = 1, where gradients neither vanish nor explode. A block whose G_in equals G_out (it
    passes its input through unchanged) scores −inf in AZ-NAS: here a failure saying so.
    """
    terms = []
    for block in _blocks(record, at_least=2)[1:]:
        if block.identity:
            raise ProxyFailure(f"block {block.name} passes its input through unchanged (AZ-NAS scores -inf)")
        if block.problem is not None:
            raise ProxyFailure(f"block {block.name}: {block.problem}")
        if block.gain is None or not math.isfinite(block.gain):
            raise ProxyFailure(f"non-finite gradient through block {block.name}")
        terms.append(-block.gain - 1.0 / (block.gain + GAIN_EPS) + 2.0)
    return sum(terms) / len(terms)


@proxy("az_complexity", own_pass=("1-sample forward, FLOP counter", "forward"))
def az_complexity(record: Record, model) -> float:
    """FLOPs (multiply-accumulates of one sample, in millions): AZ-NAS's complexity, the same value as ``flops``.

    AZ-NAS ranks it ascending (more FLOPs, better rank) and reads it from the benchmark API on
    NB201; here it is counted by :func:`lswag.proxies.size.flops`.
    """
    return flops(record, model)
