"""How much memory training a LoMaR architecture needs, estimated from its shape alone (no torch, nothing built).

The control plane refuses a retrain job whose estimate exceeds its memory budget before anything is queued, so
`depth=100000` or `batch_size=10**6` is a clear 4xx and not a worker killed for memory. The figures are an
estimate, not a measurement (benchmarks/job_memory.py compares them with real fp32 CPU training steps: 0.96, 0.99
and 1.12 times the measured growth for ViT-Tiny/Small/Base at 224 px):

- parameters, counted from the shape (D = embed_dim, H = int(D * mlp_ratio), C = in_chans, p = patch_size):
  patch embedding C*p*p*D + D and the class token D; per block 3*D*D (+ 3*D qkv bias) + D*D + D (projection)
  + D*H + H + H*D + D (MLP) + 4*D (two LayerNorms); then the classifier's norm 2*D and head D*classes + classes,
  or the pretrainer's mask token D, norm 2*D and predictor D*C*p*p + C*p*p. The iRPE key tables (head_dim x 50
  buckets per block, under 1 %) are left out;
- model state: fp32 weights, gradients and AdamW's two moments, 4 copies of the parameters at 4 bytes (a fifth
  with an EMA of the weights);
- activations kept for the backward pass, per block and sequence of L tokens (Korthikanti et al. 2022, "Reducing
  Activation Recomputation in Large Transformer Models": 34*L*D + 5*heads*L*L bytes at 16 bits, the second term
  being the attention scores, which LoMaR keeps as the iRPE bias), doubled for fp32 training (the CPU, or
  `amp none`). Sequences: the batch of 1 + (image_size/p)**2 tokens when fine-tuning; batch x num_windows windows
  of 1 + window_size**2 tokens when pretraining.
"""
from __future__ import annotations

from dataclasses import dataclass

from training.models.config import LoMaRConfig

FP32_BYTES = 4
STATE_COPIES = 4  # weights, gradients, AdamW exp_avg and exp_avg_sq
ACTIVATION_BYTES_16BIT = (34, 5)  # per block: 34*L*D + 5*heads*L*L bytes (16-bit activations)
GIB = 1024 ** 3


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training process needs for a model of `parameters` parameters."""

    parameters: int
    state_bytes: int  # weights, gradients, optimizer moments (and EMA), fp32
    activation_bytes: int  # saved for the backward pass, one batch

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes

    def describe(self) -> str:
        return (f"about {size(self.total_bytes)}: {self.parameters / 1e6:.1f} M parameters ({size(self.state_bytes)} "
                f"of weights, gradients and AdamW state) and {size(self.activation_bytes)} of activations")


def size(count: int) -> str:
    """A byte count for people: GiB from 1 GiB up, else MiB."""
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / 2**20:.1f} MiB"


def parameter_count(config: LoMaRConfig, pretrain: bool) -> int:
    """Parameters of the classifier (or, with `pretrain`, the pretrainer), iRPE tables left out."""
    dim, hidden, patch_pixels = config.embed_dim, int(config.embed_dim * config.mlp_ratio), \
        config.in_chans * config.patch_size ** 2
    block = (3 * dim * dim + (3 * dim if config.qkv_bias else 0) + dim * dim + dim
             + dim * hidden + hidden + hidden * dim + dim + 4 * dim)
    trunk = patch_pixels * dim + dim + dim + config.depth * block
    if pretrain:
        return trunk + dim + 2 * dim + dim * patch_pixels + patch_pixels
    head = dim * config.num_classes + config.num_classes if config.num_classes > 0 else 0
    return trunk + 2 * dim + head


def sequences(config: LoMaRConfig, batch_size: int, image_size: int, pretrain: bool) -> tuple[int, int]:
    """(sequences, tokens per sequence) the encoder runs on for one batch."""
    if pretrain:
        return batch_size * config.num_windows, 1 + config.window_size ** 2
    return batch_size, 1 + (image_size // config.patch_size) ** 2


def training_memory(config: LoMaRConfig, batch_size: int, image_size: int, pretrain: bool, *,
                    fp32: bool = True, ema: bool = False) -> MemoryEstimate:
    """The estimate of the module docstring for one training process at this batch size and resolution."""
    parameters = parameter_count(config, pretrain)
    count, length = sequences(config, batch_size, image_size, pretrain)
    linear, scores = ACTIVATION_BYTES_16BIT
    per_block = linear * length * config.embed_dim + scores * config.num_heads * length * length
    activations = count * config.depth * per_block * (2 if fp32 else 1)
    state = parameters * FP32_BYTES * (STATE_COPIES + (1 if ema else 0))
    return MemoryEstimate(parameters=parameters, state_bytes=state, activation_bytes=activations)
