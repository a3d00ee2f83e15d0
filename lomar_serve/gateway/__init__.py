"""The gateway (`lomar gateway`): the stateless data plane in front of Triton. Inference (labels, embeddings,
reconstructions), the model catalog and the routing to each model's published version, image collections, the
web page, Prometheus metrics. No admin routes. See docs/serving.md."""
