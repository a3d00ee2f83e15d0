"""Trace a contract wrapper (export/wrappers.py) to an ONNX file with a dynamic batch axis (fp16: export/precision.py).

The TorchScript-based exporter (`dynamo=False`) is used: the dynamo exporter of torch 2.14 fails on this model
(its decomposition of scaled_dot_product_attention gives the attention output strides that the following
`transpose(1, 2).flatten(2)` cannot view). Tracing freezes Python integers taken from tensor sizes, so the model
code uses tensor-shape expressions, and every export is verified at batch sizes other than the example's
(export/verify.py).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from export.errors import ExportError

LOGGER = logging.getLogger(__name__)
OPSET = 18
EXAMPLE_BATCH = 2  # neither of the verification batch sizes (1 and 8), so a frozen batch size cannot pass


def export_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], input_names: list[str],
                output_names: list[str], path: Path, opset: int = OPSET,
                custom_opsets: dict[str, int] | None = None) -> None:
    """Write `module` traced on `example` to `path`: opset `opset`, axis 0 of every input and output dynamic;
    `custom_opsets`: versions of the non-standard domains the module's symbolics emit (export/ort_fused.py).

    Raises:
        ExportError: tracing failed or the result does not pass onnx.checker.
    """
    dynamic_axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # tracer warnings about shape-derived Python values concern H and W, which are fixed by design
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            # window masks and tiling index with constant, non-negative indices
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            torch.onnx.export(module.eval(), example, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False,
                              do_constant_folding=True, custom_opsets=custom_opsets)
        onnx.checker.check_model(str(path), full_check=True)
    except (RuntimeError, ValueError, TypeError, onnx.checker.ValidationError) as error:
        raise ExportError(f"ONNX export failed: {type(error).__name__}: {error}") from error
    LOGGER.info("exported %s (opset %d, %.1f MB)", path, opset, path.stat().st_size / 1e6)
