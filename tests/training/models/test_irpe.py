"""iRPE bucket table properties and the SDPA path against an explicit-softmax implementation."""
from __future__ import annotations

import pytest
import torch

from training.models.irpe import CLS_BUCKET, NUM_BUCKETS, bucket_table, piecewise_index
from training.models.vit import Attention


def test_piecewise_index_values():
    offsets = torch.arange(-6, 7)
    expected = torch.tensor([-3, -3, -3, -2, -2, -1, 0, 1, 2, 2, 3, 3, 3])
    assert torch.equal(piecewise_index(offsets), expected)


@pytest.mark.parametrize("grid", [(7, 7), (14, 14), (3, 5), (1, 1)])
def test_bucket_table_properties(grid):
    h, w = grid
    table = bucket_table(h, w)
    length = h * w + 1
    assert table.shape == (length, length)
    assert table.min() >= 0 and table.max() < NUM_BUCKETS
    assert (table[0] == CLS_BUCKET).all() and (table[:, 0] == CLS_BUCKET).all()
    patches = table[1:, 1:]
    assert (patches != CLS_BUCKET).all()
    assert (patches.diagonal() == 24).all()  # zero offset: (0 + 3) * 7 + (0 + 3)
    # antisymmetry of offsets: bucket(j, i) mirrors bucket(i, j) around the centre bucket 24
    assert torch.equal(patches + patches.T, torch.full_like(patches, 48))


def test_bucket_table_specific_pairs():
    table = bucket_table(14, 14)
    def token(r, c): return 1 + r * 14 + c
    assert table[token(5, 5), token(5, 6)] == 3 * 7 + 2  # dc = -1
    assert table[token(5, 5), token(2, 5)] == 5 * 7 + 3  # dr = +3 -> 2
    assert table[token(0, 0), token(9, 13)] == 0  # dr, dc <= -4 -> -3, -3
    assert table[token(13, 13), token(0, 0)] == 48


def test_bucket_table_is_cached_and_safe_to_modify():
    first = bucket_table(7, 7)
    first.zero_()
    assert bucket_table(7, 7)[1, 1] == 24


def explicit_attention(attn: Attention, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Textbook form: softmax(scale * q k^T + q . W[bucket]) v, with the unscaled query in the iRPE term."""
    q, k, v = attn.qkv_heads(x)
    weight = attn.rpe_k.lookup_table_weight[0]  # (hd, 50)
    rel = torch.einsum("bhid,dn->bhin", q, weight)  # (B, H, L, 50)
    bias = torch.gather(rel, -1, table.expand(q.shape[0], q.shape[1], -1, -1))
    logits = (q @ k.transpose(-2, -1)) * attn.head_dim**-0.5 + bias
    out = logits.softmax(dim=-1) @ v
    return attn.proj(out.transpose(1, 2).flatten(2))


def test_sdpa_path_equals_explicit_softmax():
    torch.manual_seed(0)
    attn = Attention(dim=48, num_heads=3)
    torch.nn.init.normal_(attn.rpe_k.lookup_table_weight, std=0.5)  # non-zero so a wrong term shows
    x = torch.randn(2, 1 + 4 * 5, 48)
    with torch.no_grad():
        fast = attn(x, bucket_table(4, 5))
        slow = explicit_attention(attn, x, bucket_table(4, 5))
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
