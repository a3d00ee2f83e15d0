"""The LoMaR encoder: a pre-norm ViT with a class token, no absolute position embedding, and iRPE on keys."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

from training.models.config import LoMaRConfig
from training.models.flex_irpe import flex_irpe_attention
from training.models.irpe import ContextualKeyRPE, bucket_table

try:
    import training.models.irpe_triton as irpe_triton
except ImportError:  # a torch build without Triton (the CPU-only wheels): no fused kernel
    irpe_triton = None

LAYER_NORM_EPS = 1e-6
# how Attention applies the iRPE term, all exact (benchmarks/attention_variants.py times them side by side):
# "auto" picks one per call (select_attention); "sdpa_bias": an additive (B, H, L, L) bias to SDPA, the reference;
# "flex": a FlexAttention score_mod computing each bucket from the token indices; "triton": the fused kernel of
# training/models/irpe_triton.py (CUDA)
ATTENTION_IMPLEMENTATIONS = ("auto", "sdpa_bias", "flex", "triton")


def select_attention(requested: str, q: torch.Tensor) -> str:
    """The implementation that runs for `requested` on q (B, H, L, hd): "auto" is "triton" for CUDA tensors the
    kernel supports, unless the model is being traced for export, and "sdpa_bias" otherwise (the CPU path, and the
    graph ONNX export writes); any other name is returned as it is."""
    if requested != "auto":
        return requested
    exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()
    if irpe_triton is not None and q.is_cuda and irpe_triton.supports(q) and not exporting:
        return "triton"
    return "sdpa_bias"


class Attention(nn.Module):
    """Multi-head self-attention with the iRPE key term, passed to SDPA as an additive bias ("sdpa_bias"), added
    in a FlexAttention score_mod ("flex"; needs the grid width) or inside the fused Triton kernel ("triton");
    "auto" chooses (select_attention)."""

    implementation: str = "auto"

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rpe_k = ContextualKeyRPE(self.head_dim)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, L, D) -> q, k, v each (B, H, L, hd)."""
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """x: (B, L, D); buckets: iRPE bucket table (L, L) of the token grid; width: grid width -> (B, L, D)."""
        q, k, v = self.qkv_heads(x)
        implementation = select_attention(self.implementation, q)
        if implementation == "triton":
            if irpe_triton is None:
                raise ValueError("the triton attention implementation needs Triton (a CUDA build of torch)")
            out = irpe_triton.irpe_attention(q, k, v, self.rpe_k.per_bucket(q), buckets)  # (B, H, L, hd)
        elif implementation == "flex":
            if width is None:
                raise ValueError("the flex attention implementation needs the patch-grid width")
            out = flex_irpe_attention(q, k, v, self.rpe_k.per_bucket(q), width)  # (B, H, L, hd)
        else:
            bias = self.rpe_k(q, buckets)  # unscaled q, as the trained weights expect
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, L, hd)
        return self.proj(out.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, width: int | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), buckets, width))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Conv patchify (kernel = stride = patch size): (B, C, H, W) -> (B, H/p, W/p, D)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).permute(0, 2, 3, 1)


class LoMaRViT(nn.Module):
    """Shared encoder trunk; state-dict keys follow the official checkpoints (cls_token, patch_embed, blocks)."""

    def __init__(self, config: LoMaRConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        rates = torch.linspace(0, config.drop_path_rate, config.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, config.qkv_bias, rate) for rate in rates
        )
        self._buckets: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def init_weights(self) -> None:
        """MAE-style initialisation: xavier linears, trunc-normal tokens, zero iRPE tables, unit LayerNorms."""
        trunc_normal_(self.cls_token, std=0.02)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def buckets(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """iRPE bucket table (1 + h*w, 1 + h*w) for an h x w grid, cached per grid size and device."""
        key = (height, width, device)
        if key not in self._buckets:
            self._buckets[key] = bucket_table(height, width).to(device)
        return self._buckets[key]

    def encode_tokens(self, patches: torch.Tensor) -> torch.Tensor:
        """patches: (B, h, w, D) patch embeddings -> (B, 1 + h*w, D) block outputs, class token first."""
        batch, height, width, dim = patches.shape
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1).to(patches.dtype), patches.flatten(1, 2)], dim=1)
        buckets = self.buckets(height, width, patches.device)
        for block in self.blocks:
            tokens = block(tokens, buckets, width)
        return tokens

    def set_attention(self, implementation: str) -> None:
        """Choose how every block applies the iRPE term: one of ATTENTION_IMPLEMENTATIONS (same outputs); "auto"
        (the default) lets select_attention choose per call."""
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"unknown attention implementation {implementation!r}; "
                             f"choose one of {', '.join(ATTENTION_IMPLEMENTATIONS)}")
        for block in self.blocks:
            block.attn.implementation = implementation

    def no_weight_decay(self) -> set[str]:
        """Parameter names that take no weight decay besides norms and biases (tokens, iRPE tables)."""
        return {name for name, _ in self.named_parameters() if name.endswith(("_token", "lookup_table_weight"))}
