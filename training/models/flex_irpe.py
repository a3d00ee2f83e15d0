"""The iRPE key term inside FlexAttention: the bucket of (query, key) is computed from the token indices in the
score_mod (same rule as irpe.bucket_table), so no (L, L) bias or table is materialised; only the per-bucket
products q . W (B, H, L, 50) are read."""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch.nn.attention.flex_attention import flex_attention

from training.models.irpe import CLS_BUCKET, patch_bucket

ScoreMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def irpe_score_mod(per_bucket: torch.Tensor, width: int) -> ScoreMod:
    """per_bucket: (B, H, L, 50) = q @ W with q unscaled; width: patch-grid width (tokens: class first, row-major).

    The returned score_mod adds per_bucket[b, h, i, bucket(i, j)] to the scaled score q_i . k_j / sqrt(hd),
    exactly the additive bias of the SDPA path."""

    def score_mod(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor,
                  kv_idx: torch.Tensor) -> torch.Tensor:
        q_pos, k_pos = q_idx - 1, kv_idx - 1  # patch index; -1 for the class token
        patches = patch_bucket(q_pos // width - k_pos // width, q_pos % width - k_pos % width)
        bucket = torch.where((q_idx == 0) | (kv_idx == 0), CLS_BUCKET, patches)
        return score + per_bucket[b, h, q_idx, bucket].to(score.dtype)

    return score_mod


@functools.cache
def compiled_flex_attention() -> Callable[..., torch.Tensor]:
    """flex_attention compiled once per process (eager flex materialises the full score matrix)."""
    return torch.compile(flex_attention)


def flex_irpe_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, per_bucket: torch.Tensor,
                        width: int) -> torch.Tensor:
    """q, k, v: (B, H, L, hd); per_bucket: (B, H, L, 50) -> softmax(q k^T / sqrt(hd) + iRPE) v, (B, H, L, hd).

    Runs in the inputs' dtype (autocast off inside: q, k, v and per_bucket already carry autocast's dtype)."""
    # inside a compiled model dynamo traces flex_attention itself; in an eager one the compiled kernel is called
    attend = flex_attention if torch.compiler.is_compiling() else compiled_flex_attention()
    with torch.autocast(q.device.type, enabled=False):
        return attend(q, k, v, score_mod=irpe_score_mod(per_bucket, width))
