"""The fp16 graph for GPUs, converted from the verified fp32 export.

Mixed where the contract needs it: the graph's inputs and outputs keep their types (UINT8 image and BOOL mask in,
FP32 out), so config.pbtxt, the gateway and every client are those of the fp32 export; weights and compute are
fp16, except the ops ONNX Runtime's converter keeps in fp32 (`DEFAULT_OP_BLOCK_LIST`: Range, CumSum, TopK, ...).
LayerNormalization and Softmax are converted too: ONNX Runtime's fp16 kernels for both accumulate in fp32, and
keeping them in fp32 (a Cast on each side of every one) changed no figure measured on the CPU provider (built-in
classifier: max |logit difference| 1.4e-3 of a 2.3 range either way; official micro classifier: 3.7e-4 against
3.4e-4). The tolerance the graph is verified with: export/verify.py (FP16_RELATIVE_TOLERANCE, FP16_MIN_COSINE).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnxruntime
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from export.errors import ExportError


def convert_to_fp16(source: Path, target: Path) -> dict[str, Any]:
    """Write `source`'s graph in fp16 to `target`; returns what the conversion did, for the model card.

    Raises:
        ExportError: the converted graph does not pass onnx.checker.
    """
    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    try:
        onnx.checker.check_model(str(target), full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the fp16 graph is not valid ONNX: {error}") from error
    present = {node.op_type for node in model.graph.node}
    return {"converter": f"onnxruntime.transformers.float16 (onnxruntime {onnxruntime.__version__})",
            "inputs_outputs": "types kept (fp32 outputs)", "fp32_ops": sorted(present & set(DEFAULT_OP_BLOCK_LIST))}
