"""Activation patterns as packed bits: each unit's binarised sample-wise pattern packed into
int64 codes, the distinct codes counted, and the NWOT kernel of a sign map."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from lswag.probe.tensors import in_memory_order
from lswag.probe.vocabulary import UNIT_BLOCK

if TYPE_CHECKING:
    from lswag.probe.records import SiteRecord


def pack_bytes(active: torch.Tensor) -> torch.Tensor:
    """Pack a (B, U) boolean map into (ceil(B/8), U) uint8: column u holds unit u's sample-wise
    pattern as bits, sample b in bit b % 8 of byte b // 8 (padding bits 0 for every unit)."""
    batch, units = active.shape
    padded = batch + (-batch) % 8
    if padded != batch:
        active = torch.cat([active, active.new_zeros(padded - batch, units)])
    bits = torch.arange(8, dtype=torch.uint8, device=active.device)[:, None]
    # a bool tensor is stored as 0/1 bytes: viewed as uint8 it needs no copy
    return (active.contiguous().view(torch.uint8).view(padded // 8, 8, units) << bits).sum(1, dtype=torch.uint8)


def words_of(byte_chunks: list[torch.Tensor]) -> torch.Tensor:
    """(U, W) int64 codes from the byte patterns (:func:`pack_bytes`) of consecutive chunks of
    the batch, concatenated: two units have the same code exactly when they have the same pattern
    over every chunk."""
    packed = torch.cat(byte_chunks) if len(byte_chunks) > 1 else byte_chunks[0]
    if packed.shape[0] % 8:
        packed = torch.cat([packed, packed.new_zeros(8 - packed.shape[0] % 8, packed.shape[1])])
    return packed.T.contiguous().view(torch.int64)


def unique_codes(codes: torch.Tensor) -> torch.Tensor:
    """The distinct rows of packed codes (U, W).

    ``torch.unique(dim=0)`` is ~100x slower than a 1-D unique, so one-word codes (B <= 64) use the
    latter and longer ones NumPy's unique over each row's bytes.
    """
    if codes.shape[1] == 1:
        return torch.unique(codes[:, 0]).unsqueeze(1)
    rows = np.ascontiguousarray(codes.cpu().numpy())
    distinct = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))))
    return torch.from_numpy(distinct.view(rows.dtype).reshape(-1, rows.shape[1]).copy()).to(codes.device)


def sample_codes(sites: list[SiteRecord], batch: int) -> torch.Tensor:
    """(B, W) int64 codes of each sample's pattern over every unit of ``sites`` (of a whole-batch
    pass, whose codes hold ``batch`` sample bits per unit): two samples have the same code exactly
    when they are in the same linear region of the network."""
    bits = torch.arange(8, dtype=torch.uint8)
    unit_maps = []
    for site in sites:
        packed = site.codes.cpu().contiguous().view(torch.uint8)        # (U, bytes): sample b in bit b % 8
        unit_maps.append(((packed.unsqueeze(-1) >> bits) & 1).flatten(1)[:, :batch].bool())
    return words_of([pack_bytes(torch.cat(unit_maps))])                   # packed along the units


def count_unique(codes: torch.Tensor) -> int:
    """Number of distinct rows of packed codes."""
    return int(unique_codes(codes).shape[0])


def nwot_kernel(active: torch.Tensor) -> torch.Tensor:
    """NWOT's c cᵀ + (1−c)(1−c)ᵀ for a (B, U) boolean map: units minus Hamming distance, float64."""
    batch, units = active.shape
    kernel = torch.zeros(batch, batch, dtype=torch.float64, device=active.device)
    for u0 in range(0, units, UNIT_BLOCK):
        c = active[:, u0:u0 + UNIT_BLOCK].to(torch.float32)  # block sums < 2^24: exact in float32
        ones = c.sum(1, keepdim=True)
        block = 2 * (c @ c.T) - ones - ones.T + c.shape[1]
        kernel += block.to(torch.float64)
    return kernel


def binarised(output: torch.Tensor) -> torch.Tensor:
    """(B, units) sign map of ``output``; units in memory order, which no pattern count depends on."""
    return (in_memory_order(output.detach()) > 0).reshape(output.shape[0], -1)


def kernel_logdet(output: torch.Tensor) -> float:
    """ln|det K| of the NWOT kernel of ``output > 0`` (B × units), or -inf when K is singular.

    K is a sum of Gram matrices, so det K >= 0; a sign <= 0 from the LU factorisation means singular.
    """
    sign, logdet = np.linalg.slogdet(nwot_kernel(binarised(output)).cpu().numpy())
    return float(logdet) if sign > 0 else -math.inf
