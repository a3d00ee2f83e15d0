"""The iRPE attention as one fused Triton kernel, forward and backward (FlashAttention-2's online softmax):

    out = softmax(q k^T / sqrt(hd) + per_bucket[b, h, i, buckets[i, j]]) v          q, k, v, out: (B, H, L, hd)

per_bucket = q @ W (B, H, L, NUM_BUCKETS), q unscaled (training/models/irpe.py), and buckets is the model's (L, L)
bucket table (`irpe.bucket_table`, class token included, or its patch block without one). Per tile of queries and
keys the kernel reads the tile's buckets (one byte per pair from one table shared by every image and head, so it
stays in L2) and adds q_i . W[:, bucket(i, j)], gathered from the query's row of per_bucket (50 values, in L1), to
the scores before the online softmax. Neither the (B, H, L, L) bias nor the scores are ever written.

Why a gathered load and a bucket table rather than products held in registers and buckets recomputed per pair:
Triton has no register-indexed gather (`tl.gather` over the 50 products of a row lowers to one warp shuffle per
register that holds them, 16 per score), and recomputing a bucket (two offsets, two piecewise maps, a multiply-add)
costs about as many integer instructions per score as the rest of the tile loop; the table costs one byte.

Backward: dk, dv per key tile over the query tiles; dq per query tile over the key tiles, which also sums each
score gradient into d per_bucket[b, h, i, bucket(i, j)] (atomic adds, fp32); autograd carries d per_bucket into q
and W through per_bucket = q @ W. The kernels run on CUDA, or on the CPU through Triton's interpreter when
TRITON_INTERPRET=1 is set before this module is imported (the tests do that).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from training.models.irpe import NUM_BUCKETS

HEAD_DIMS = (16, 32, 64, 128)  # head sizes the kernels are built for (tl.dot needs >= 16, tl.arange a power of 2)
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
BLOCK_M = 64  # queries per tile
BLOCK_N = 64  # keys per tile
NUM_WARPS = 4
NUM_STAGES = 2
LOG2E: tl.constexpr = 1.4426950408889634  # exp(x) = exp2(x * LOG2E)


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    if DOT_IN_FP32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32))
    return tl.dot(a, b, input_precision=PRECISION)


# TRITON_INTERPRET=1 when Triton was first imported makes @triton.jit give interpreted functions (CPU tensors)
INTERPRETED = not isinstance(_dot, triton.runtime.JITFunction)
# the interpreter multiplies bf16 tiles as their raw 16-bit integers; it gets fp32 copies instead (the same values,
# so the same products as a tensor core's bf16 inputs with fp32 accumulation)
DOT_IN_FP32: tl.constexpr = INTERPRETED


@triton.jit
def _biased_scores(q, k, bias_rows, bucket_rows, offs_n, seq_len, scale, MASK_N: tl.constexpr,
                   PRECISION: tl.constexpr):
    """q (BM, D), k (BN, D) -> scale * q k^T + per_bucket[i, bucket(i, j)] in fp32 (BM, BN), and the buckets.

    bias_rows, bucket_rows: (BM, 1) pointers to each query's per_bucket row and bucket-table row. MASK_N: keys from
    seq_len on score -inf (the tail tile)."""
    scores = _dot(q, tl.trans(k), PRECISION) * scale
    if MASK_N:
        valid = (offs_n < seq_len)[None, :]
        bucket = tl.load(bucket_rows + offs_n[None, :], mask=valid, other=0).to(tl.int32)
        bias = tl.load(bias_rows + bucket, mask=valid, other=float("-inf"))
    else:
        bucket = tl.load(bucket_rows + offs_n[None, :]).to(tl.int32)
        bias = tl.load(bias_rows + bucket)
    return scores + bias.to(tl.float32), bucket


@triton.jit
def _key_value_tile(k_base, v_base, stride_kl, stride_vl, offs_n, offs_d, seq_len, MASK_N: tl.constexpr):
    """The (BN, D) key and value rows of a key tile; rows past `seq_len` read as zeros when MASK_N."""
    if MASK_N:
        valid = (offs_n < seq_len)[:, None]
        k = tl.load(k_base + offs_n[:, None] * stride_kl + offs_d[None, :], mask=valid, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vl + offs_d[None, :], mask=valid, other=0.0)
    else:
        k = tl.load(k_base + offs_n[:, None] * stride_kl + offs_d[None, :])
        v = tl.load(v_base + offs_n[:, None] * stride_vl + offs_d[None, :])
    return k, v


@triton.jit
def _forward_tile(acc, row_sum, row_max, q, k_base, v_base, stride_kl, stride_vl, bias_rows, bucket_rows, offs_n,
                  offs_d, seq_len, scale, MASK_N: tl.constexpr, PRECISION: tl.constexpr):
    """One key tile of the online softmax: rescale the running sums, add exp(scores - max) @ v."""
    k, v = _key_value_tile(k_base, v_base, stride_kl, stride_vl, offs_n, offs_d, seq_len, MASK_N)
    scores, _ = _biased_scores(q, k, bias_rows, bucket_rows, offs_n, seq_len, scale, MASK_N, PRECISION)
    new_max = tl.maximum(row_max, tl.max(scores, 1))
    alpha = tl.exp2((row_max - new_max) * LOG2E)
    p = tl.exp2(scores * LOG2E - (new_max * LOG2E)[:, None])  # (BM, BN)
    row_sum = row_sum * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, PRECISION)
    return acc, row_sum, new_max


@triton.jit
def _forward_kernel(Q, K, V, BIAS, BUCKETS, OUT, LSE,
                    stride_qb, stride_qh, stride_ql, stride_kb, stride_kh, stride_kl,
                    stride_vb, stride_vh, stride_vl, stride_eb, stride_eh, stride_el,
                    stride_ob, stride_oh, stride_ol,
                    num_heads, seq_len, num_m_tiles, scale,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    PRECISION: tl.constexpr):
    """One program per (image, head, query tile): OUT (its rows) and LSE = log-sum-exp of its biased scores."""
    pid = tl.program_id(0)
    bh = (pid // num_m_tiles).to(tl.int64)  # 64-bit offsets: B * H * L * hd may pass 2**31
    b = bh // num_heads
    h = bh % num_heads
    offs_m = (pid % num_m_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_n = tl.arange(0, BLOCK_N)
    m_valid = offs_m < seq_len
    rows = tl.minimum(offs_m, seq_len - 1)  # rows past the end read the last row's bias; never stored
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_ql + offs_d[None, :],
                mask=m_valid[:, None], other=0.0)
    bias_rows = BIAS + b * stride_eb + h * stride_eh + rows[:, None] * stride_el
    bucket_rows = BUCKETS + rows[:, None] * seq_len
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    row_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    row_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    full_end = (seq_len // BLOCK_N) * BLOCK_N
    for start_n in range(0, full_end, BLOCK_N):
        acc, row_sum, row_max = _forward_tile(acc, row_sum, row_max, q, k_base, v_base, stride_kl, stride_vl,
                                              bias_rows, bucket_rows, start_n + offs_n, offs_d, seq_len, scale,
                                              False, PRECISION)
    if full_end < seq_len:
        acc, row_sum, row_max = _forward_tile(acc, row_sum, row_max, q, k_base, v_base, stride_kl, stride_vl,
                                              bias_rows, bucket_rows, full_end + offs_n, offs_d, seq_len, scale,
                                              True, PRECISION)
    out = acc / row_sum[:, None]
    tl.store(OUT + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ol + offs_d[None, :],
             out.to(OUT.dtype.element_ty), mask=m_valid[:, None])
    tl.store(LSE + bh * seq_len + offs_m, row_max + tl.log(row_sum), mask=m_valid)


@triton.jit
def _key_grad_kernel(Q, K, V, BIAS, BUCKETS, DO, LSE, DELTA, DK, DV,
                     stride_qb, stride_qh, stride_ql, stride_kb, stride_kh, stride_kl,
                     stride_vb, stride_vh, stride_vl, stride_eb, stride_eh, stride_el,
                     stride_dob, stride_doh, stride_dol,
                     num_heads, seq_len, num_n_tiles, scale,
                     HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     PRECISION: tl.constexpr):
    """One program per (image, head, key tile): dK and dV of its keys, over every query tile. DK, DV contiguous."""
    pid = tl.program_id(0)
    bh = (pid // num_n_tiles).to(tl.int64)
    b = bh // num_heads
    h = bh % num_heads
    offs_n = (pid % num_n_tiles) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    n_valid = offs_n < seq_len
    cols = tl.minimum(offs_n, seq_len - 1)  # keys past the end score as the last key; their rows are not stored
    k = tl.load(K + b * stride_kb + h * stride_kh + offs_n[:, None] * stride_kl + offs_d[None, :],
                mask=n_valid[:, None], other=0.0)
    v = tl.load(V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vl + offs_d[None, :],
                mask=n_valid[:, None], other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    for start_m in range(0, seq_len, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_valid = offs_m < seq_len
        rows = tl.minimum(offs_m, seq_len - 1)
        q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_ql + offs_d[None, :],
                    mask=m_valid[:, None], other=0.0)
        do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dol + offs_d[None, :],
                     mask=m_valid[:, None], other=0.0)
        lse = tl.load(LSE + bh * seq_len + offs_m, mask=m_valid, other=float("inf"))  # p = 0 past the end
        delta = tl.load(DELTA + bh * seq_len + offs_m, mask=m_valid, other=0.0)
        scores, _ = _biased_scores(q, k, BIAS + b * stride_eb + h * stride_eh + rows[:, None] * stride_el,
                                   BUCKETS + rows[:, None] * seq_len, cols, seq_len, scale, False, PRECISION)
        p = tl.exp2(scores * LOG2E - (lse * LOG2E)[:, None])  # (BM, BN)
        dv += _dot(tl.trans(p.to(do.dtype)), do, PRECISION)
        dp = _dot(do, tl.trans(v), PRECISION)
        ds = p * (dp - delta[:, None])
        dk += _dot(tl.trans(ds.to(q.dtype)), q, PRECISION)
    out = bh * seq_len * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DK + out, (dk * scale).to(DK.dtype.element_ty), mask=n_valid[:, None])
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=n_valid[:, None])


@triton.jit
def _query_grad_tile(dq, q, do, lse, delta, m_valid, k_base, v_base, stride_kl, stride_vl, bias_rows,
                     bucket_rows, dbias_rows, offs_n, offs_d, seq_len, scale, MASK_N: tl.constexpr,
                     PRECISION: tl.constexpr):
    """One key tile of the query-side backward: dq += dS k; d per_bucket[i, bucket(i, j)] += dS[i, j]."""
    k, v = _key_value_tile(k_base, v_base, stride_kl, stride_vl, offs_n, offs_d, seq_len, MASK_N)
    scores, bucket = _biased_scores(q, k, bias_rows, bucket_rows, offs_n, seq_len, scale, MASK_N, PRECISION)
    p = tl.exp2(scores * LOG2E - (lse * LOG2E)[:, None])
    dp = _dot(do, tl.trans(v), PRECISION)
    ds = p * (dp - delta[:, None])  # (BM, BN), d loss / d biased score
    dq += _dot(ds.to(k.dtype), k, PRECISION)
    keep = m_valid[:, None]
    if MASK_N:
        keep = keep & (offs_n < seq_len)[None, :]
    tl.atomic_add(dbias_rows + bucket, ds, mask=keep, sem="relaxed")
    return dq


@triton.jit
def _query_grad_kernel(Q, K, V, BIAS, BUCKETS, DO, LSE, DELTA, DQ, DBIAS,
                       stride_qb, stride_qh, stride_ql, stride_kb, stride_kh, stride_kl,
                       stride_vb, stride_vh, stride_vl, stride_eb, stride_eh, stride_el,
                       stride_dob, stride_doh, stride_dol,
                       num_heads, seq_len, num_m_tiles, scale,
                       NUM_BUCKETS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    """One program per (image, head, query tile): dQ of its queries (DQ contiguous) and their rows of DBIAS
    (fp32, zeroed, contiguous (B, H, L, NUM_BUCKETS)), over every key tile."""
    pid = tl.program_id(0)
    bh = (pid // num_m_tiles).to(tl.int64)  # 64-bit offsets: B * H * L * hd may pass 2**31
    b = bh // num_heads
    h = bh % num_heads
    offs_m = (pid % num_m_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_n = tl.arange(0, BLOCK_N)
    m_valid = offs_m < seq_len
    rows = tl.minimum(offs_m, seq_len - 1)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_ql + offs_d[None, :],
                mask=m_valid[:, None], other=0.0)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dol + offs_d[None, :],
                 mask=m_valid[:, None], other=0.0)
    lse = tl.load(LSE + bh * seq_len + offs_m, mask=m_valid, other=float("inf"))
    delta = tl.load(DELTA + bh * seq_len + offs_m, mask=m_valid, other=0.0)
    bias_rows = BIAS + b * stride_eb + h * stride_eh + rows[:, None] * stride_el
    bucket_rows = BUCKETS + rows[:, None] * seq_len
    dbias_rows = DBIAS + (bh * seq_len + rows[:, None]) * NUM_BUCKETS
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    full_end = (seq_len // BLOCK_N) * BLOCK_N
    for start_n in range(0, full_end, BLOCK_N):
        dq = _query_grad_tile(dq, q, do, lse, delta, m_valid, k_base, v_base, stride_kl, stride_vl, bias_rows,
                              bucket_rows, dbias_rows, start_n + offs_n, offs_d, seq_len, scale, False, PRECISION)
    if full_end < seq_len:
        dq = _query_grad_tile(dq, q, do, lse, delta, m_valid, k_base, v_base, stride_kl, stride_vl, bias_rows,
                              bucket_rows, dbias_rows, full_end + offs_n, offs_d, seq_len, scale, True, PRECISION)
    out = bh * seq_len * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DQ + out, (dq * scale).to(DQ.dtype.element_ty), mask=m_valid[:, None])


def supports(q: torch.Tensor) -> bool:
    """Whether the kernels are built for q's head size and dtype (the device is the caller's choice)."""
    return q.shape[-1] in HEAD_DIMS and q.dtype in DTYPES


def runs_on(device: torch.device) -> bool:
    """CUDA, or any device when this module was imported under Triton's interpreter."""
    return device.type == "cuda" or INTERPRETED


