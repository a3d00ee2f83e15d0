"""iRPE relative position term ("contextual product" on keys, shared across heads).

For an h x w patch grid (row-major) after one class token, each (query i, key j) pair falls in one of 50
buckets: (f(dr) + 3) * 7 + (f(dc) + 3) for patch pairs, 49 for any pair involving the class token, where
f(x) = x for |x| <= 1, 2*sign(x) for 2 <= |x| <= 3 and 3*sign(x) for |x| >= 4 (iRPE piecewise index,
alpha 1.9, beta 3.8, gamma 15.2).
"""
from __future__ import annotations

import functools

import torch
from torch import nn

NUM_BUCKETS = 50
CLS_BUCKET = 49


def piecewise_index(offset: torch.Tensor) -> torch.Tensor:
    """Bucket one axis of relative offsets into -3..3."""
    magnitude = offset.abs()
    sign = offset.sign()
    return torch.where(magnitude <= 1, offset, torch.where(magnitude <= 3, 2 * sign, 3 * sign))


def patch_bucket(dr: torch.Tensor, dc: torch.Tensor) -> torch.Tensor:
    """Bucket (0..48) of a pair of patches from their row and column offsets (query minus key)."""
    return (piecewise_index(dr) + 3) * 7 + (piecewise_index(dc) + 3)


@functools.lru_cache(maxsize=32)
def _bucket_table(height: int, width: int) -> torch.Tensor:
    rows = torch.arange(height).repeat_interleave(width)  # (h*w,)
    cols = torch.arange(width).repeat(height)  # (h*w,)
    length = height * width + 1
    table = torch.full((length, length), CLS_BUCKET, dtype=torch.long)
    table[1:, 1:] = patch_bucket(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :])
    return table


def bucket_table(height: int, width: int) -> torch.Tensor:
    """Bucket of every (query, key) pair: Long (1 + h*w, 1 + h*w), class token first. Cached per grid size."""
    return _bucket_table(height, width).clone()


class ContextualKeyRPE(nn.Module):
    """Per-layer lookup table W (1, head_dim, 50); bias(i, j) = q_i . W[0, :, bucket(i, j)] with q unscaled."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.lookup_table_weight = nn.Parameter(torch.zeros(1, head_dim, NUM_BUCKETS))

    def per_bucket(self, q: torch.Tensor) -> torch.Tensor:
        """q: (B, H, L, hd) -> q . W for every bucket, (B, H, L, 50)."""
        return q @ self.lookup_table_weight[0].to(q.dtype)

    def forward(self, q: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
        """q: (B, H, L, hd); buckets: (L, L) from bucket_table -> additive bias (B, H, L, L)."""
        per_bucket = self.per_bucket(q)  # (B, H, L, 50)
        # gather along the bucket axis (measured faster than index_select on a flattened view)
        return per_bucket.gather(-1, buckets.expand(q.shape[0], q.shape[1], -1, -1))
