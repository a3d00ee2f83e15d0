"""The "ort_fused" graph: every LoMaR attention layer as one `com.microsoft.MultiHeadAttention` node of ONNX Runtime.

The standard graph (export/onnx_export.py) spells attention out in standard operators (MatMul, Add, Softmax,
MatMul), which TensorRT and every runtime read. This variant is for ONNX Runtime only (its contrib operator, on the
CPU and CUDA providers): one MultiHeadAttention node per layer takes q, k, v (B, L, D) and the iRPE term as its
additive `attention_bias` (B, H, L, L), computed in standard operators before it:

    R    = q_h . W                       (B, H, L, 50)   one small MatMul per layer (q unscaled)
    bias = R[b, h, i, bucket(i, j)]      (B, H, L, L)    one GatherElements, its index the constant bucket
                                                          table expanded to the batch (int32: half the bytes
                                                          of int64 to write and read, measured faster)

MultiHeadAttention scales q . k alone (attribute `scale` = head_dim ** -0.5) and adds the bias after, as the
model does (training/models/vit.py). Its inputs follow ONNX Runtime's ContribOperators.md: query, key, value,
bias (omitted), key_padding_mask (omitted), attention_bias; attribute num_heads. The bucket table is fixed by the
patch grid, so the graph serves one image size (as the standard graph does); the grid is given when fusing.
"""
from __future__ import annotations

import copy
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from export.errors import ExportError
from export.onnx_export import export_onnx
from training.models.irpe import ContextualKeyRPE, bucket_table

GRAPH = "ort_fused"  # the name of this graph variant (ExportOptions.graph, the model card's `graph`)
CONTRIB_DOMAIN = "com.microsoft"
CONTRIB_OPSET = 1
FUSED_OP = "MultiHeadAttention"
ATTENTION_BIAS_INPUT = 5  # position of attention_bias among MultiHeadAttention's inputs
INDEX_DTYPE = torch.int32  # of the bucket index that GatherElements reads


class MultiHeadAttention(torch.autograd.Function):
    """ONNX Runtime's MultiHeadAttention: PyTorch's SDPA when run, one contrib node when traced for ONNX.

    q, k, v: (B, L, H*hd); bias: additive (B, H, L, L), or None -> (B, L, H*hd).
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                num_heads: int, scale: float) -> torch.Tensor:
        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, H*hd) -> (B, H, L, hd)
            return t.unflatten(-1, (num_heads, -1)).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=bias, scale=scale)
        return out.transpose(1, 2).flatten(2)

    @staticmethod
    def symbolic(g, q, k, v, bias, num_heads: int, scale: float):
        inputs = [q, k, v]
        if bias is not None:
            absent = g.op("prim::Constant")  # how the exporter spells an omitted optional input ("")
            absent.setType(torch._C.OptionalType.ofTensor())
            inputs += [absent] * (ATTENTION_BIAS_INPUT - len(inputs)) + [bias]
        out = g.op(f"{CONTRIB_DOMAIN}::{FUSED_OP}", *inputs, num_heads_i=num_heads, scale_f=scale)
        out.setType(q.type())  # the output has the query's shape and type
        return out


def is_irpe_attention(module: nn.Module) -> bool:
    """A LoMaR attention layer (training.models.vit.Attention: qkv, proj, num_heads, head_dim and the iRPE term).

    Told by its iRPE term rather than its class: importing training.models.vit from here would close the import
    circle training.models.vit -> training.models -> ... -> training.models.vit in tests/lomar_serve/test_structure.py.
    """
    return isinstance(getattr(module, "rpe_k", None), ContextualKeyRPE)


class FusedIRPEAttention(nn.Module):
    """Stands in for training.models.vit.Attention (same call, same outputs) and exports as MultiHeadAttention.

    Built for one token grid: `buckets` (L, L) is the iRPE bucket table of a class token and an h x w grid,
    in INDEX_DTYPE.
    """

    def __init__(self, attention: nn.Module, buckets: torch.Tensor) -> None:
        super().__init__()
        self.num_heads, self.head_dim = attention.num_heads, attention.head_dim
        self.scale = self.head_dim ** -0.5
        self.qkv, self.proj, self.rpe_k = attention.qkv, attention.proj, attention.rpe_k
        self.length = buckets.shape[0]
        self.register_buffer("buckets", buckets[None, None], persistent=False)  # (1, 1, L, L), a view

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """x: (B, L, D); buckets, width: as Attention takes them (the table is this module's own) -> (B, L, D)."""
        if not torch.jit.is_tracing() and tuple(buckets.shape) != (self.length, self.length):
            raise ExportError(f"fused attention built for {self.length} tokens got {tuple(buckets.shape)}")
        heads = self.num_heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, L, D) each
        q_heads = q.reshape(-1, self.length, heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)
        per_bucket = self.rpe_k.per_bucket(q_heads)  # (B, H, L, 50), q unscaled
        index = self.buckets.expand(per_bucket.shape[0], heads, self.length, self.length)  # (B, H, L, L)
        bias = per_bucket.gather(-1, index)  # (B, H, L, L)
        return self.proj(MultiHeadAttention.apply(q, k, v, bias, heads, self.scale))


def fuse_attention(module: nn.Module, grid: tuple[int, int]) -> nn.Module:
    """A copy of `module` (a contract wrapper, export/wrappers.py) whose every LoMaR Attention is replaced by
    FusedIRPEAttention for sequences of a class token and an h x w `grid` of patches."""
    fused = copy.deepcopy(module).eval()
    buckets = bucket_table(*grid).to(INDEX_DTYPE)  # one table shared by every layer (one initializer)
    targets = [(name, child) for name, child in fused.named_modules() if is_irpe_attention(child)]
    if not targets:
        raise ExportError(f"{type(module).__name__} has no LoMaR attention layer to fuse")
    for name, attention in targets:
        parent, _, attribute = name.rpartition(".")
        setattr(fused.get_submodule(parent), attribute, FusedIRPEAttention(attention, buckets))
    return fused


def fused_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The graph's MultiHeadAttention nodes."""
    return [node for node in model.graph.node if node.domain == CONTRIB_DOMAIN and node.op_type == FUSED_OP]


def export_ort_fused(module: nn.Module, grid: tuple[int, int], example: tuple[torch.Tensor, ...],
                     input_names: list[str], output_names: list[str], path: Path) -> None:
    """Write the ort_fused graph of `module` to `path` (as export_onnx does the standard one).

    Raises:
        ExportError: the export failed, or left an attention layer without its fused node and bias.
    """
    fused = fuse_attention(module, grid)
    layers = sum(isinstance(child, FusedIRPEAttention) for child in fused.modules())
    export_onnx(fused, example, input_names, output_names, path, custom_opsets={CONTRIB_DOMAIN: CONTRIB_OPSET})
    nodes = fused_nodes(onnx.load(str(path), load_external_data=False))
    biased = [node for node in nodes if len(node.input) > ATTENTION_BIAS_INPUT and node.input[ATTENTION_BIAS_INPUT]]
    if len(biased) != layers:
        raise ExportError(f"the {GRAPH} graph has {len(biased)} {FUSED_OP} nodes with an attention bias for "
                          f"{layers} attention layers")
