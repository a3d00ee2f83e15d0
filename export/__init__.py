"""Export LoMaR checkpoints to verified ONNX / TensorRT artefacts in a Triton model repository (`lomar export`).

Modules: wrappers (the I/O contract as torch modules), onnx_export, verify (parity with PyTorch), tensorrt,
triton_config (typed config.pbtxt), repository (versioned atomic layout), model_card, pipeline, cli.
"""
