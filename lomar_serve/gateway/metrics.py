"""Prometheus metrics of the gateway, in a registry of their own (one per app, so tests can build several apps).

Triton exports its own metrics (queue and compute time per model) on its metrics port; these are the gateway's.
"""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_UNIT_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class GatewayMetrics:
    """Requests and latency per endpoint and model, image decode time, batch sizes, Triton round trips and errors;
    per model version: calls, latency and confidence, and a rollout's comparisons of its candidate with the
    baseline."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("lomar_requests", "HTTP inference requests by endpoint, model and status code",
                                ["endpoint", "model", "status"], registry=self.registry)
        self.latency = Histogram("lomar_request_seconds", "HTTP inference request latency (whole request)",
                                 ["endpoint", "model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.decode = Histogram("lomar_decode_seconds", "Time to decode and resize the images of one request",
                                ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("lomar_batch_size", "Images per inference request",
                                    ["endpoint"], buckets=_BATCH_BUCKETS, registry=self.registry)
        self.triton_latency = Histogram("lomar_triton_seconds", "Triton inference round trip",
                                        ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.triton_errors = Counter("lomar_triton_errors", "Failed Triton calls by model and kind "
                                     "(unavailable, timeout, failed)", ["model", "kind"], registry=self.registry)
        self.version_calls = Counter("lomar_version_calls", "Triton calls per model version by role (answer: for a "
                                     "client's answer; compare: a rollout's comparison in the background) and outcome "
                                     "(ok, error, unavailable)", ["model", "version", "role", "outcome"],
                                     registry=self.registry)
        self.version_latency = Histogram("lomar_version_seconds", "Triton round trip per model version (answered "
                                         "calls)", ["model", "version"], buckets=_LATENCY_BUCKETS,
                                         registry=self.registry)
        self.version_confidence = Histogram("lomar_version_confidence", "Top-1 probability of each image a "
                                            "classifier version answered a client", ["model", "version"],
                                            buckets=_UNIT_BUCKETS, registry=self.registry)
        self.rollout_comparisons = Counter("lomar_rollout_comparisons", "Images a rollout's candidate and baseline "
                                           "both answered, by whether their top-1 labels agree", ["model", "candidate",
                                                                                                  "result"],
                                           registry=self.registry)
        self.rollout_similarity = Histogram("lomar_rollout_similarity", "Cosine similarity of a rollout candidate's "
                                            "output with the baseline's, per image (embeddings, reconstructions)",
                                            ["model", "candidate"], buckets=_UNIT_BUCKETS, registry=self.registry)

    def render(self) -> bytes:
        """The exposition text for GET /metrics."""
        return generate_latest(self.registry)