def _precision(dtype: torch.dtype) -> str | None:
    # fp32 inputs: full-precision products (TF32 would not match the reference); 16-bit: the default
    return "ieee" if dtype == torch.float32 else None


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


class _IRPEAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, per_bucket: torch.Tensor,
                buckets: torch.Tensor) -> torch.Tensor:
        q, k, v, per_bucket = (_last_dim_contiguous(t) for t in (q, k, v, per_bucket))
        batch, heads, length, head_dim = q.shape
        out = torch.empty(batch, length, heads, head_dim, dtype=q.dtype, device=q.device).transpose(1, 2)
        lse = torch.empty(batch, heads, length, dtype=torch.float32, device=q.device)
        tiles = triton.cdiv(length, BLOCK_M)
        _forward_kernel[(batch * heads * tiles,)](
            q, k, v, per_bucket, buckets, out, lse, *_strides(q), *_strides(k), *_strides(v),
            *_strides(per_bucket), *_strides(out), heads, length, tiles, head_dim**-0.5,
            HEAD_DIM=head_dim, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, PRECISION=_precision(q.dtype),
            num_warps=NUM_WARPS, num_stages=NUM_STAGES)
        ctx.save_for_backward(q, k, v, per_bucket, buckets, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, per_bucket, buckets, out, lse = ctx.saved_tensors
        grad_out = _last_dim_contiguous(grad_out)
        batch, heads, length, head_dim = q.shape
        delta = (out.float() * grad_out.float()).sum(-1).contiguous()  # (B, H, L): rowsum(dO * O)
        dq, dk, dv = (torch.empty(batch, heads, length, head_dim, dtype=t.dtype, device=t.device) for t in (q, k, v))
        dbias = torch.zeros(batch, heads, length, per_bucket.shape[-1], dtype=torch.float32, device=q.device)
        common = dict(HEAD_DIM=head_dim, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, PRECISION=_precision(q.dtype),
                      num_warps=NUM_WARPS, num_stages=NUM_STAGES)
        strides = (*_strides(q), *_strides(k), *_strides(v), *_strides(per_bucket), *_strides(grad_out))
        key_tiles = triton.cdiv(length, BLOCK_N)
        _key_grad_kernel[(batch * heads * key_tiles,)](
            q, k, v, per_bucket, buckets, grad_out, lse, delta, dk, dv, *strides,
            heads, length, key_tiles, head_dim**-0.5, **common)
        query_tiles = triton.cdiv(length, BLOCK_M)
        _query_grad_kernel[(batch * heads * query_tiles,)](
            q, k, v, per_bucket, buckets, grad_out, lse, delta, dq, dbias, *strides,
            heads, length, query_tiles, head_dim**-0.5, NUM_BUCKETS=per_bucket.shape[-1], **common)
        return dq, dk, dv, dbias.to(per_bucket.dtype), None


def irpe_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, per_bucket: torch.Tensor,
                   buckets: torch.Tensor) -> torch.Tensor:
    """q, k, v: (B, H, L, hd); per_bucket: (B, H, L, NUM_BUCKETS) = q @ W (q unscaled); buckets: (L, L) bucket
    table -> softmax(q k^T / sqrt(hd) + per_bucket[..., buckets]) v, (B, H, L, hd), in q's dtype.

    Gradients reach q, k, v and per_bucket (hence W). Runs in the inputs' dtype: autocast is off inside, the
    inputs already carry autocast's dtype."""
    if not runs_on(q.device):
        raise ValueError(f"irpe_attention runs on CUDA (or under TRITON_INTERPRET=1), not on {q.device.type}")
    if not supports(q) or not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"irpe_attention: head size {q.shape[-1]} and dtypes {q.dtype}/{k.dtype}/{v.dtype} are "
                         f"not supported (head sizes {HEAD_DIMS}, one dtype of {DTYPES})")
    length = q.shape[-2]
    if buckets.shape != (length, length) or per_bucket.shape != (*q.shape[:-1], NUM_BUCKETS):
        raise ValueError(f"irpe_attention: buckets {tuple(buckets.shape)} / per_bucket {tuple(per_bucket.shape)} "
                         f"do not fit q {tuple(q.shape)}")
    with torch.autocast(q.device.type, enabled=False):
        return _IRPEAttention.apply(q, k, v, per_bucket, buckets.to(torch.uint8).contiguous())  # 50 buckets: bytes
