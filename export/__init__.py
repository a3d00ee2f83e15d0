"""Export LoMaR checkpoints to verified ONNX / TensorRT artefacts in a Triton model repository (`lomar export`).

Modules: wrappers (the I/O contract as torch modules), onnx_export, ort_fused (the graph variant with ONNX
Runtime's fused attention), verify (parity with PyTorch), tensorrt,
triton_config (typed config.pbtxt), repository (versioned atomic writes), model_card (what an export records),
pipeline, cli. The repository layout, the model-name rule and the model card's schema live in contracts/.
"""
